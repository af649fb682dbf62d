"""The package's tree shows the pipeline, and data walks one way through it.

Every import in ``PancreasSegLib`` (lazy ones inside functions included) is read with ``ast``: there
are no import circles, and no module imports one of a later stage. Module and function sizes stay
within what one concept needs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "PancreasSegLib"

#: The stages, earliest first. A module may import its own stage's modules and those of earlier stages.
STAGES = (
    ("base", ("", "errors", "labels", "constants", "progress")),
    ("io", ("io",)),
    ("datasets", ("datasets",)),
    ("checks", ("checks",)),
    ("model", ("model",)),
    ("outputs", ("outputs",)),
    ("pipeline", ("pipeline",)),
    ("evaluation", ("evaluation",)),
    ("phantoms", ("phantoms",)),
    ("training", ("training",)),
    ("curation", ("curation",)),
    ("commands", ("commands",)),
    ("cli", ("cli", "__main__")),
)
#: Inside the pipeline, the order of the job: a step may use the ones before it, never the ones after.
PIPELINE = ("roi", "sampling", "phase1", "phase2", "postprocess", "border_guard", "predictor", "batch")
#: Imports that the stage order allows but the design does not.
FORBIDDEN = (("training", "pipeline.predictor"),)
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {imported modules of the package}}`` for every module under ``root/package``."""
    files = {module_name(p, root): p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from a.b import c` imports the module a.b.c when there is one, else the name c of a.b
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                              for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in files:  # `import a.b.c` for a name c of a.b
                    candidate = candidate.rpartition(".")[0]
                # A package's own ancestors are imported before it in any case: no edge, no circle.
                ancestor = name.startswith(candidate + ".")
                if candidate and candidate != name and not ancestor and candidate.split(".")[0] == package:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def stage_of(module: str) -> tuple[int, int]:
    """(stage index, step index inside the pipeline) of a module name such as ``PancreasSegLib.pipeline.phase1``."""
    rest = module.split(".")[1:]
    top = rest[0] if rest else ""
    for index, (_, tops) in enumerate(STAGES):
        if top in tops:
            step = PIPELINE.index(rest[1]) if top == "pipeline" and len(rest) > 1 and rest[1] in PIPELINE else -1
            return index, step
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES in {Path(__file__).name}")


def order_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imports in sorted(graph.items()):
        if module == PACKAGE:  # the package's face: hands on Predictor (lazily) from the pipeline
            continue
        mine = stage_of(module)
        for target in sorted(imports):
            theirs = stage_of(target)
            later_stage = theirs[0] > mine[0]
            later_step = theirs[0] == mine[0] and mine[1] >= 0 and theirs[1] > mine[1]
            if later_stage or later_step:
                found.append(f"{module} imports {target} of a later stage")
        for source, target in FORBIDDEN:
            if module.startswith(f"{PACKAGE}.{source}") and any(t.startswith(f"{PACKAGE}.{target}") for t in imports):
                found.append(f"{module} imports {PACKAGE}.{target}")
    return found


def test_the_package_has_no_import_circles():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_imports_one_of_a_later_stage():
    assert order_violations(import_graph(ROOT)) == []


def test_every_module_belongs_to_a_stage():
    for module in import_graph(ROOT):
        stage_of(module)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checks_catch_a_circle_a_backward_import_and_a_forbidden_one(tmp_path):
    write_tree(tmp_path, {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/volumes.py": "def f():\n    from PancreasSegLib.pipeline.phase2 import g\n",
        "pipeline/__init__.py": "",
        "pipeline/phase1.py": "from . import phase2\n",
        "pipeline/phase2.py": "from PancreasSegLib.pipeline.phase1 import x\nimport PancreasSegLib.io.volumes\n",
        "pipeline/predictor.py": "",
        "training/__init__.py": "",
        "training/run.py": "from PancreasSegLib.pipeline import predictor\n",
    })
    graph = import_graph(tmp_path)
    assert graph[f"{PACKAGE}.pipeline.phase1"] == {f"{PACKAGE}.pipeline.phase2"}
    assert find_cycle(graph) is not None
    problems = order_violations(graph)
    assert f"{PACKAGE}.io.volumes imports {PACKAGE}.pipeline.phase2 of a later stage" in problems
    assert f"{PACKAGE}.pipeline.phase1 imports {PACKAGE}.pipeline.phase2 of a later stage" in problems
    assert f"{PACKAGE}.training.run imports {PACKAGE}.pipeline.predictor" in problems
    assert not any(p.startswith(f"{PACKAGE}.pipeline.phase2 ") for p in problems)


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


@pytest.mark.parametrize(("folder", "max_lines"), [(PACKAGE, MAX_MODULE_LINES),
                                                   ("PancreasSeg/PancreasSegModuleLib", 300)])
def test_modules_and_functions_stay_within_one_concept(folder, max_lines):
    files = [p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    too_long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in files
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > max_lines]
    assert too_long == []
    assert [f for p in files for f in long_functions(p)] == []


def test_the_predictor_is_importable_from_the_package():
    from PancreasSegLib import Predictor
    from PancreasSegLib.pipeline.predictor import Predictor as Same

    assert Predictor is Same
