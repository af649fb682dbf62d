"""The ROI box and its JSON form (written by --roi-out, read by --roi and by the Slicer module)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIRECTIONS, make_image

from PancreasSegLib.errors import InputError
from PancreasSegLib.pipeline.roi import ROI, image_axes, image_lps_bounds, read_roi, write_roi


def test_roi_json_round_trip_is_exact(tmp_path):
    roi = ROI((12.5, -30.25, 101.0), (140.0, 100.0, 90.0),
              ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), margin_mm=20.0)
    path = write_roi(roi, tmp_path / "roi.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {"coordinate_system": "LPS", "center": [12.5, -30.25, 101.0], "size": [140.0, 100.0, 90.0],
                    "axes": [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "margin_mm": 20.0}
    assert read_roi(path) == roi


def test_ras_json_describes_the_same_box_as_lps():
    roi = ROI((10.0, 20.0, 30.0), (40.0, 50.0, 60.0), margin_mm=20.0)
    ras = roi.to_json("RAS")
    assert ras["center"] == [-10.0, -20.0, 30.0]
    back = ROI.from_json(ras)
    np.testing.assert_allclose(back.corners(), roi.corners())


def test_a_box_along_permuted_image_axes_is_the_same_box():
    lower, upper = np.array([-10.0, 0.0, 5.0]), np.array([30.0, 20.0, 65.0])
    axes = image_axes(make_image(direction=DIRECTIONS["RAS"]))
    roi = ROI.from_lps_bounds(lower, upper, axes, margin_mm=20.0)
    assert roi.axes == ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0))
    lo, hi = roi.lps_bounds()
    np.testing.assert_allclose(lo, lower)
    np.testing.assert_allclose(hi, upper)


def test_a_box_along_oblique_axes_holds_the_lps_box():
    lower, upper = np.array([0.0, 0.0, 0.0]), np.array([40.0, 20.0, 30.0])
    roi = ROI.from_lps_bounds(lower, upper, image_axes(make_image(direction=DIRECTIONS["oblique"])))
    coords = (roi.corners() - np.asarray(roi.center)) @ np.asarray(roi.axes).T
    inner = ROI.from_lps_bounds(lower, upper).corners()
    inner_coords = (inner - np.asarray(roi.center)) @ np.asarray(roi.axes).T
    assert np.all(np.abs(inner_coords) <= coords.max(axis=0) + 1e-9)


def test_clipping_keeps_the_roi_inside_the_image():
    image = make_image((10, 20, 30), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    roi = ROI((-100.0, 10.0, 10.0), (240.0, 10.0, 10.0)).clipped_to(image)
    lo, hi = roi.lps_bounds()
    image_lo, image_hi = image_lps_bounds(image)
    assert lo[0] == pytest.approx(image_lo[0]) and hi[0] == pytest.approx(20.0)
    assert np.all(lo >= image_lo - 1e-9) and np.all(hi <= image_hi + 1e-9)
    assert ROI((500.0, 0.0, 0.0), (10.0, 10.0, 10.0)).clipped_to(image) is None


@pytest.mark.parametrize("text, match", [
    ("{", "cannot be read as ROI JSON"),
    ('{"size": [1, 2, 3]}', "ROI JSON has no 'center'"),
    ('{"center": [0, 0], "size": [1, 2, 3]}', "malformed"),
    ('{"center": [0, 0, 0], "size": [1, 0, 3]}', "size must be positive"),
    ('{"center": [0, 0, 0], "size": [1, 2, 3], "axes": [[1, 0, 0], [1, 0, 0], [0, 0, 1]]}', "orthogonal"),
    ('{"center": [0, 0, 0], "size": [1, 2, 3], "coordinate_system": "IJK"}', "LPS or RAS"),
    ('[1, 2]', "must be an object"),
])
def test_a_malformed_roi_file_is_refused_naming_the_file(tmp_path, text, match):
    path = tmp_path / "roi.json"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        read_roi(path)
    assert str(path) in str(info.value)
