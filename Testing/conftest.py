"""Shared pytest fixtures: small seeded volumes with chosen geometry."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Two cores here: keep torch from oversubscribing them when tests run.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# The test process imports MONAI whole (as training does); Testing/test_model_light_imports.py checks the light
# imports of the segment command in subprocesses.
os.environ.setdefault("PANCREASSEG_FULL_IMPORTS", "1")


def make_image(shape_zyx=(12, 20, 24), spacing=(0.8, 0.7, 2.5), origin=(-10.0, 20.0, 5.0), direction=None,
               dtype=np.int16, seed=0):
    """A random SimpleITK image with the given geometry (spacing and origin in x, y, z order)."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1000, size=shape_zyx).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def oblique_direction(angle_deg: float = 20.0) -> tuple[float, ...]:
    """A proper rotation about an oblique axis, as a row-major 3x3 direction matrix."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return tuple((rz @ rx).ravel())


#: Direction matrices the geometry tests run over: LPS identity, RAS (x and y flipped), oblique.
DIRECTIONS = {
    "LPS": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    "RAS": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
    "oblique": oblique_direction(),
}


@pytest.fixture(params=sorted(DIRECTIONS))
def direction_name(request):
    return request.param
