"""The two-phase predictor: load a bundle once, segment many volumes. The one way through the pipeline.

:meth:`Predictor.predict_file` is the whole job: read -> size, header and CT checks -> phase 1 ->
ROI -> phase 2 (with the border guard) -> post-processing back onto the input grid -> staged,
atomic write of the label map and any extra outputs. The command line, the demo and the Slicer
module's background process all call it, so they refuse the same bad input with the same words.

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

from PancreasSegLib.checks.ct import read_checked_ct
from PancreasSegLib.errors import Cancelled, InputError, NoPancreasFound
from PancreasSegLib.io.atomic import write_json_atomic
from PancreasSegLib.io.staging import Staging
from PancreasSegLib.io.volumes import write_labelmap, write_volume
from PancreasSegLib.model.bundle import Bundle
from PancreasSegLib.model.device import resolve_device
from PancreasSegLib.pipeline.border_guard import final_roi, run_phase2
from PancreasSegLib.pipeline.phase1 import Detections, find_box
from PancreasSegLib.pipeline.postprocess import paste, to_input_grid
from PancreasSegLib.pipeline.quality import detection_score, judge, measure, quality_record
from PancreasSegLib.pipeline.roi import ROI, image_axes, image_lps_bounds, write_roi
from PancreasSegLib.progress import Progress

if TYPE_CHECKING:
    import SimpleITK as sitk


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
    #: What :meth:`Predictor.predict_file` wrote: ``{"segmentation": path, "roi": path, ...}``.
    outputs: dict[str, str] = field(default_factory=dict)
    #: Volume of the written surface mesh (mL), when one was asked for.
    surface_volume_ml: float | None = None
    #: The quality measures (:mod:`PancreasSegLib.pipeline.quality`) and the "unsure" sentences.
    quality: dict[str, float | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def unsure(self) -> bool:
        """True when a quality measure lies outside what the model showed on validation data."""
        return bool(self.warnings)

    def probability_image(self) -> sitk.Image:
        """Foreground probability (float32) on the input grid, zero outside the ROI."""
        import SimpleITK as sitk

        return paste(self.label, self._foreground, self._start, sitk.sitkFloat32)

    def volume_ml(self) -> float:
        """Volume of all labelled voxels, in millilitres."""
        import SimpleITK as sitk

        count = int(np.count_nonzero(sitk.GetArrayViewFromImage(self.label)))
        return count * float(np.prod(self.label.GetSpacing())) / 1000.0


@dataclass
class ReadCase:
    """A CT read and checked by :meth:`Predictor.read_case`, waiting for its compute step."""

    source: Path
    image: sitk.Image
    seconds: float


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

        report = progress or (lambda *a: None)
        seconds: dict[str, float] = {}
        loc_stage, seg_stage = self.bundle.stage("localizer"), self.bundle.stage("segmenter")
        margin = float(loc_stage.get("margin_mm", 20.0) if margin_mm is None else margin_mm)
        # No cast of the whole volume to float: both phases resample only what they need, to float32.
        localizer_roi = None
        seen = Detections()
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
            box = find_box(image, self.bundle.localizer, loc_stage, self.device, margin, report, seen)
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
        sub = to_input_grid(image, result.grid, result.probabilities, float(seg_stage.get("threshold", 0.5)),
                            bool(self.bundle.postprocessing.get("largest_component", True)))
        roi_out = final_roi(image, result, margin)
        if sub is None or not sub.label.any():
            seconds["postprocess"] = time.perf_counter() - tick
            return self._empty(image, roi_out, allow_empty, seconds, "the segmenter found nothing in the ROI",
                               localizer_roi)
        label = paste(image, sub.label, sub.start, sitk.sitkUInt8)
        seconds["postprocess"] = time.perf_counter() - tick
        report("postprocess", 1.0, "done")
        prediction = Prediction(label, roi_out, localizer_roi, True, result.grown, seconds, sub.foreground, sub.start)
        detected = detection_score(seen.scores, float(loc_stage["score_threshold"])) if seen.scores else None
        prediction.quality = measure(image, sub.label, sub.foreground, sub.start, detected)
        prediction.warnings = judge(prediction.quality, self.bundle.config.get("quality"))
        return prediction

    def _empty(self, image, roi, allow_empty, seconds, why, localizer_roi=None) -> Prediction:
        import SimpleITK as sitk

        if not allow_empty:
            raise NoPancreasFound(f"no pancreas found ({why})")
        prediction = Prediction(paste(image, None, None, sitk.sitkUInt8), roi, localizer_roi, False, False, seconds)
        prediction.quality = measure(image, None, None, None, None)
        prediction.warnings = judge(prediction.quality, self.bundle.config.get("quality"), found=False)
        return prediction

    def predict_file(self, input_path: str | os.PathLike, output_path: str | os.PathLike, *, series: str | None = None,
                     roi: ROI | None = None, progress: Progress | None = None, allow_empty: bool = False,
                     margin_mm: float | None = None, phase2_only: bool = False, force: bool = False,
                     max_voxels: int | None = None, roi_out: str | os.PathLike | None = None,
                     probabilities_out: str | os.PathLike | None = None, surface_out: str | os.PathLike | None = None,
                     snapshot_out: str | os.PathLike | None = None, snapshot_title: str | None = None,
                     quality_out: str | os.PathLike | None = None,
                     warn: Callable[[str], None] | None = None) -> Prediction:
        """The whole pipeline on one CT file or DICOM folder: read, check, segment, write.

        Args:
            input_path: a CT file (.nii.gz, .nii, .nrrd, .mha) or a folder with one DICOM series.
            output_path: the label map (.seg.nrrd, .nii.gz, .nii, .nrrd, .mha).
            series: the SeriesInstanceUID when the DICOM folder holds several.
            roi, progress, allow_empty, margin_mm, phase2_only: as for :meth:`predict_image`.
            force: segment even when the intensities do not look like HU (then only ``warn`` is called;
                by default the warning goes to stderr).
            max_voxels: voxel budget checked from the header before reading (default: the environment's).
            roi_out: also write the segmented ROI as JSON.
            probabilities_out: also write the foreground probability (float32, input grid).
            surface_out: also write the smoothed surface (.stl, .vtp) when something was found.
            snapshot_out: also write a PNG montage of the result (``snapshot_title`` above it).
            quality_out: also write the quality record (measures, "unsure" warnings) as JSON.
            warn: receives warnings (default: printed on stderr).

        Returns:
            The :class:`Prediction`, with ``outputs`` naming every file written and ``seconds`` per stage.

        Raises:
            InputError: the same one-line refusal as the command line gives, naming the file.
            NoPancreasFound: nothing found and not ``allow_empty``.

        Every file is staged and renamed into place only when all are complete: on any failure nothing is
        written and earlier files of the same names are left as they were.

        >>> Predictor.from_bundle("Resources/Models/pancreas-phantom-v1").predict_file(
        ...     "ct.nii.gz", "pancreas.seg.nrrd", roi_out="roi.json")  # doctest: +SKIP
        """
        case = self.read_case(input_path, series=series, progress=progress, force=force, max_voxels=max_voxels,
                              warn=warn)
        prediction = self.compute_case(case, roi=roi, progress=progress, allow_empty=allow_empty,
                                       margin_mm=margin_mm, phase2_only=phase2_only)
        return self.write_case(case, prediction, output_path, progress=progress, roi_out=roi_out,
                               probabilities_out=probabilities_out, surface_out=surface_out,
                               snapshot_out=snapshot_out, snapshot_title=snapshot_title, quality_out=quality_out)

    # predict_file in three steps, so that a batch (pipeline/batch.py) can read the next case and write the
    # previous one while this one computes. Each step reports its own stages; together they are predict_file.

    def read_case(self, input_path: str | os.PathLike, *, series: str | None = None, progress: Progress | None = None,
                  force: bool = False, max_voxels: int | None = None,
                  warn: Callable[[str], None] | None = None) -> ReadCase:
        """Step 1 of :meth:`predict_file`: read and check the CT (stage ``read``); arguments as there."""
        source = Path(input_path)
        report = progress or (lambda *a: None)
        tick = time.perf_counter()
        report("read", 0.0, f"reading {source.name}")
        image = read_checked_ct(source, series, max_voxels, force, warn or _print_warning)
        seconds = time.perf_counter() - tick
        report("read", 1.0, f"{source.name}: {image.GetSize()[0]}x{image.GetSize()[1]}x{image.GetSize()[2]}")
        return ReadCase(source, image, seconds)

    def compute_case(self, case: ReadCase, *, roi: ROI | None = None, progress: Progress | None = None,
                     allow_empty: bool = False, margin_mm: float | None = None,
                     phase2_only: bool = False) -> Prediction:
        """Step 2: both phases and post-processing on a read case; a refusal names the case's file."""
        try:
            return self.predict_image(case.image, roi, progress, allow_empty, margin_mm, phase2_only)
        except InputError as exc:
            if exc.path is None:
                raise type(exc)(str(exc), case.source) from None
            raise

    def write_case(self, case: ReadCase, prediction: Prediction, output_path: str | os.PathLike, *,
                   progress: Progress | None = None, roi_out: str | os.PathLike | None = None,
                   probabilities_out: str | os.PathLike | None = None, surface_out: str | os.PathLike | None = None,
                   snapshot_out: str | os.PathLike | None = None, snapshot_title: str | None = None,
                   quality_out: str | os.PathLike | None = None,
                   may_commit: Callable[[], bool] | None = None) -> Prediction:
        """Step 3: the staged write of every output (stage ``write``); arguments as for :meth:`predict_file`.

        ``may_commit`` is asked once every file is staged; when it answers False nothing is renamed into
        place, the staged files are removed and :class:`~PancreasSegLib.errors.Cancelled` is raised.
        """
        report = progress or (lambda *a: None)
        tick = time.perf_counter()
        prediction.outputs = {}  # only what this write renames into place
        with Staging() as staging:
            try:
                report("write", 0.0, f"writing {Path(output_path).name}")
                self._write(staging, case.image, prediction, case.source, output_path, roi_out, probabilities_out,
                            surface_out, snapshot_out, snapshot_title, quality_out)
                if may_commit is not None and not may_commit():
                    raise Cancelled("cancelled before the outputs were renamed into place")
                staging.commit()
            except InputError as exc:
                raise staging.renamed(exc) from None
        report("write", 1.0, "written")
        prediction.seconds = {"read": case.seconds, **prediction.seconds, "write": time.perf_counter() - tick}
        return prediction

    def _write(self, staging: Staging, image, prediction: Prediction, source: Path, output_path, roi_out,
               probabilities_out, surface_out, snapshot_out, snapshot_title, quality_out=None) -> None:
        outputs = prediction.outputs
        write_labelmap(prediction.label, staging.path(output_path), self.bundle.labels)
        outputs["segmentation"] = str(output_path)
        if quality_out:
            write_json_atomic(staging.path(quality_out), quality_record(prediction.quality, prediction.warnings,
                                                                        self.bundle.config.get("quality")))
            outputs["quality"] = str(quality_out)
        if roi_out and prediction.roi is not None:
            write_roi(prediction.roi, staging.path(roi_out))
            outputs["roi"] = str(roi_out)
        if probabilities_out:
            write_volume(prediction.probability_image(), staging.path(probabilities_out))
            outputs["probabilities"] = str(probabilities_out)
        if surface_out and prediction.found:
            from PancreasSegLib.outputs.surface import write_surface

            surface = write_surface(prediction.label, staging.path(surface_out))
            prediction.surface_volume_ml = float(surface["volume_ml"])
            outputs["surface"] = str(surface_out)
        if snapshot_out:
            from PancreasSegLib.outputs.montage import write_montage

            write_montage(image, prediction.label, staging.path(snapshot_out),
                          title=snapshot_title or f"{source.name}: {self.bundle.name}")
            outputs["snapshot"] = str(snapshot_out)

    def describe(self) -> dict[str, Any]:
        """Bundle provenance and the device in use."""
        return {**self.bundle.provenance(), "device": self.device}


def _print_warning(text: str) -> None:
    print(f"pancreasseg: warning: {text}", file=sys.stderr)
