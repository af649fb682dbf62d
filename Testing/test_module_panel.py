"""The module's panel as a user sees it: the real widget on plain Qt (``module_panel``), rendered offscreen.

PySide6 is a test dependency: these tests run in CI, they do not skip.
"""

from __future__ import annotations

import os

import pytest
from module_doubles import MODULE_DIR, writeFakeBundle
from module_panel import Panel, ctkPathLineEdit, loadUi, showStates
from PancreasSegModuleLib.modelBundle import ModelInfo, findBundledModel
from PySide6 import QtGui, QtWidgets

#: The parts of the panel, top to bottom, in the order of the work.
ORDER = ("inputsCollapsibleButton", "segmentButton", "reviewCollapsibleButton", "exportCollapsibleButton",
         "fineTuneCollapsibleButton", "advancedCollapsibleButton", "logCollapsibleButton")


@pytest.fixture
def panel(tmp_path):
    shown = Panel(tmp_path / "settings", tmp_path / "runs")
    yield shown
    shown.close()


def _top(panel: Panel, name: str) -> int:
    widget = panel.qt(name)
    return widget.mapTo(panel.widget.panel, widget.rect().topLeft()).y()


def test_the_panel_renders_idle_running_and_result_in_the_order_of_the_work(panel, tmp_path):
    pictures = showStates(panel, tmp_path / "pictures")
    assert sorted(pictures) == ["idle", "result", "running"]
    for path in pictures.values():
        image = QtGui.QImage(str(path))
        assert image.width() > 300 and image.height() > 400
    tops = [_top(panel, name) for name in ORDER]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)
    for name in ("fineTuneCollapsibleButton", "advancedCollapsibleButton"):
        assert panel.qt(name).property("collapsed") and _top(panel, "segmentButton") < _top(panel, name)


def test_running_shows_cancel_and_the_bar_and_the_result_enables_the_review(panel, tmp_path):
    panel.parameterNode.inputVolume = panel.scene.add("CT", "volume")
    assert not panel.qt("correctButton").isEnabled()
    panel.qt("segmentButton").click()
    assert panel.qt("segmentButton").text() == "Cancel" and not panel.qt("progressBar").isHidden()
    panel.runner.play(['{"event": "done", "outputs": {}, "roi": null}\n'],
                      before_finish=lambda: open(panel.runner.args[panel.runner.args.index("-o") + 1], "wb").close())
    assert panel.qt("segmentButton").text() == "Segment pancreas" and panel.qt("progressBar").isHidden()
    assert panel.qt("correctButton").isEnabled() and panel.qt("exportButton").isEnabled()
    log = panel.qt("logTextEdit")
    assert log.isReadOnly() and "Starting" in log.toPlainText() and "Done: CT pancreas" in log.toPlainText()


def test_the_loaded_ui_has_every_widget_the_module_uses():
    import re

    names = {w.objectName() for w in loadUi().findChildren(QtWidgets.QWidget)}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE_DIR / "PancreasSeg.py").read_text(encoding="utf-8")))
    assert used and used <= names


# -- the model drop-down follows modelPath ---------------------------------------------------------------------

def _shown_model(panel: Panel) -> str:
    combo = panel.qt("modelChoiceComboBox")
    return combo.itemData(combo.currentIndex())


def test_at_startup_the_drop_down_shows_the_bundled_model_in_use(panel):
    bundled = findBundledModel(MODULE_DIR)
    assert str(panel.parameterNode.modelPath) == str(bundled)
    assert _shown_model(panel) == str(bundled)
    assert panel.qt("modelChoiceComboBox").currentText() == f"{bundled.name} (bundled)"


def test_a_model_folder_chosen_in_advanced_is_shown_in_the_drop_down(panel, tmp_path):
    other = writeFakeBundle(tmp_path / "my-model")
    panel.qt("modelPathLineEdit").currentPath = str(other)
    assert panel.parameterNode.modelPath == other
    assert _shown_model(panel) == str(other)
    assert panel.qt("modelChoiceComboBox").currentText() == "my-model (from a folder)"
    # ... and picking the bundled one again in the drop-down sets the model back.
    combo = panel.qt("modelChoiceComboBox")
    combo.setCurrentIndex(combo.findData(str(findBundledModel(MODULE_DIR))))
    assert str(panel.parameterNode.modelPath) == str(findBundledModel(MODULE_DIR))


def test_after_fine_tuning_the_drop_down_shows_the_new_model(panel, tmp_path):
    new = writeFakeBundle(tmp_path / "curated-v2")
    info = panel.logic.registerModel(str(new))
    assert isinstance(info, ModelInfo)
    panel.widget.onFineTuneDone(info)
    assert _shown_model(panel) == str(new)
    assert panel.qt("modelChoiceComboBox").currentText() == "curated-v2 (fine-tuned)"
    assert "curated-v2" in panel.qt("fineTuneResultLabel").text()


def test_a_folder_that_is_no_model_keeps_the_disclaimer_and_disables_the_main_button_saying_why(panel, tmp_path):
    panel.parameterNode.inputVolume = panel.scene.add("CT", "volume")
    panel.qt("modelPathLineEdit").currentPath = str(tmp_path)
    assert "research use only" in panel.qt("modelWarningLabel").text().lower()
    assert "cannot be used" in panel.qt("modelInfoLabel").text() and not panel.qt("modelInfoLabel").isHidden()
    assert not panel.qt("segmentButton").isEnabled()
    assert "usable model" in panel.qt("segmentButton").toolTip()


def test_without_a_ct_the_main_button_is_disabled_and_its_tooltip_says_why(panel):
    assert panel.parameterNode.inputVolume is None
    button = panel.qt("segmentButton")
    assert not button.isEnabled() and "Select a CT volume" in button.toolTip()
    panel.parameterNode.inputVolume = panel.scene.add("CT", "volume")
    assert button.isEnabled() and "Select a CT volume" not in button.toolTip()


# -- no dataset folder chosen ----------------------------------------------------------------------------------

def test_an_unset_dataset_folder_shows_empty_and_export_says_none_was_chosen_and_writes_nothing(panel, tmp_path,
                                                                                             monkeypatch):
    work = tmp_path / "slicer-working-folder"
    work.mkdir()
    monkeypatch.chdir(work)
    volume = panel.scene.add("CT", "volume")
    panel.parameterNode.inputVolume = volume
    panel.qt("segmentButton").click()
    panel.runner.play(['{"event": "done", "outputs": {}, "roi": null}\n'],
                      before_finish=lambda: open(panel.runner.args[panel.runner.args.index("-o") + 1], "wb").close())
    panel.runner.args = None
    panel.parameterNode.caseId = "case_0001"
    assert str(panel.parameterNode.datasetFolder) == "."  # what the parameter node holds for an unset path
    assert panel.qt("datasetPathLineEdit").currentPath == ""
    calls = len(panel.scene.calls)
    panel.qt("exportButton").click()
    assert panel.dialogs.errors and "No dataset folder chosen" in panel.dialogs.errors[-1]
    assert "No dataset folder chosen" in panel.qt("statusLabel").text()
    assert panel.qt("progressBar").isHidden()
    assert panel.runner.args is None and panel.scene.calls[calls:] == [] and os.listdir(work) == []
    panel.qt("openCaseButton").click()
    assert "No dataset folder chosen" in panel.dialogs.errors[-1]
    assert 'choose the dataset folder under "Export for training"' in panel.qt("fineTuneDatasetLabel").text()
    assert not panel.qt("fineTuneButton").isEnabled()


def test_every_input_of_the_rendered_panel_has_a_tooltip(panel):
    inputs = (QtWidgets.QComboBox, QtWidgets.QLineEdit, QtWidgets.QAbstractButton, QtWidgets.QDoubleSpinBox,
              ctkPathLineEdit)
    named = [w for w in panel.widget.panel.findChildren(QtWidgets.QWidget)
             if w.objectName() and not w.objectName().startswith("qt_") and isinstance(w, inputs)]
    assert len(named) >= 15
    assert [w.objectName() for w in named if not w.toolTip().strip()] == []
