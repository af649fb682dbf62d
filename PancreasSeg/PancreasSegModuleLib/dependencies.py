"""Python packages the background command needs in Slicer's Python, checked on first use.

Nothing is installed at import time or without the user's confirmation. torch and torchvision come
through the PyTorch extension's PyTorchUtils (it picks the build that matches the GPU driver); the rest
through ``slicer.util.pip_install``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

#: import name -> pip requirement (lower bounds as in pyproject.toml).
TORCH_PACKAGES = {"torch": "torch>=2.1", "torchvision": "torchvision>=0.16"}
PIP_PACKAGES = {"monai": "monai>=1.3", "SimpleITK": "SimpleITK>=2.3", "safetensors": "safetensors>=0.4",
                "scipy": "scipy>=1.10"}
TORCH_VERSION = ">=2.1"
TORCHVISION_VERSION = ">=0.16"

#: What each background command imports: exporting a case needs no PyTorch (a multi-GB download).
REQUIRED_BY_ACTION = {
    "segment": (*TORCH_PACKAGES, *PIP_PACKAGES),
    "train": (*TORCH_PACKAGES, *PIP_PACKAGES),
    "export": ("SimpleITK",),
}


def missingPackages(action: str = "segment", finder: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names of the packages ``action`` needs that are not installed (checked without importing them).

    Raises:
        KeyError: an unknown action.
    """
    return [name for name in REQUIRED_BY_ACTION[action] if finder(name) is None]


def installMissing(missing: list[str], confirm: Callable[[str], bool]) -> bool:
    """Offer to install ``missing``; return True when everything is there afterwards.

    Runs inside Slicer only (imports slicer). ``confirm`` shows the question to the user.
    """
    if not missing:
        return True
    question = ("PancreasSeg needs these Python packages in Slicer's Python: " + ", ".join(missing)
                + ". Install them now? This downloads several GB and can take minutes.")
    if not confirm(question):
        return False
    import slicer

    if any(name in TORCH_PACKAGES for name in missing):
        try:
            import PyTorchUtils
        except ImportError:
            raise ValueError("Install the PyTorch extension from the Extensions Manager, restart Slicer, "
                             "then try again.") from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION,
                                       torchvisionVersionRequirement=TORCHVISION_VERSION) is None:
                return False
    pipRequirements = [PIP_PACKAGES[name] for name in missing if name in PIP_PACKAGES]
    if pipRequirements:
        slicer.util.pip_install(pipRequirements)
    importlib.invalidate_caches()  # packages installed just now are not in the finders' caches yet
    return not [name for name in missing if importlib.util.find_spec(name) is None]


def deviceDescription() -> str:
    """What compute devices torch sees here, e.g. 'CUDA: NVIDIA RTX 4090' or 'CPU only'; never raises."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch not installed yet"
    try:
        import torch

        if torch.cuda.is_available():
            return f"CUDA: {torch.cuda.get_device_name(0)}"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "Apple MPS"
    except Exception as exc:  # a broken torch install must not break the module's GUI
        return f"PyTorch unusable ({exc.__class__.__name__})"
    return "CPU only (no GPU found)"


def statusText(finder: Callable[[str], object] = importlib.util.find_spec) -> str:
    """One line for the Advanced section: what segmenting still needs installed, and the compute device.

    Never imports torch when it is missing, never raises.
    """
    missing = missingPackages("segment", finder)
    if missing:
        return f"Not installed yet: {', '.join(missing)} (offered when you first segment)."
    return f"All installed. {deviceDescription()}."
