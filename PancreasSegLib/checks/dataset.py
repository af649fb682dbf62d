"""Checks of a training dataset before any training starts.

Training on a broken dataset fails late (a crash at epoch 40) or silently (a label shifted against its
image trains a worse model). :func:`check_training_dataset` reads every case once and stops at the first
problem, naming the case and the file, so ``pancreasseg train`` can exit 2 before it builds a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from PancreasSegLib.checks.ct import check_geometry, count_nonfinite
from PancreasSegLib.datasets.nnunet import Case, list_cases, read_dataset_json
from PancreasSegLib.errors import InputError
from PancreasSegLib.io.grid import grid_mismatch


def declared_label_values(meta: dict) -> set[int]:
    """The label values a dataset.json declares (nnU-Net v2 ``{"name": value}``, regions, or MSD style)."""
    values: set[int] = set()
    for key, value in meta.get("labels", {}).items():
        if isinstance(value, str) and str(key).isdigit():  # MSD: {"0": "background"}
            values.add(int(key))
        elif isinstance(value, (list, tuple)):  # nnU-Net region-based training: {"whole": [1, 2]}
            values.update(int(v) for v in value)
        else:
            values.add(int(value))
    return values


def check_training_dataset(folder: str | os.PathLike, log: Callable[[str], None] | None = None) -> list[Case]:
    """Check every case of an nnU-Net v2 raw dataset and return the cases.

    Checked, case by case in case-ID order: the label file exists; image and label are readable 3D
    volumes; the label has the image's grid (size, spacing, origin, direction within
    :data:`PancreasSegLib.io.grid.SPACING_TOLERANCE` / ``DIRECTION_TOLERANCE``); label values are declared in
    dataset.json's ``labels``; no case file is a link leading out of the folder; the image has a valid
    geometry (spacing > 0, orthonormal direction) and holds no NaN or infinite value.

    Args:
        folder: dataset folder (dataset.json, imagesTr, labelsTr).
        log: receives one line per checked case.

    Returns:
        The cases, sorted by case ID.

    Raises:
        InputError: naming the first offending case and its file, or the folder when it has no cases.

    >>> cases = check_training_dataset("Dataset001_Pancreas")  # doctest: +SKIP
    """
    import SimpleITK as sitk

    from PancreasSegLib.io.volumes import read_volume

    folder = Path(folder)
    meta = read_dataset_json(folder)
    declared = declared_label_values(meta)
    cases = list_cases(folder, require_labels=False)
    if not cases:
        raise InputError(f"has no training cases (no imagesTr/<case>_0000{meta['file_ending']} files)", folder)
    root = folder.resolve()
    for case in cases:
        for file in (case.image, case.label):
            if file is not None and not file.resolve().is_relative_to(root):
                raise InputError(f"case {case.case_id}: {file.relative_to(folder)} is a link to a file outside the "
                                 "dataset folder; copy the file into the dataset", folder)
        if case.label is None:
            raise InputError(f"case {case.case_id} has no label (expected labelsTr/{case.case_id}"
                             f"{meta['file_ending']})", folder)
        image = read_volume(case.image)
        check_geometry(image, case.image)
        label = read_volume(case.label)
        mismatch = grid_mismatch(label, image)
        if mismatch:
            raise InputError(f"case {case.case_id}: the label's grid differs from the image's: {mismatch}", case.label)
        values = np.unique(sitk.GetArrayViewFromImage(label))
        unknown = [v for v in values.tolist() if v not in declared]
        if unknown:
            raise InputError(f"case {case.case_id}: label value(s) {', '.join(f'{v:g}' for v in unknown[:5])} not "
                             f"declared in dataset.json labels {meta['labels']}", case.label)
        bad = count_nonfinite(image, case.image)
        if bad:
            raise InputError(f"case {case.case_id}: the image holds {bad} NaN or infinite voxel(s)", case.image)
        if log is not None:
            log(f"{case.case_id}: ok")
    return cases
