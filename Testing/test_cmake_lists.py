"""The Slicer extension's CMake lists name exactly the module files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "PancreasSeg"


def _cmake_variables(text: str) -> dict[str, str]:
    return dict(re.findall(r"set\((\w+)\s+([^)]*)\)", text))


def listed_files(cmake: Path) -> set[str]:
    """Files listed in MODULE_PYTHON_SCRIPTS and MODULE_PYTHON_RESOURCES, with ${MODULE_NAME} expanded."""
    text = re.sub(r"#.*", "", cmake.read_text(encoding="utf-8"))
    variables = _cmake_variables(text)
    name = variables["MODULE_NAME"].strip()
    files = set()
    for var in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for entry in variables[var].split():
            files.add(entry.replace("${MODULE_NAME}", name))
    return files


def present_files() -> set[str]:
    patterns = ["**/*.py", "Resources/UI/*.ui", "Resources/Icons/*.png"]
    return {p.relative_to(MODULE).as_posix() for pattern in patterns for p in MODULE.glob(pattern)
            if "__pycache__" not in p.parts}


def test_every_listed_module_file_exists():
    missing = sorted(f for f in listed_files(MODULE / "CMakeLists.txt") if not (MODULE / f).is_file())
    assert not missing, f"listed in PancreasSeg/CMakeLists.txt but missing: {missing}"


def test_every_module_file_is_listed():
    unlisted = sorted(present_files() - listed_files(MODULE / "CMakeLists.txt"))
    assert not unlisted, f"present in PancreasSeg/ but not listed in its CMakeLists.txt: {unlisted}"


def test_the_parser_sees_a_file_that_is_added_but_not_listed(tmp_path):
    cmake = tmp_path / "CMakeLists.txt"
    cmake.write_text("set(MODULE_NAME Foo)\nset(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  # Bar.py\n  )\n"
                     "set(MODULE_PYTHON_RESOURCES\n  Resources/UI/${MODULE_NAME}.ui\n  )\n")
    assert listed_files(cmake) == {"Foo.py", "Resources/UI/Foo.ui"}


def test_top_level_cmake_has_every_extension_field_and_the_slicer_boilerplate():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{field} "[^"]+"\)', text), f"EXTENSION_{field} missing or empty"
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert 'set(EXTENSION_DEPENDS "PyTorch")' in text
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(PancreasSeg)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in text


def test_module_cmake_builds_a_scripted_module_with_generic_tests_and_the_self_test():
    text = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_icon_exists():
    assert (ROOT / "Resources" / "PancreasSeg.png").is_file()
