"""Alembic's environment: runs on the connection the store hands over (migrate.py), inside
the store's write-locked transaction."""

from alembic import context

from medloop.core.store.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
