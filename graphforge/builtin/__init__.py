"""graphforge's built-in plugins: datasets, converters, models and commands.

Each module registers itself through the same pluggy hooks third-party plugins use;
:data:`graphforge.plugins.DEFAULT_PLUGINS` lists them.
"""
