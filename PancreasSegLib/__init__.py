"""PancreasSegLib: the computing half of PancreasSeg.

Plain Python with no Slicer, Qt or CTK import: reading and writing volumes with their exact
geometry, synthetic abdominal CT phantoms, the two-phase (Mask R-CNN localizer, MONAI 3D U-Net
segmenter) model, training, evaluation and the curated training-label datasets. The Slicer module
runs it in a background process as ``PythonSlicer -m PancreasSegLib``; people run it as
``pancreasseg``.

The folders follow the pipeline, and imports only go from a later stage to an earlier one:
``io`` (files) -> ``datasets`` (their layout) -> ``checks`` -> ``model`` -> ``outputs`` -> ``pipeline``
(sampling, phase 1, ROI, phase 2, post-processing, the predictor) -> ``evaluation``, ``phantoms``,
``training``, ``curation`` -> ``commands``. Heavy libraries (torch, MONAI, SimpleITK) are imported
inside the functions that need them so that ``pancreasseg --help`` stays instant.

>>> from PancreasSegLib import Predictor
>>> predictor = Predictor.from_bundle("Resources/Models/pancreas-phantom-v1")  # doctest: +SKIP
>>> prediction = predictor.predict_file("ct.nii.gz", "pancreas.seg.nrrd")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Prediction", "Predictor", "__version__"]


def __getattr__(name: str):
    # ``from PancreasSegLib import Predictor`` without importing torch for every ``pancreasseg --help``.
    if name in ("Predictor", "Prediction"):
        from PancreasSegLib.pipeline import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'PancreasSegLib' has no attribute {name!r}")
