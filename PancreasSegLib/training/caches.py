"""Each training case preprocessed once, by the same functions inference uses, and kept as .npz files.

Localizer cache (one file per case): axial slices on the canonical grid of
:func:`PancreasSegLib.pipeline.sampling.axial_grid`, sampled by :func:`~PancreasSegLib.pipeline.sampling.sample_slices`
every ``slice_step_mm`` across the whole volume (so pancreas-free slices are there as negatives),
windowed by :func:`~PancreasSegLib.pipeline.sampling.window`, with the pancreas mask of each slice (labels 1
and 2 together: the localizer finds the gland, tumour included).

Segmenter cache: the crop phase 1 would hand over, imitated from the label: the label's bounding box
plus the 20 mm margin, each side jittered (seeded) by a few millimetres either way because a real
ROI is neither exact nor centred. It is resampled by :func:`~PancreasSegLib.pipeline.sampling.crop_grid` /
:func:`~PancreasSegLib.pipeline.sampling.resample_to_grid` and normalised by
:func:`~PancreasSegLib.pipeline.sampling.normalise`. With ``crop = "whole"`` (the single-stage baseline) the
whole volume is taken instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from PancreasSegLib.pipeline.roi import image_lps_bounds
from PancreasSegLib.pipeline.sampling import (
    axial_grid,
    coarse_positions,
    crop_grid,
    normalise,
    resample_to_grid,
    sample_slices,
    window,
)

if TYPE_CHECKING:
    import SimpleITK as sitk


def label_lps_bounds(label: sitk.Image) -> tuple[np.ndarray, np.ndarray] | None:
    """The LPS-aligned bounding box (voxel edges, mm) of a label map's non-zero voxels; ``None`` if empty."""
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(label)
    nonzero = [np.flatnonzero(np.any(array, axis=axes)) for axes in ((0, 1), (0, 2), (1, 2))]  # x, y, z
    if any(len(n) == 0 for n in nonzero):
        return None
    lo = [float(n[0]) - 0.5 for n in nonzero]
    hi = [float(n[-1]) + 0.5 for n in nonzero]
    corners = np.array([label.TransformContinuousIndexToPhysicalPoint((x, y, z))
                        for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return corners.min(axis=0), corners.max(axis=0)


def localizer_arrays(image: sitk.Image, label: sitk.Image, stage: dict[str, Any], settings: dict[str, Any],
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Windowed axial slices ``(n, H, W)`` float16 in [0, 1] and their pancreas masks ``(n, H, W)`` uint8."""
    grid = axial_grid(image, stage)
    step = float(settings["slice_step_mm"])
    z = coarse_positions(grid, step) + rng.uniform(-step / 2, step / 2)
    z = np.clip(z, grid.z_range[0], grid.z_range[1])
    slices = window(sample_slices(image, grid, z), stage["hu_window"]).astype(np.float16)
    masks = (sample_slices(label, grid, z, "nearest", 0.0) > 0).astype(np.uint8)
    return {"slices": slices, "masks": masks, "z": z.astype(np.float32)}


def segmenter_arrays(image: sitk.Image, label: sitk.Image, stage: dict[str, Any], settings: dict[str, Any],
                     rng: np.random.Generator, num_labels: int) -> dict[str, np.ndarray] | None:
    """The normalised crop ``(Z, Y, X)`` float16 and its label uint8 (values above ``num_labels`` become 1).

    Returns ``None`` for a case without pancreas when cropping around the label.
    """
    import SimpleITK as sitk

    if settings.get("crop", "roi") == "whole":
        lower, upper = image_lps_bounds(image)
    else:
        bounds = label_lps_bounds(label)
        if bounds is None:
            return None
        jitter = rng.uniform(*settings["margin_jitter_mm"], size=(2, 3))
        margin = float(settings["margin_mm"]) + jitter
        lower, upper = bounds[0] - margin[0], bounds[1] + margin[1]
    grid = crop_grid(image, lower, upper, stage["spacing_xyz_mm"])
    # A view is only valid while its image lives (a view of a temporary reads freed memory).
    resampled = resample_to_grid(image, grid)
    crop = normalise(sitk.GetArrayViewFromImage(resampled), stage).astype(np.float16)
    del resampled
    lab = sitk.GetArrayFromImage(resample_to_grid(label, grid, "nearest", 0.0)).astype(np.uint8)
    lab[lab > num_labels] = 1  # a pancreas-only model learns the tumour as pancreas
    return {"image": crop, "label": lab}


def cache_key(stage: dict[str, Any], settings: dict[str, Any], seed: int) -> str:
    """A short digest of everything that shapes a cache, so that changed settings never reuse old files."""
    relevant = {k: v for k, v in stage.items() if k not in ("weights", "params", "score_threshold")}
    text = json.dumps({"stage": relevant, "settings": settings, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_caches(cases: list, hashes: dict[str, dict[str, str]], config: dict[str, Any],
                 settings: dict[str, dict[str, Any]], stages: list[str], folder: Path, seed: int,
                 log: Callable[[str], None],
                 progress: Callable[[int, int], None] | None = None) -> dict[str, list[Path]]:
    """Preprocess every case for the given stages (each image read once), reusing files already made.

    Args:
        cases: :class:`PancreasSegLib.datasets.nnunet.Case` list.
        hashes: case ID -> {"image": sha256, "label": sha256}; part of each file name.
        config: the model configuration (its stages drive the preprocessing).
        settings: stage -> training settings (:func:`~PancreasSegLib.model.configs.training_settings`).
        stages: which caches to make ("localizer", "segmenter").
        folder: the work folder's cache folder.
        seed: seeds the slice offsets and margin jitter (per case, so adding a case changes no other).
        log: receives one line per case made.
        progress: called as ``progress(done, total)``.

    Returns:
        stage -> list of .npz files (cases without a usable sample are left out).
    """
    from PancreasSegLib.io.atomic import atomic_path
    from PancreasSegLib.io.volumes import read_volume

    num_labels = len(config["labels"])
    keys = {s: cache_key(config["stages"][s], settings[s], seed) for s in stages}
    out: dict[str, list[Path]] = {s: [] for s in stages}
    for n, case in enumerate(cases):
        files = {s: folder / f"{s}-{keys[s]}" / f"{case.case_id}-{hashes[case.case_id]['image'][:12]}.npz"
                 for s in stages}
        todo = [s for s in stages if not files[s].is_file() and not files[s].with_suffix(".empty").is_file()]
        if todo:
            image, label = read_volume(case.image), read_volume(case.label)
            case_seed = int(hashlib.sha256(f"{seed}:{case.case_id}".encode()).hexdigest()[:8], 16)
            for s in todo:
                rng = np.random.default_rng([case_seed, ("localizer", "segmenter").index(s)])
                if s == "localizer":
                    arrays = localizer_arrays(image, label, config["stages"][s], settings[s], rng)
                else:
                    arrays = segmenter_arrays(image, label, config["stages"][s], settings[s], rng, num_labels)
                files[s].parent.mkdir(parents=True, exist_ok=True)
                if arrays is None:
                    files[s].with_suffix(".empty").touch()
                    log(f"{case.case_id}: no pancreas, left out of the {s} training")
                    continue
                with atomic_path(files[s]) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **arrays)
                shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in arrays.items() if v.ndim > 1)
                log(f"{case.case_id}: {s} cache {shapes}")
        for s in stages:
            if files[s].is_file():
                out[s].append(files[s])
        if progress:
            progress(n + 1, len(cases))
    return out


def load_cache(files: list[Path]) -> list[dict[str, np.ndarray]]:
    """Read cached .npz files into memory (dicts of arrays, with ``case_id``)."""
    loaded = []
    for file in files:
        with np.load(file) as data:
            item = {k: data[k] for k in data.files}
        item["case_id"] = os.path.basename(file).rsplit("-", 1)[0]
        loaded.append(item)
    return loaded
