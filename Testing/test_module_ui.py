"""The module's Qt Designer file is valid and holds every widget and parameter the code uses."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "PancreasSeg"
UI = MODULE / "Resources" / "UI" / "PancreasSeg.ui"

#: Widget classes the loader must know: Qt's own plus the custom widgets declared in the file.
QT_CLASSES = {"QWidget", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QDoubleSpinBox", "QLineEdit",
              "QProgressBar"}


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


def test_the_export_section_holds_the_fine_tune_controls():
    export = _widget("exportCollapsibleButton")
    names = {w.get("name") for w in export.iter("widget")}
    assert {"fineTuneMinutesSpinBox", "fineTuneNameLineEdit", "fineTuneButton", "fineTuneResultLabel"} <= names
    assert _widget("fineTuneButton").find("property[@name='text']").findtext("string") == "Fine-tune on curated set"
