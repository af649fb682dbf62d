"""Which torch device a run uses: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

from PancreasSegLib.constants import DEVICES
from PancreasSegLib.errors import InputError


def resolve_device(device: str = "auto") -> str:
    """``"auto"``: CUDA, then MPS, then CPU. An explicit device that is not there raises :class:`InputError`.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    if device == "mps" and not mps_ok:
        raise InputError("--device mps: no MPS device is available")
    if device.split(":")[0] not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    return device
