"""The provenance record of a curated case: where its label came from and how much a reviewer changed.

``provenance/<case>.json`` holds (never a patient name, ID or DICOM UID):

- ``case_id``, ``status`` (``corrected`` | ``approved`` | ``rejected``), ``reviewer``, ``note``;
- ``created`` / ``updated``: ISO 8601 UTC times of the first and the latest export; ``revision``:
  1 for the first export, +1 for each re-export (the earlier ones are in ``history/<case>/``);
- ``model``: name, version and the sha256 of each weights file of the bundle that made the proposal;
- ``image``: grid (size, spacing, origin, direction) and sha256 of the voxel data; ``source``: the kind of
  input and, for DICOM, the sha256 of the SeriesInstanceUID (so that the same series can be recognised
  without storing its UID);
- ``comparison``: Dice (all foreground and per label), volumes and volume change in mL, number of edited
  slices between the proposal and the correction; null without a proposal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from PancreasSegLib.constants import REVIEW_STATUSES
from PancreasSegLib.errors import InputError, read_json

if TYPE_CHECKING:
    import SimpleITK as sitk

STATUSES = REVIEW_STATUSES
SCHEMA = "pancreasseg.provenance/1"


def utc_now() -> str:
    """The current time as ISO 8601 UTC with microseconds, e.g. ``2024-05-01T09:30:00.123456Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """sha256 of the voxel values (C order) with their dtype, independent of the file's compression."""
    digest = hashlib.sha256(str(array.dtype.str).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def compare(proposal: np.ndarray, correction: np.ndarray, spacing: tuple[float, float, float],
            labels: Mapping[str, int]) -> dict:
    """How much the correction differs from the proposal.

    Args:
        proposal, correction: label arrays (z, y, x) of the same shape.
        spacing: voxel spacing (x, y, z) in mm.
        labels: label name -> value (background included or not).

    Returns:
        ``dice`` (foreground = any label > 0), ``dice_per_label``, ``proposal_ml``, ``correction_ml``,
        ``volume_change_ml`` (correction minus proposal, foreground), ``edited_slices`` (slices along the
        array's first axis, the image's k axis — axial for axial CT — where the two differ) and
        ``changed_voxels``. Dice of two empty masks is 1.0.
    """
    voxel_ml = float(np.prod(spacing)) / 1000.0
    fg_p, fg_c = proposal > 0, correction > 0
    per_label = {}
    for name, value in labels.items():
        if int(value) == 0:
            continue
        p, c = proposal == value, correction == value
        if p.any() or c.any():
            per_label[name] = _dice(p, c)
    differs = proposal != correction
    return {
        "dice": _dice(fg_p, fg_c),
        "dice_per_label": per_label,
        "proposal_ml": round(float(fg_p.sum()) * voxel_ml, 4),
        "correction_ml": round(float(fg_c.sum()) * voxel_ml, 4),
        "volume_change_ml": round(float(fg_c.sum() - fg_p.sum()) * voxel_ml, 4),
        "edited_slices": int(differs.reshape(differs.shape[0], -1).any(axis=1).sum()),
        "changed_voxels": int(differs.sum()),
    }


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else round(2.0 * int(np.logical_and(a, b).sum()) / total, 6)


def model_info(model: str | os.PathLike | Mapping | None) -> dict | None:
    """Name, version and weights sha256 of the model that made the proposal.

    Args:
        model: a model bundle folder (its ``model.json`` is read and every ``*.safetensors`` file it names
            is hashed and checked against the sha256 the manifest gives for it), or a mapping with at least
            ``name`` (e.g. what the Slicer module already knows), or None.

    Raises:
        InputError: no model.json, unreadable manifest, a missing weights file or a sha256 mismatch.
    """
    if model is None:
        return None
    if isinstance(model, Mapping):
        if "name" not in model:
            raise InputError("the model description needs at least a 'name'")
        return {k: model[k] for k in ("name", "version", "weights") if k in model}
    folder = Path(model)
    manifest_path = folder / "model.json"
    if not manifest_path.is_file():
        raise InputError("is not a model bundle (no model.json)", folder)
    manifest = read_json(manifest_path)
    listed = _weights_in_manifest(manifest)
    if not listed:  # a manifest that does not name its weights: hash what the bundle holds
        listed = {p.name: None for p in sorted(folder.glob("*.safetensors"))}
    weights = {}
    for name, expected in listed.items():
        path = folder / name
        if not path.is_file():
            raise InputError(f"model.json names the weights file {name}, which is missing", folder)
        digest = sha256_file(path)
        if expected and expected.lower() != digest:
            raise InputError(f"sha256 of {name} does not match model.json (corrupt or replaced weights)", folder)
        weights[name] = digest
    return {"name": str(manifest.get("name", folder.name)), "version": str(manifest.get("version", "")),
            "weights": weights}


def _weights_in_manifest(node, found: dict | None = None) -> dict[str, str | None]:
    # The bundle schema may list weights under stages or a "weights" table; any string naming a
    # .safetensors file counts, with a "sha256" found next to it in the same object.
    found = {} if found is None else found
    if isinstance(node, Mapping):
        sha = node.get("sha256") if isinstance(node.get("sha256"), str) else None
        for key, value in node.items():
            if isinstance(value, str) and value.endswith(".safetensors"):
                found.setdefault(Path(value).name, sha)
            elif isinstance(value, Mapping) and isinstance(value.get("sha256"), str) and key.endswith(".safetensors"):
                found.setdefault(Path(key).name, value["sha256"])
            else:
                _weights_in_manifest(value, found)
    elif isinstance(node, list):
        for item in node:
            _weights_in_manifest(item, found)
    return found


def source_info(path: str | os.PathLike, image: sitk.Image, series: str | None = None) -> dict:
    """What kind of input the image came from, with the sha256 of its DICOM SeriesInstanceUID if any.

    The UID itself and the file name are not kept: both can identify a patient.
    """
    path = Path(path)
    uid = None
    if path.is_dir():
        kind = "dicom-series"
        if series is None:
            from PancreasSegLib.io.dicom_scan import choose_series

            series = choose_series(path).uid  # the series the image was read from
        uid = series
    elif image.HasMetaDataKey("0020|000e"):
        kind = "dicom-file"
        uid = image.GetMetaData("0020|000e").strip().rstrip("\x00")
    else:
        kind = "file"
    out = {"kind": kind}
    if uid:
        out["series_uid_sha256"] = sha256_text(uid)
    return out


def read_provenance(path: str | os.PathLike) -> dict:
    """Read a provenance JSON file (raises InputError when it is not a JSON object)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError("is not a JSON object", path)
    return data
