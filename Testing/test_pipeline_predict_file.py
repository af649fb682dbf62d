"""``Predictor.predict_file`` is the whole pipeline: the Python API refuses what the command line refuses.

The same bad CT goes through ``pancreasseg segment`` and through ``Predictor.predict_file``; both must
refuse it with the same words (the command line adds only its ``pancreasseg segment: error:`` prefix)
and write nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from ct_samples import abdomen
from inference_doubles import test_config

from PancreasSegLib import Predictor
from PancreasSegLib.cli import main
from PancreasSegLib.errors import InputError
from PancreasSegLib.io import nifti


@pytest.fixture(scope="module")
def blind_bundle(tmp_path_factory):
    """A bundle whose localizer never finds anything: with allow_empty a run is quick and writes an empty map."""
    config = test_config()
    config["stages"]["localizer"]["score_threshold"] = 1.01
    return make_random_bundle(tmp_path_factory.mktemp("bundle") / "blind", seed=0, config=config)


def all_nan() -> sitk.Image:
    image = sitk.GetImageFromArray(np.full((12, 40, 48), np.nan, np.float32))
    image.CopyInformation(abdomen())
    return image


def mri_range() -> sitk.Image:
    rng = np.random.default_rng(1)
    body = sitk.GetArrayFromImage(abdomen()) > -500
    image = sitk.GetImageFromArray(
        np.where(body, rng.uniform(300, 4000, body.shape), rng.uniform(0, 30, body.shape)).astype(np.uint16))
    image.CopyInformation(abdomen())
    return image


def tiny() -> sitk.Image:
    image = sitk.GetImageFromArray(np.full((4, 8, 8), 40, np.int16))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


@pytest.mark.parametrize(("make", "name", "words"), [
    (all_nan, "nan.nrrd", "NaN or infinite voxel"),
    (mri_range, "mri.nrrd", "does not look like a CT"),
    (tiny, "tiny.nii.gz", "too small"),
])
def test_the_api_refuses_bad_input_with_the_words_of_the_command_line(blind_bundle, tmp_path, capsys, make, name,
                                                                     words):
    source = tmp_path / name
    sitk.WriteImage(make(), str(source))
    out_cli, out_api = tmp_path / "cli.nii.gz", tmp_path / "api.nii.gz"

    code = main(["segment", str(source), "-o", str(out_cli), "--model", str(blind_bundle), "--progress", "none",
                 "--allow-empty"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    cli_message = lines[0].removeprefix("pancreasseg segment: error: ")

    predictor = Predictor.from_bundle(blind_bundle, device="cpu")
    with pytest.raises(InputError) as refusal:
        predictor.predict_file(source, out_api, allow_empty=True)
    assert str(refusal.value) == cli_message
    assert words in cli_message and cli_message.startswith(f"{source}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_force_lets_a_non_hu_volume_through_the_api_with_a_warning(blind_bundle, tmp_path):
    source = tmp_path / "mri.nrrd"
    sitk.WriteImage(mri_range(), str(source))
    warnings: list[str] = []
    prediction = Predictor.from_bundle(blind_bundle, device="cpu").predict_file(
        source, tmp_path / "out.nii.gz", allow_empty=True, force=True, warn=warnings.append)
    assert len(warnings) == 1 and "looks like an MRI" in warnings[0] and "going on" in warnings[0]
    assert prediction.outputs == {"segmentation": str(tmp_path / "out.nii.gz")}
    assert (tmp_path / "out.nii.gz").is_file()


def test_predict_file_writes_every_output_it_is_asked_for_and_names_them(blind_bundle, tmp_path):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(abdomen(), str(source))
    prediction = Predictor.from_bundle(blind_bundle, device="cpu").predict_file(
        source, tmp_path / "out.seg.nrrd", allow_empty=True, probabilities_out=tmp_path / "p.nii.gz",
        snapshot_out=tmp_path / "qa.png")
    assert set(prediction.outputs) == {"segmentation", "probabilities", "snapshot"}
    assert all((tmp_path / p).is_file() for p in ("out.seg.nrrd", "p.nii.gz", "qa.png"))
    assert list(prediction.seconds) == ["read", "localize", "write"]


def test_the_nifti_header_is_read_once_per_file_however_many_checks_ask(blind_bundle, tmp_path, monkeypatch):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.Cast(abdomen(), sitk.sitkFloat32), str(source))  # float: the NaN count reads the file too
    reads: list[str] = []
    original = nifti._header_bytes

    def counting(path):
        reads.append(path.name)
        return original(path)

    monkeypatch.setattr(nifti, "_header_bytes", counting)
    nifti._cached_header.cache_clear()
    Predictor.from_bundle(blind_bundle, device="cpu").predict_file(source, tmp_path / "out.nii.gz", allow_empty=True)
    assert reads == ["ct.nii.gz"]


def test_a_rewritten_nifti_file_is_parsed_again(tmp_path):
    path = tmp_path / "ct.nii"
    sitk.WriteImage(abdomen(), str(path))
    first = nifti.read_header(path)
    image = abdomen()
    image.SetSpacing((2.0, 2.0, 4.0))
    sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(path))
    second = nifti.read_header(path)
    assert first.pixdim[1:4] == (1.600000023841858, 1.5, 3.0)
    assert second.pixdim[1:4] == (2.0, 2.0, 4.0) and second.datatype == 16
