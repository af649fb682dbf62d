"""Names the library, the command line and the Slicer module share, defined once.

Light on purpose: the Slicer module imports this before torch, MONAI or SimpleITK may be installed.
"""

from __future__ import annotations

import os
from pathlib import Path

#: ``--device`` choices: ``auto`` is CUDA, then Apple MPS, then the CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Review statuses of an exported case: ``corrected`` (the reviewer edited the model's outline), ``approved``
#: (accepted as the model drew it), ``rejected`` (the model's outline was discarded and the label drawn anew).
REVIEW_STATUSES = ("corrected", "approved", "rejected")
#: The model bundle that ships with the project (trained on synthetic phantoms only).
DEFAULT_MODEL_NAME = "pancreas-phantom-v3"
#: Environment variable naming another default model bundle folder.
MODEL_ENV = "PANCREASSEG_MODEL"
#: Where bundled models lie in a source checkout.
BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[1] / "Resources" / "Models"


def default_model() -> Path:
    """The model used when none is named: ``$PANCREASSEG_MODEL``, else the bundled one."""
    return Path(os.environ.get(MODEL_ENV) or BUNDLED_MODELS_DIR / DEFAULT_MODEL_NAME)
