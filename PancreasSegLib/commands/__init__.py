"""Subcommands of the ``pancreasseg`` command line, one module each (see :mod:`PancreasSegLib.cli`)."""
