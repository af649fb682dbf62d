"""The module's model check is the library's ``load_config``, and the GUI reads ``model.json`` once per path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from module_doubles import FakeRunner, FakeScene, writeFakeBundle
from PancreasSegModuleLib import modelBundle
from PancreasSegModuleLib.logicTypes import SegmentOptions
from PancreasSegModuleLib.modelBundle import findBundledModel, validateModelFolder
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic

from PancreasSegLib.constants import DEFAULT_MODEL_NAME
from PancreasSegLib.labels import PANCREAS, TUMOR
from PancreasSegLib.model.bundle import MODEL_JSON, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def logic(tmp_path):
    return SegmentationLogic(FakeScene(), FakeRunner(), pythonExecutable="python", tempRoot=str(tmp_path))


@pytest.fixture
def reads(monkeypatch):
    """The folders ``load_config`` was asked to read, in order."""
    calls = []

    def counting(path):
        calls.append(str(path))
        return load_config(path)

    monkeypatch.setattr(modelBundle, "load_config", counting)
    return calls


def test_the_bundled_model_is_found_by_the_librarys_default_name_and_passes_the_check():
    bundled = findBundledModel(ROOT / "PancreasSeg")
    assert bundled is not None and bundled.name == DEFAULT_MODEL_NAME
    info = validateModelFolder(bundled)
    assert info.name == DEFAULT_MODEL_NAME and info.trainedOnPhantoms and not info.untrained
    assert [label.name for label in info.labels] == [label["name"] for label in load_config(bundled)["labels"]]


def test_the_weights_files_are_the_ones_model_json_names_for_each_stage(tmp_path):
    folder = writeFakeBundle(tmp_path / "m", labels=(PANCREAS, TUMOR))
    config = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    config["stages"]["segmenter"]["weights"]["file"] = "unet-v2.safetensors"
    (folder / MODEL_JSON).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="unet-v2.safetensors"):
        validateModelFolder(folder)
    (folder / "unet-v2.safetensors").write_bytes(b"\0")
    info = validateModelFolder(folder)
    assert info.weights == ("localizer.safetensors", "unet-v2.safetensors")
    assert [(label.value, label.type, label.context) for label in info.labels] == [
        (label.value, label.type, label.context) for label in (PANCREAS, TUMOR)]


@pytest.mark.parametrize("breakIt", [
    lambda config: config["stages"]["segmenter"].update(arch="my.Net"),
    lambda config: config["stages"]["localizer"]["weights"].update(file="../elsewhere.safetensors"),
    lambda config: config["stages"]["segmenter"]["weights"].update(file="segmenter.pt"),
    lambda config: config["labels"][0].pop("category"),
    lambda config: config["stages"]["segmenter"]["params"].update(out_channels=5),
], ids=["architecture", "weights outside", "not safetensors", "label without coding", "channels"])
def test_a_bundle_the_command_would_refuse_is_refused_with_the_librarys_message(tmp_path, breakIt):
    folder = writeFakeBundle(tmp_path / "m")
    config = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    breakIt(config)
    (folder / MODEL_JSON).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError) as library:
        load_config(folder)
    with pytest.raises(ValueError) as module:
        validateModelFolder(folder)
    assert str(module.value) == str(library.value) and str(folder) in str(module.value)


def test_no_folder_and_a_folder_without_model_json_are_refused(tmp_path):
    with pytest.raises(ValueError, match="No model folder selected"):
        validateModelFolder("")
    with pytest.raises(ValueError, match="does not exist"):
        validateModelFolder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="model.json is missing"):
        validateModelFolder(tmp_path)


def test_the_gui_reads_model_json_once_per_path(logic, reads, tmp_path):
    first = str(writeFakeBundle(tmp_path / "first"))
    second = str(writeFakeBundle(tmp_path / "second", name="second"))
    infos = [logic.modelInfo(first) for _ in range(5)]
    assert reads == [first] and all(info is infos[0] for info in infos)
    assert logic.modelInfo(second).name == "second" and reads == [first, second]
    assert logic.modelInfo(second).name == "second" and len(reads) == 2
    logic.modelInfo(first)  # the path changed again: read again
    assert reads == [first, second, first]


def test_a_bad_model_path_is_reported_on_every_update_but_read_once(logic, reads, tmp_path):
    for _ in range(3):
        with pytest.raises(ValueError, match="model.json is missing"):
            logic.modelInfo(str(tmp_path))
    assert reads == [str(tmp_path)]


def test_a_run_checks_the_model_afresh_even_when_the_gui_has_it_cached(logic, tmp_path):
    model = writeFakeBundle(tmp_path / "m")
    assert logic.modelInfo(str(model)).name == "pancreas-phantom-v1"
    (model / "segmenter.safetensors").unlink()
    assert logic.modelInfo(str(model)).name == "pancreas-phantom-v1"  # the GUI keeps what it checked
    volume = logic.scene.add("CT", "volume")
    with pytest.raises(ValueError, match="segmenter.safetensors"):
        logic.segment(volume, SegmentOptions(str(model)))
    assert logic.runner.args is None
