"""Find the ``PancreasSegLib`` package for the module and for the background command.

Three layouts work, tried in this order:

1. ``PancreasSegLib`` is installed in Slicer's Python (``pip install`` of this project);
2. the extension was built/installed: CMake copied ``PancreasSegLib/`` next to the module file;
3. the module runs from a source checkout (Slicer's "Additional module paths" points at ``PancreasSeg/``):
   the package is in the folder above the module's.

The folder found is put on ``sys.path`` here and on the background command's PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def findLibraryRoot(moduleDir: str | os.PathLike) -> str | None:
    """The folder that contains ``PancreasSegLib/``, or None when it cannot be found."""
    spec = importlib.util.find_spec("PancreasSegLib")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent.parent)
    moduleDir = Path(moduleDir)
    for candidate in (moduleDir, moduleDir.parent):
        if (candidate / "PancreasSegLib" / "__init__.py").is_file():
            return str(candidate)
    return None


def ensureLibraryImportable(moduleDir: str | os.PathLike) -> str:
    """Make ``import PancreasSegLib`` work in this interpreter; return the folder that holds it.

    Raises:
        ImportError: the package is nowhere to be found (with the layouts that were tried).
    """
    root = findLibraryRoot(moduleDir)
    if root is None:
        raise ImportError(f"PancreasSegLib not found: not installed in this Python, not in {moduleDir} "
                          f"and not in {Path(moduleDir).parent}.")
    if root not in sys.path:
        sys.path.insert(0, root)
    return root
