"""The two-phase predictor: load a bundle once, segment many volumes.

>>> predictor = Predictor.from_bundle("Resources/Models/pancreas-phantom-v1", device="auto")  # doctest: +SKIP
>>> prediction = predictor.predict_image(sitk.ReadImage("ct.nii.gz"))  # doctest: +SKIP
>>> sitk.WriteImage(prediction.label, "pancreas.nii.gz")  # doctest: +SKIP
>>> predictor.predict_file("ct.nii.gz", "pancreas.seg.nrrd")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.bundle import Bundle
from PancreasSegLib.errors import InputError, NoPancreasFound
from PancreasSegLib.roi import ROI, image_axes, image_lps_bounds

if TYPE_CHECKING:
    import SimpleITK as sitk

Progress = Callable[[str, float, str], None]
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """``"auto"``: CUDA, then MPS, then CPU. An explicit device that is not there raises :class:`InputError`."""
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


@dataclass
class Prediction:
    """One volume's result: the label map on the input grid, the ROIs and where the time went."""

    label: sitk.Image
    roi: ROI | None
    localizer_roi: ROI | None
    found: bool
    grown: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    _foreground: np.ndarray | None = None
    _start: tuple[int, int, int] | None = None

    def probability_image(self) -> sitk.Image:
        """Foreground probability (float32) on the input grid, zero outside the ROI."""
        import SimpleITK as sitk

        from PancreasSegLib.segment3d import paste

        return paste(self.label, self._foreground, self._start, sitk.sitkFloat32)

    def volume_ml(self) -> float:
        """Volume of all labelled voxels, in millilitres."""
        import SimpleITK as sitk

        count = int(np.count_nonzero(sitk.GetArrayViewFromImage(self.label)))
        return count * float(np.prod(self.label.GetSpacing())) / 1000.0


class Predictor:
    """Two-phase inference with one loaded bundle (see the module docstring)."""

    def __init__(self, bundle: Bundle, device: str = "auto") -> None:
        self.bundle = bundle
        self.device = resolve_device(device)
        self._to_device()

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, device: str = "auto") -> Predictor:
        """Check and load the bundle at ``path`` (see :meth:`Bundle.load`), then move it to ``device``."""
        return cls(Bundle.load(path), device)

    def _to_device(self) -> None:
        import torch

        for net in (self.bundle.localizer, self.bundle.segmenter):
            if net is not None:
                net.to(self.device)
        if self.device == "cpu" and self.bundle.localizer is not None:
            # oneDNN's 2D convolutions run about 10 % faster on channels-last weights (measured on the
            # localizer's 38-slice pass); 3D convolutions are slower that way, so the segmenter stays as it is.
            self.bundle.localizer.to(memory_format=torch.channels_last)

    def predict_image(self, image: sitk.Image, roi: ROI | None = None, progress: Progress | None = None,
                      allow_empty: bool = False, margin_mm: float | None = None,
                      phase2_only: bool = False) -> Prediction:
        """Segment one CT volume.

        Args:
            image: CT in HU (any pixel type, orientation and spacing).
            roi: skip phase 1 and segment this ROI.
            progress: called as ``progress(stage, fraction, message)``.
            allow_empty: return an empty label map instead of raising when no pancreas is found.
            margin_mm: phase 1's margin (default: the bundle's, 20 mm).
            phase2_only: single-stage mode: the segmenter over the whole volume, no localizer.

        Returns:
            The :class:`Prediction`; ``label`` has exactly ``image``'s size, spacing, origin and direction.

        Raises:
            NoPancreasFound: nothing found and not ``allow_empty``.
            InputError: ``roi`` lies outside the image.
        """
        try:
            return self._predict(image, roi, progress, allow_empty, margin_mm, phase2_only)
        except RuntimeError as exc:
            if self.device == "cpu" or "out of memory" not in str(exc).lower():
                raise
            print(f"warning: the {self.device} device ran out of memory; continuing on the CPU", file=sys.stderr)
            self._release_gpu_memory()
            self.device = "cpu"
            self._to_device()
            return self._predict(image, roi, progress, allow_empty, margin_mm, phase2_only)

    def _release_gpu_memory(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _predict(self, image, roi, progress, allow_empty, margin_mm, phase2_only) -> Prediction:
        import SimpleITK as sitk

        from PancreasSegLib.localize import find_box
        from PancreasSegLib.segment3d import final_roi, paste, run_phase2, to_input_grid

        report = progress or (lambda *a: None)
        seconds: dict[str, float] = {}
        loc_stage, seg_stage = self.bundle.stage("localizer"), self.bundle.stage("segmenter")
        margin = float(loc_stage.get("margin_mm", 20.0) if margin_mm is None else margin_mm)
        # No cast of the whole volume to float: both phases resample only what they need, to float32.
        localizer_roi = None
        tick = time.perf_counter()
        if roi is not None:
            clipped = roi.clipped_to(image)
            if clipped is None:
                raise InputError("the given ROI lies outside the image")
            lower, upper = roi.lps_bounds()
            margin = roi.margin_mm
        elif phase2_only:
            lower, upper = image_lps_bounds(image, edges=False)
        else:
            box = find_box(image, self.bundle.localizer, loc_stage, self.device, margin, report)
            seconds["localize"] = time.perf_counter() - tick
            if box is None:
                return self._empty(image, None, allow_empty, seconds, "the localizer found nothing")
            lower, upper = box
            localizer_roi = ROI.from_lps_bounds(lower, upper, image_axes(image), margin).clipped_to(image)
        tick = time.perf_counter()
        result = run_phase2(image, self.bundle.segmenter, seg_stage, self.bundle.postprocessing, lower, upper,
                            self.device, report, guard=not phase2_only)
        seconds["segment"] = time.perf_counter() - tick
        tick = time.perf_counter()
        report("postprocess", 0.0, "back to the input grid")
        sub = to_input_grid(image, result, float(seg_stage.get("threshold", 0.5)),
                            bool(self.bundle.postprocessing.get("largest_component", True)))
        roi_out = final_roi(image, result, margin)
        if sub is None or not sub.label.any():
            seconds["postprocess"] = time.perf_counter() - tick
            return self._empty(image, roi_out, allow_empty, seconds, "the segmenter found nothing in the ROI",
                               localizer_roi)
        label = paste(image, sub.label, sub.start, sitk.sitkUInt8)
        seconds["postprocess"] = time.perf_counter() - tick
        report("postprocess", 1.0, "done")
        return Prediction(label, roi_out, localizer_roi, True, result.grown, seconds, sub.foreground, sub.start)

    def _empty(self, image, roi, allow_empty, seconds, why, localizer_roi=None) -> Prediction:
        import SimpleITK as sitk

        from PancreasSegLib.segment3d import paste

        if not allow_empty:
            raise NoPancreasFound(f"no pancreas found ({why})")
        return Prediction(paste(image, None, None, sitk.sitkUInt8), roi, localizer_roi, False, False, seconds)

    def predict_file(self, input_path: str | os.PathLike, output_path: str | os.PathLike, *, series: str | None = None,
                     roi: ROI | None = None, progress: Progress | None = None, allow_empty: bool = False,
                     margin_mm: float | None = None, phase2_only: bool = False) -> Prediction:
        """Read a CT file or DICOM folder, segment it, write the label map (.seg.nrrd, .nii.gz, .nrrd) atomically."""
        from PancreasSegLib.volume_io import read_volume, write_labelmap

        report = progress or (lambda *a: None)
        tick = time.perf_counter()
        report("read", 0.0, f"reading {Path(input_path).name}")
        image = read_volume(input_path, series)
        read_s = time.perf_counter() - tick
        prediction = self.predict_image(image, roi, progress, allow_empty, margin_mm, phase2_only)
        tick = time.perf_counter()
        report("write", 0.0, f"writing {Path(output_path).name}")
        write_labelmap(prediction.label, output_path, self.bundle.labels)
        prediction.seconds = {"read": read_s, **prediction.seconds, "write": time.perf_counter() - tick}
        return prediction

    def describe(self) -> dict[str, Any]:
        """Bundle provenance and the device in use."""
        return {**self.bundle.provenance(), "device": self.device}
