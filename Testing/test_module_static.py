"""Static checks of the Slicer-only module files (Slicer cannot run here) and imports of the plain ones."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import pytest

MODULE = Path(__file__).resolve().parents[1] / "PancreasSeg"
SLICER_ONLY = {"sceneAdapter"}

#: Every slicer.util function the module calls, each checked against Slicer's own source (docs/slicer.md).
CHECKED_SLICER_UTIL = {"loadUI", "childWidgetVariables", "tryWithErrorDisplay", "confirmYesNoDisplay",
                       "confirmOkCancelDisplay", "errorDisplay", "exportNode", "loadVolume", "loadLabelVolume",
                       "getNodesByClass", "setSliceViewerLayers", "selectModule", "updateVolumeFromArray",
                       "arrayFromSegmentBinaryLabelmap", "pip_install"}


def _source(name: str) -> str:
    return (MODULE / name).read_text(encoding="utf-8")


def test_every_module_file_parses():
    for path in MODULE.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("name", sorted(p.stem for p in (MODULE / "PancreasSegModuleLib").glob("*.py")
                                        if p.stem not in SLICER_ONLY | {"__init__"}))
def test_plain_helpers_import_without_slicer(name):
    module = importlib.import_module(f"PancreasSegModuleLib.{name}")
    assert "slicer" not in vars(module) and "qt" not in vars(module)


def test_module_file_has_the_four_scripted_module_classes_and_metadata():
    tree = ast.parse(_source("PancreasSeg.py"))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"PancreasSeg", "PancreasSegWidget", "PancreasSegLogic", "PancreasSegTest"} <= set(classes)
    text = _source("PancreasSeg.py")
    assert 'self.parent.categories = ["Segmentation"]' in text
    help_text = re.search(r'helpText = """(.*?)"""', text, re.S).group(1)
    assert "Research use only" in help_text and "synthetic phantoms" in help_text
    assert "acknowledgementText" in text


def test_self_test_runs_the_real_logic_and_has_no_switch_to_turn_it_off():
    text = _source("PancreasSeg.py")
    test_src = text[text.index("class PancreasSegTest"):]
    assert "make_phantom" in test_src and "logic.segment(" in test_src and "assertGreater(dice" in test_src
    assert not re.search(r"testLogic\s*=\s*False|skipTest|if False", test_src)


def test_only_checked_slicer_util_functions_are_called():
    used = set()
    for path in MODULE.rglob("*.py"):
        used |= set(re.findall(r"slicer\.util\.(\w+)", path.read_text(encoding="utf-8")))
    unchecked = used - CHECKED_SLICER_UTIL
    assert not unchecked, f"check these against Slicer's source and list them in docs/slicer.md: {unchecked}"


#: The files of the plain-Python Logic: they reach Slicer only through the Logic's constructor arguments.
LOGIC_FILES = ("segmentationLogic", "backgroundJob", "commandLines", "segmentFlow", "datasetFlow", "fineTune",
               "logicTypes", "modelBundle", "roiGeometry", "progress", "processRunner", "workerRunner")


def _imports(name: str) -> set[tuple[str, str]]:
    """``(module, name)`` of every ``from module import name`` in a module file (``(module, "")`` for
    ``import module``), lazy imports included."""
    tree = ast.parse(_source(name))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found |= {("." * node.level + (node.module or ""), alias.name) for alias in node.names}
    return found


@pytest.mark.parametrize("name", LOGIC_FILES)
def test_logic_reaches_slicer_only_through_its_constructor_arguments(name):
    imported = {module.split(".")[0] for module, _ in _imports(f"PancreasSegModuleLib/{name}.py")}
    assert not imported & {"slicer", "qt", "ctk", "vtk"}


def test_the_core_logic_and_slicers_logic_class_have_different_names():
    core = {n.name for n in ast.parse(_source("PancreasSegModuleLib/segmentationLogic.py")).body
            if isinstance(n, ast.ClassDef)}
    assert core == {"SegmentationLogic"}
    tree = ast.parse(_source("PancreasSeg.py"))
    slicerLogic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PancreasSegLogic")
    # The core first: ScriptedLoadableModuleLogic.__init__ calls super().__init__() (see test_module_import).
    assert [ast.unparse(base) for base in slicerLogic.bases] == ["SegmentationLogic", "ScriptedLoadableModuleLogic"]


def test_module_files_stay_within_300_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines())
             for p in (MODULE / "PancreasSegModuleLib").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 300} == {}


def _code_strings(path: Path) -> list[str]:
    """The string constants of a file's code, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_the_module_keeps_no_copy_of_what_the_library_owns():
    from PancreasSegLib.constants import DEFAULT_MODEL_NAME
    from PancreasSegLib.labels import ANATOMIC_CONTEXT, DICOM_MASTER_CONTEXT, SLICER_ANATOMY_CONTEXT

    owned = (DEFAULT_MODEL_NAME, ANATOMIC_CONTEXT, DICOM_MASTER_CONTEXT, SLICER_ANATOMY_CONTEXT, "model.json",
             "master list", "Anatomy list")
    for path in MODULE.rglob("*.py"):
        copies = [text for text in _code_strings(path) if any(name in text for name in owned)]
        assert copies == [], f"{path.relative_to(MODULE)} spells out what PancreasSegLib defines: {copies}"
        assigned = {target.id for node in ast.parse(path.read_text(encoding="utf-8")).body
                    if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}
        assert not assigned & {"DEVICES", "REVIEW_STATUSES", "DEFAULT_MODEL_NAME", "BUNDLED_MODEL_NAME",
                               "TYPE_CONTEXT", "ANATOMIC_CONTEXT", "DEFAULT_WEIGHTS"}


@pytest.mark.parametrize("name, expected", [
    ("PancreasSeg.py", {("PancreasSegLib.constants", "DEVICES"), ("PancreasSegLib.constants", "REVIEW_STATUSES"),
                        ("PancreasSegLib.io.segfile", "terminology_entry"),
                        ("PancreasSegLib.evaluation.metrics", "binary_metrics")}),
    ("PancreasSegModuleLib/sceneAdapter.py", {("PancreasSegLib.io.segfile", "terminology_entry")}),
    ("PancreasSegModuleLib/modelBundle.py", {("PancreasSegLib.model.bundle", "load_config"),
                                             ("PancreasSegLib.model.bundle", "STAGES"),
                                             ("PancreasSegLib.constants", "DEFAULT_MODEL_NAME")}),
    ("PancreasSegModuleLib/roiGeometry.py", {("PancreasSegLib.pipeline.roi", "ROI")}),
    ("PancreasSegModuleLib/segmentFlow.py", {("PancreasSegLib.pipeline.roi", "read_roi"),
                                             ("PancreasSegLib.pipeline.roi", "write_roi")}),
    ("PancreasSegModuleLib/commandLines.py", {("PancreasSegLib.constants", "DEVICES")}),
    ("PancreasSegModuleLib/datasetFlow.py", {("PancreasSegLib.constants", "REVIEW_STATUSES")}),
])
def test_shared_contracts_are_imported_from_the_library(name, expected):
    assert expected <= _imports(name)


@pytest.mark.parametrize("name", ["PancreasSegModuleLib/modelBundle.py", "PancreasSegModuleLib/roiGeometry.py",
                                  "PancreasSegModuleLib/segmentFlow.py"])
def test_the_module_parses_no_model_json_or_roi_json_itself(name):
    assert not {("json", "load"), ("json", "loads")} & _imports(name)
    assert not re.search(r"json\.loads?\(", _source(name))


def test_the_widget_does_not_check_the_model_folder_on_every_gui_update():
    tree = ast.parse(_source("PancreasSeg.py"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PancreasSegWidget")
    updateGui = ast.unparse(next(n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "updateGui"))
    assert "self.logic.modelInfo(" in updateGui
    assert not re.search(r"checkModel|validateModelFolder|load_config|model\.json", updateGui)


def test_the_bar_has_a_share_for_every_stage_the_library_reports():
    from PancreasSegModuleLib.progress import STAGES

    from PancreasSegLib.progress import STAGES as LIBRARY_STAGES

    assert tuple(STAGES) == LIBRARY_STAGES
    shares = list(STAGES.values())
    assert shares[0][0] == 0.0 and shares[-1][1] == 1.0
    assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
