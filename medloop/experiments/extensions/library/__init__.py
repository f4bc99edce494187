"""Code moves shipped with medloop: each file is one code hypothesis (core/code.py) that the
offline planner can propose. They are loaded by source and hash like any other module;
being part of the package, they count as trusted code."""
