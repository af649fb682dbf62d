"""``python -m PancreasSegLib`` is the same as the ``pancreasseg`` command."""

from __future__ import annotations

import sys

from PancreasSegLib.cli import main

if __name__ == "__main__":
    sys.exit(main())
