"""The module's Qt Designer file is valid and holds every widget and parameter the code uses."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "PancreasSeg"
UI = MODULE / "Resources" / "UI" / "PancreasSeg.ui"

#: Widget classes the loader must know: Qt's own plus the custom widgets declared in the file.
QT_CLASSES = {"QWidget", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QDoubleSpinBox", "QLineEdit",
              "QProgressBar", "QPlainTextEdit"}


def _tree():
    return ET.parse(UI).getroot()


def widgets() -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in _tree().iter("widget")}


def test_ui_file_is_a_qt_designer_form():
    root = _tree()
    assert root.tag == "ui" and root.get("version") == "4.0"
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and root.findtext("class") == top.get("name")


def test_every_widget_class_is_qt_or_a_declared_custom_widget():
    custom = {c.findtext("class") for c in _tree().iter("customwidget")}
    for c in _tree().iter("customwidget"):
        assert c.findtext("header") and c.findtext("extends")
    unknown = {cls for cls in widgets().values() if cls not in QT_CLASSES | custom}
    assert not unknown


def test_widget_names_are_unique():
    names = [w.get("name") for w in _tree().iter("widget")]
    assert len(names) == len(set(names))


def test_every_self_ui_name_used_by_the_module_exists_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE / "PancreasSeg.py").read_text(encoding="utf-8")))
    assert used, "the module uses no widgets?"
    missing = sorted(used - set(widgets()))
    assert not missing, f"used in PancreasSeg.py but not in the .ui file: {missing}"


def _parameter_fields() -> dict[str, str]:
    tree = ast.parse((MODULE / "PancreasSeg.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(
                getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list):
            return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError("no @parameterNodeWrapper class in PancreasSeg.py")


def _bound() -> dict[str, str]:
    out = {}
    for w in _tree().iter("widget"):
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                assert p.get("stdset") == "0", "SlicerParameterName must be a dynamic property"
                out[p.findtext("string")] = w.get("class")
    return out


def test_every_bound_widget_names_an_existing_parameter_and_every_parameter_is_bound():
    fields, bound = _parameter_fields(), _bound()
    assert set(bound) == set(fields)


def test_bound_widget_classes_are_ones_the_parameter_node_wrapper_can_connect():
    # Slicer's guiConnectors match on exact class: QDoubleSpinBox (not ctkDoubleSpinBox) for float, etc.
    fields, bound = _parameter_fields(), _bound()
    expected = {"float": "QDoubleSpinBox", "bool": "QCheckBox", "str": "QLineEdit", "pathlib.Path": "ctkPathLineEdit"}
    for name, annotation in fields.items():
        cls = bound[name]
        if "Choice" in annotation:
            assert cls == "QComboBox", name
        elif "vtkMRML" in annotation:
            assert cls == "qMRMLNodeComboBox", name
        else:
            base = annotation.split("[", 1)[-1].split(",")[0] if annotation.startswith("Annotated") else annotation
            assert cls == expected[base], name


def test_mrml_widgets_get_the_scene_from_the_top_widget():
    connected = {c.findtext("receiver") for c in _tree().iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {n for n, c in widgets().items() if c.startswith("qMRML") and c != "qMRMLWidget"}
    assert mrml <= connected


def _widget(name: str):
    return next(w for w in _tree().iter("widget") if w.get("name") == name)


def test_the_model_note_is_a_visible_label_that_says_phantoms_and_research_use_only():
    label = _widget("modelWarningLabel")
    assert label.get("class") == "QLabel"
    assert not any(p.get("name") == "visible" and p.findtext("bool") == "false" for p in label.findall("property"))
    text = label.find("property[@name='text']").findtext("string")
    assert "synthetic phantoms" in text and "research use only" in text
    # ... and the widget keeps it in step with the selected model's own description.
    source = (MODULE / "PancreasSeg.py").read_text(encoding="utf-8")
    assert "self.ui.modelWarningLabel.text = info.warning" in source


#: The panel's parts in the order of the work (the main button between Inputs and the review).
PANEL_ORDER = ("inputsCollapsibleButton", "segmentButton", "reviewCollapsibleButton", "exportCollapsibleButton",
               "fineTuneCollapsibleButton", "advancedCollapsibleButton", "logCollapsibleButton")
#: Widget classes a user types, ticks or picks in.
INPUT_CLASSES = {"QComboBox", "QLineEdit", "QCheckBox", "QDoubleSpinBox", "ctkPathLineEdit", "qMRMLNodeComboBox",
                 "QPushButton"}


def _top_level_items() -> list[str]:
    layout = _tree().find("widget").find("layout")
    return [item.find("widget").get("name") for item in layout.findall("item") if item.find("widget") is not None]


def _collapsed(name: str) -> bool:
    return _widget(name).find("property[@name='collapsed']").findtext("bool") == "true"


def test_the_panel_reads_in_the_order_of_the_work():
    items = _top_level_items()
    assert [name for name in items if name in PANEL_ORDER] == list(PANEL_ORDER)


def test_the_main_button_is_above_every_collapsed_section_and_is_the_default_button():
    items = _top_level_items()
    collapsed = [name for name in items if _widget(name).get("class") == "ctkCollapsibleButton" and _collapsed(name)]
    assert {"fineTuneCollapsibleButton", "advancedCollapsibleButton"} <= set(collapsed)
    assert all(items.index("segmentButton") < items.index(name) for name in collapsed)
    assert _widget("segmentButton").find("property[@name='default']").findtext("bool") == "true"


@pytest.mark.parametrize("section, members", [
    ("inputsCollapsibleButton", {"inputVolumeSelector", "modelChoiceComboBox", "modelWarningLabel"}),
    ("reviewCollapsibleButton", {"correctButton", "rerunRoiButton", "openCaseButton", "showRoiCheckBox"}),
    ("exportCollapsibleButton", {"datasetPathLineEdit", "caseIdLineEdit", "reviewerLineEdit", "reviewStatusComboBox",
                                 "noteLineEdit", "exportButton"}),
    ("fineTuneCollapsibleButton", {"fineTuneMinutesSpinBox", "fineTuneNameLineEdit", "fineTuneButton"}),
    ("advancedCollapsibleButton", {"deviceComboBox", "modelPathLineEdit", "marginSpinBox", "keepProbabilitiesCheckBox",
                                   "forceCheckBox", "deviceInfoLabel"}),
    ("logCollapsibleButton", {"logTextEdit"}),
])
def test_each_section_holds_its_step(section, members):
    assert members <= {w.get("name") for w in _widget(section).iter("widget")}


def test_every_input_has_a_tooltip():
    missing = [w.get("name") for w in _tree().iter("widget") if w.get("class") in INPUT_CLASSES
               and not (w.find("property[@name='toolTip']") is not None
                        and w.find("property[@name='toolTip']").findtext("string", "").strip())]
    assert missing == []


def test_the_review_status_tooltip_says_what_each_status_means():
    from PancreasSegLib.constants import REVIEW_STATUSES

    tip = _widget("reviewStatusComboBox").find("property[@name='toolTip']").findtext("string")
    assert all(f"{status}: " in tip for status in REVIEW_STATUSES)


def test_there_is_one_disclaimer_line_and_a_read_only_log():
    texts = [p.findtext("string") or "" for p in _tree().iter("property") if p.get("name") == "text"]
    assert sum("research use only" in text.lower() for text in texts) == 1
    log = _widget("logTextEdit")
    assert log.get("class") == "QPlainTextEdit"
    assert log.find("property[@name='readOnly']").findtext("bool") == "true"


def test_the_fine_tune_button_keeps_its_name():
    assert _widget("fineTuneButton").find("property[@name='text']").findtext("string") == "Fine-tune on curated set"
