"""Subcommands of ``pancreasseg``: one module per command (see :mod:`PancreasSegLib.cli`)."""
