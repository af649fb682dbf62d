"""Model bundles: written atomically, checked completely (files, sha256, architecture, labels) before loading."""

from __future__ import annotations

import json

import pytest
import torch
from bundle_doubles import make_random_bundle

from PancreasSegLib.errors import InputError  # noqa: E402
from PancreasSegLib.labels import PANCREAS, TUMOR  # noqa: E402
from PancreasSegLib.model.bundle import Bundle, load_config, save_bundle
from PancreasSegLib.model.configs import tiny_config  # noqa: E402
from PancreasSegLib.model.networks import build_localizer, build_segmenter  # noqa: E402


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_random_bundle(tmp_path_factory.mktemp("bundles") / "tiny", seed=7)


def _copy(bundle_dir, tmp_path):
    import shutil

    return shutil.copytree(bundle_dir, tmp_path / "copy")


def _edit_json(folder, edit):
    manifest = folder / "model.json"
    config = json.loads(manifest.read_text(encoding="utf-8"))
    edit(config)
    manifest.write_text(json.dumps(config))


def test_a_saved_bundle_loads_back_with_the_same_weights(bundle_dir):
    bundle = Bundle.load(bundle_dir)
    torch.manual_seed(7)
    localizer, segmenter = build_localizer(bundle.config), build_segmenter(bundle.config)
    for net, loaded in ((localizer, bundle.localizer), (segmenter, bundle.segmenter)):
        expected, actual = net.state_dict(), loaded.state_dict()
        assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert [(x.value, x.name, x.type) for x in bundle.labels] == [(1, "Pancreas", PANCREAS.type)]
    assert bundle.labels[0].type.value == "15776009"
    assert not bundle.localizer.training and not bundle.segmenter.training


def test_the_bundle_folder_holds_exactly_the_documented_files(bundle_dir):
    assert sorted(p.name for p in bundle_dir.iterdir()) == [
        "MODEL_CARD.md", "localizer.safetensors", "model.json", "segmenter.safetensors"]
    assert not [p for p in bundle_dir.parent.iterdir() if p.name.startswith(".")]


def test_fp16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    cfg = tiny_config()
    torch.manual_seed(0)
    loc, seg = build_localizer(cfg), build_segmenter(cfg)
    full = save_bundle(tmp_path / "full", cfg, loc, seg, "card")
    half = save_bundle(tmp_path / "half", cfg, loc, seg, "card", fp16=True)
    size = (full / "segmenter.safetensors").stat().st_size
    assert (half / "segmenter.safetensors").stat().st_size < 0.6 * size
    loaded = Bundle.load(half)
    weight = next(loaded.segmenter.parameters())
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, next(seg.parameters()), atol=1e-2)
    assert load_config(half)["stages"]["segmenter"]["weights"]["dtype"] == "float16"


def test_saving_over_an_existing_bundle_replaces_it_whole(tmp_path):
    target = make_random_bundle(tmp_path / "b", seed=1)
    first = load_config(target)["stages"]["segmenter"]["weights"]["sha256"]
    make_random_bundle(tmp_path / "b", seed=2)
    assert load_config(target)["stages"]["segmenter"]["weights"]["sha256"] != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_tampered_weights_are_refused_before_loading(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path)
    with open(folder / "segmenter.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(InputError, match="segmenter weights file segmenter.safetensors has sha256") as info:
        Bundle.load(folder)
    assert str(folder) in str(info.value)


def test_a_missing_weights_file_is_named(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path)
    (folder / "localizer.safetensors").unlink()
    with pytest.raises(InputError, match="localizer weights file localizer.safetensors is missing"):
        Bundle.load(folder)


def test_an_unknown_architecture_is_refused(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path)
    _edit_json(folder, lambda c: c["stages"]["segmenter"].update(arch="custom.Net"))
    with pytest.raises(InputError, match="unknown segmenter architecture 'custom.Net'"):
        Bundle.load(folder)


def test_labels_that_do_not_match_the_output_channels_are_refused(bundle_dir, tmp_path):
    folder = _copy(bundle_dir, tmp_path)
    _edit_json(folder, lambda c: c.update(labels=[PANCREAS.to_json(), TUMOR.to_json()]))
    with pytest.raises(InputError, match="2 output channels but the bundle lists 2 label"):
        Bundle.load(folder)


def test_weights_of_another_architecture_are_refused(bundle_dir, tmp_path):
    from PancreasSegLib.model.bundle import sha256_file

    folder = _copy(bundle_dir, tmp_path)
    other = tiny_config()
    other["stages"]["segmenter"]["params"]["filters"] = [8, 8, 8]
    other_dir = make_random_bundle(tmp_path / "other", config=other)
    (folder / "segmenter.safetensors").write_bytes((other_dir / "segmenter.safetensors").read_bytes())
    digest = sha256_file(folder / "segmenter.safetensors")
    _edit_json(folder, lambda c: c["stages"]["segmenter"]["weights"].update(sha256=digest))
    with pytest.raises(InputError, match="segmenter weights do not fit its architecture"):
        Bundle.load(folder)


def test_a_pickle_disguised_as_weights_is_never_unpickled(bundle_dir, tmp_path):
    from PancreasSegLib.model.bundle import sha256_file

    folder = _copy(bundle_dir, tmp_path)
    torch.save({"x": torch.zeros(1)}, folder / "segmenter.safetensors")
    digest = sha256_file(folder / "segmenter.safetensors")
    _edit_json(folder, lambda c: c["stages"]["segmenter"]["weights"].update(sha256=digest))
    with pytest.raises(InputError, match="cannot be read as safetensors"):
        Bundle.load(folder)


@pytest.mark.parametrize("problem, match", [
    ("no folder", "model bundle folder does not exist"),
    ("no json", "model.json is missing"),
    ("bad json", "model.json cannot be read"),
])
def test_a_folder_that_is_not_a_bundle_is_refused(tmp_path, problem, match):
    folder = tmp_path / "model"
    if problem != "no folder":
        folder.mkdir()
    if problem == "bad json":
        (folder / "model.json").write_text("{not json")
    with pytest.raises(InputError, match=match):
        Bundle.load(folder)
