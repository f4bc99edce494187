"""Records, settings, errors, ids and the SQL store. Imports nothing else from medloop."""
