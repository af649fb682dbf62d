"""``python -m PancreasSegLib`` is the same as the ``pancreasseg`` command."""

from __future__ import annotations

from PancreasSegLib.cli import entry

if __name__ == "__main__":
    entry()
