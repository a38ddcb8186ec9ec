"""The ``graphforge`` command line."""
