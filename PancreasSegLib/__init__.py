"""PancreasSegLib: the computing half of PancreasSeg.

Plain Python with no Slicer, Qt or CTK import: reading and writing volumes with their exact
geometry, synthetic abdominal CT phantoms, the two-phase (Mask R-CNN localizer, MONAI 3D U-Net
segmenter) model, training, evaluation and the curated training-label datasets. The Slicer module
runs it in a background process as ``PythonSlicer -m PancreasSegLib``; people run it as
``pancreasseg``.

Heavy libraries (torch, MONAI, SimpleITK) are imported inside the functions that need them so that
``pancreasseg --help`` stays instant.
"""

from __future__ import annotations

__version__ = "0.1.0"
