"""Small pure helpers on SimpleITK images: metadata stripped, label maps as uint8, 3D scalar, snapped axes.

None of them modifies its input; each returns the image itself when there is nothing to change.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PancreasSegLib.errors import InputError

if TYPE_CHECKING:
    import SimpleITK as sitk


def without_metadata(image: sitk.Image) -> sitk.Image:
    """A copy of ``image`` with an empty metadata dictionary (pixels and geometry shared until changed).

    NRRD and MetaImage writers store every metadata entry in the file: an image read from a DICOM file
    would carry the patient's name and ID into our outputs, and a stale ``.seg.nrrd`` header would
    describe segments that no longer exist.
    """
    import SimpleITK as sitk

    if not image.GetMetaDataKeys():
        return image
    copy = sitk.Image(image)
    copy.MakeUnique()  # a plain copy shares the metadata dictionary with the original
    try:
        for key in copy.GetMetaDataKeys():
            copy.EraseMetaData(key)
    except TypeError:
        # A key that is not UTF-8 (a corrupt header) cannot be handed back to SimpleITK: rebuild the image
        # from its pixels and geometry instead, which carries no metadata at all.
        copy = sitk.GetImageFromArray(sitk.GetArrayFromImage(image),
                                      isVector=image.GetNumberOfComponentsPerPixel() > 1)
        copy.CopyInformation(image)
    return copy


def as_uint8_label(label: sitk.Image, path: str | os.PathLike | None = None) -> sitk.Image:
    """``label`` cast to uint8 after checking it is a 3D scalar image with integer values 0..255.

    Raises:
        InputError: not 3D, not scalar, or values that uint8 cannot hold (they would wrap silently).
    """
    import SimpleITK as sitk

    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"a label map must be a 3D scalar image, got {label.GetDimension()}D with "
                         f"{label.GetNumberOfComponentsPerPixel()} components", path)
    if label.GetPixelID() == sitk.sitkUInt8:
        return label
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(label)
    low, high = stats.GetMinimum(), stats.GetMaximum()
    if low < 0 or high > 255:
        raise InputError(f"label values must lie in 0..255, found {low:g}..{high:g}", path)
    if label.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        import numpy as np

        values = sitk.GetArrayViewFromImage(label)
        if np.any(values != np.round(values)):
            raise InputError("label values must be whole numbers", path)
    return sitk.Cast(label, sitk.sitkUInt8)


def as_3d_scalar(image: sitk.Image, path: str | os.PathLike | None = None) -> sitk.Image:
    import SimpleITK as sitk

    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:  # NRRD/MHA files may carry a time axis of length one
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, 0])
        dim = 3
    if dim == 4:
        raise InputError(f"a 4D image ({image.GetSize()[3]} volumes): give a single 3D volume", path)
    if dim != 3:
        raise InputError(f"not a 3D image (it has {dim} dimensions)", path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"not a scalar image ({image.GetNumberOfComponentsPerPixel()} components per voxel, "
                         "e.g. RGB or vector)", path)
    if min(image.GetSize()) < 2:
        raise InputError(f"not a 3D volume (size {image.GetSize()})", path)
    return image


def snap_axis_aligned(image: sitk.Image) -> sitk.Image:
    # NRRD stores direction x spacing; ITK splits it with a reciprocal multiply, so a file that says
    # "(0.83,0,0)" comes back with a direction of 0.9999999999999999. An axis-aligned grid is one of the
    # two cases the whole pipeline must keep bit-exact, so put such directions back on the axes.
    import numpy as np

    direction = np.array(image.GetDirection())
    snapped = np.round(direction)
    if np.any(direction != snapped) and np.all(np.abs(direction - snapped) < 1e-12) \
            and np.all(np.abs(snapped).reshape(3, 3).sum(axis=0) == 1):
        image.SetDirection(tuple(snapped.tolist()))
    return image


