"""The documentation points at things that exist: relative links, and the library's files and modules it names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md"),
               *(ROOT / "Resources" / "Models").glob("*/MODEL_CARD.md")])
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
LIBRARY_PATH = re.compile(r"`(PancreasSegLib/[\w/]+(?:\.py)?)`")
MODULE = re.compile(r"`(PancreasSegLib(?:\.\w+)+)`")


def broken(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    problems = [f"link {target}" for target in LINK.findall(text)
                if "://" not in target and not (doc.parent / target).exists()]
    problems += [f"path {path}" for path in LIBRARY_PATH.findall(text) if not (ROOT / path).exists()]
    for name in MODULE.findall(text):
        parts = name.split(".")
        # a module or package, or a name defined in one (PancreasSegLib.io.volumes.read_volume)
        if not (source(parts) is not None or ((owner := source(parts[:-1])) is not None and
                                              re.search(rf"\b{parts[-1]}\b", owner))):
            problems.append(f"module {name}")
    return problems


def source(parts: list[str]) -> str | None:
    for path in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts) / "__init__.py"):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_path_and_module_named_in_the_docs_exists(doc):
    assert broken(doc) == []


def test_the_check_finds_a_dead_link_a_moved_file_and_a_moved_module(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) `PancreasSegLib/localize.py` `PancreasSegLib.segment3d` "
                   "[b](x.md) `PancreasSegLib/pipeline/phase1.py` `PancreasSegLib.io.volumes.read_volume`\n",
                   encoding="utf-8")
    assert broken(doc) == ["link missing.md", "path PancreasSegLib/localize.py", "module PancreasSegLib.segment3d"]
