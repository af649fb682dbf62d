"""Test doubles and volumes for the inference tests.

The doubles are deterministic stand-ins with the networks' interfaces whose answer is known: a
segmenter that thresholds the windowed intensity and a localizer that boxes bright pixels. With
them a test can say where the pancreas must be, which a randomly initialised network cannot.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk
import torch

from PancreasSegLib.labels import PANCREAS
from PancreasSegLib.model.bundle import Bundle
from PancreasSegLib.model.configs import tiny_config

#: HU of the bright "organ" and of the soft tissue around it in :func:`blob_volume`.
BLOB_HU, TISSUE_HU = 200.0, 40.0


class ThresholdSegmenter(torch.nn.Module):
    """Logits (background 0, foreground ``20 * (x - 0.75)``): foreground where the windowed CT exceeds 0.75."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20.0 * (x - 0.75)], dim=1)


class ThresholdLocalizer(torch.nn.Module):
    """Mask R-CNN's inference interface: one box around the pixels above 0.8 per slice, score 0.99."""

    def __init__(self) -> None:
        super().__init__()
        self.roi_heads = SimpleNamespace(mask_roi_pool=None, mask_head=None, mask_predictor=None)
        self.calls = 0

    def forward(self, images):
        out = []
        for image in images:
            self.calls += 1
            ys, xs = torch.nonzero(image[0] > 0.8, as_tuple=True)
            if len(xs):
                box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
                out.append({"boxes": box, "scores": torch.tensor([0.99]), "labels": torch.tensor([1])})
            else:
                out.append({"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.int64)})
        return out


def double_bundle(config: dict | None = None) -> Bundle:
    """A bundle holding the two doubles, with a test configuration (2 mm segmenter grid)."""
    config = config or test_config()
    return Bundle(path=__import__("pathlib").Path("doubles"), config=config, labels=[PANCREAS],
                  localizer=ThresholdLocalizer(), segmenter=ThresholdSegmenter())


def test_config() -> dict:
    """The tiny configuration with a finer segmenter grid, so that the doubles' masks are accurate."""
    config = tiny_config()
    seg = config["stages"]["segmenter"]
    seg.update(spacing_xyz_mm=[2.0, 2.0, 2.0], patch_size_zyx=[32, 32, 32], size_divisor=4)
    config["postprocessing"]["smoothing_sigma_mm"] = 0.0
    return config


test_config.__test__ = False  # not a test, despite its name


def blob_volume(shape_zyx=(40, 56, 64), spacing=(1.5, 1.6, 2.5), middle_mm=(3.0, -2.0, 1.0), direction=None,
                center_mm=(10.0, 5.0, 0.0), radii_mm=(22.0, 12.0, 14.0), seed=0) -> tuple[sitk.Image, sitk.Image]:
    """A noisy soft-tissue volume with a bright ellipsoid; returns (CT in HU, the ellipsoid's label).

    The volume's middle lies at ``middle_mm`` (LPS) whatever its direction; the ellipsoid (``center_mm``,
    ``radii_mm``) is defined in physical space, so volumes with different grids hold the same object.
    """
    image = sitk.Image([int(s) for s in shape_zyx[::-1]], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    extent = np.asarray(spacing) * (np.asarray(shape_zyx[::-1]) - 1)
    half = np.asarray(image.GetDirection()).reshape(3, 3) @ (extent / 2)
    origin = tuple(float(v) for v in np.asarray(middle_mm) - half)
    image.SetOrigin(origin)
    index = np.indices(shape_zyx[::-1], dtype=float).reshape(3, -1)  # x, y, z index per voxel
    matrix = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(spacing)
    points = (matrix @ index).T + np.asarray(origin)
    inside = (((points - np.asarray(center_mm)) / np.asarray(radii_mm)) ** 2).sum(axis=1) <= 1.0
    inside = inside.reshape(shape_zyx[::-1]).transpose(2, 1, 0)
    rng = np.random.default_rng(seed)
    hu = np.where(inside, BLOB_HU, TISSUE_HU) + rng.normal(0, 5, size=shape_zyx)
    ct = sitk.GetImageFromArray(hu.astype(np.float32))
    ct.CopyInformation(image)
    label = sitk.GetImageFromArray(inside.astype(np.uint8))
    label.CopyInformation(image)
    return ct, label


def reoriented(image: sitk.Image, order=(0, 1, 2), flips=(False, False, False)) -> sitk.Image:
    """The same physical image on a permuted and/or flipped voxel grid (samples unchanged, none interpolated)."""
    out = sitk.PermuteAxes(image, list(order))
    return sitk.Flip(out, list(flips), flipAboutOrigin=False)


def dice_on_grid(a: sitk.Image, b: sitk.Image) -> float:
    """Dice of ``a`` and ``b`` after putting ``b`` on ``a``'s grid (nearest neighbour)."""
    b = sitk.Resample(b, a, sitk.Transform(), sitk.sitkNearestNeighbor, 0, a.GetPixelID())
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    total = x.sum() + y.sum()
    return 1.0 if total == 0 else 2.0 * float((x & y).sum()) / float(total)


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """Exactly the same size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
            and a.GetDirection() == b.GetDirection())
