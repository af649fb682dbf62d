"""The QA picture: orientation handling, overlay colour, atomic PNG, the montage and demo commands."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from PancreasSegLib.labels import PANCREAS
from PancreasSegLib.outputs.montage import MONTAGE_SIZE, to_axis_aligned, write_montage
from PancreasSegLib.phantoms.generator import make_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(12, preset="small", tumor=False)


def _png(path):
    import matplotlib.image

    return (matplotlib.image.imread(str(path))[..., :3] * 255).astype(int)


def _has_colour(rgb, colour, tolerance=40):
    target = np.array([c * 255 for c in colour])
    return bool((np.abs(rgb - target).max(axis=-1) < tolerance).any())


def test_montage_is_a_png_of_the_documented_size_showing_the_pancreas_colour(phantom, tmp_path):
    image, label = phantom
    out = write_montage(image, label, tmp_path / "qa.png", title="phantom 12")
    rgb = _png(out)
    assert rgb.shape[:2] == (MONTAGE_SIZE[1], MONTAGE_SIZE[0])
    assert _has_colour(rgb, PANCREAS.color)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.png"]


def test_montage_without_label_has_no_overlay_colour(phantom, tmp_path):
    image, _ = phantom
    rgb = _png(write_montage(image, None, tmp_path / "plain.png"))
    assert not _has_colour(rgb, PANCREAS.color, tolerance=20)


@pytest.mark.parametrize("direction_name", ["LPS", "RAS", "oblique"])
def test_axis_aligned_copy_keeps_the_label_at_its_physical_place(direction_name):
    from conftest import DIRECTIONS

    image, label = make_phantom(13, preset="small", direction=DIRECTIONS[direction_name], noise=False)
    oriented, olabel = to_axis_aligned(image, label)
    assert np.allclose(oriented.GetDirection(), np.eye(3).ravel())
    assert olabel.GetSize() == oriented.GetSize()

    def centroid(lab):
        idx = np.argwhere(sitk.GetArrayViewFromImage(lab) > 0).mean(axis=0)[::-1]
        return np.array(lab.TransformContinuousIndexToPhysicalPoint(idx.tolist()))

    assert np.linalg.norm(centroid(label) - centroid(olabel)) < 2.0


def test_montage_command_writes_the_picture_and_rejects_bad_output(phantom, tmp_path, capsys):
    from PancreasSegLib.cli import main

    image, label = phantom
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "lab.nii.gz"))
    out = tmp_path / "pic.png"
    assert main(["montage", str(tmp_path / "ct.nii.gz"), "--label", str(tmp_path / "lab.nii.gz"), "-o", str(out)]) == 0
    assert _has_colour(_png(out), PANCREAS.color)
    assert main(["montage", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "pic.jpg")]) == 2
    assert main(["montage", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "pic.jpg" in err[0] and "missing.nii.gz" in err[1]
    assert not (tmp_path / "x.png").exists()


def test_demo_command_writes_phantom_label_and_picture(tmp_path):
    from PancreasSegLib.cli import main

    out = tmp_path / "demo"
    assert main(["demo", str(out), "--size", "small", "--seed", "3"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"phantom.nii.gz", "phantom_label.nii.gz", "phantom.png"} <= names


def test_montage_command_runs_as_a_real_subprocess(phantom, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    image, _ = phantom
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    result = subprocess.run([sys.executable, "-m", "PancreasSegLib", "montage", str(tmp_path / "ct.nrrd"), "-o",
                             str(tmp_path / "ct.png")], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ct.png").stat().st_size > 10_000
