"""The reading room's model drop-down: which bundles it offers, and that it accepts only those."""

from __future__ import annotations

import json

import pytest

from PancreasSegLib.constants import BUNDLED_MODELS_DIR, default_model
from PancreasSegWeb.ui import chosen_model, model_choices


def _bundle(folder, name):
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"name": name}), encoding="utf-8")
    return folder


def test_the_bundled_models_are_offered_newest_first_with_the_default_marked(tmp_path):
    models = tmp_path / "Models"
    for version in (1, 3, 2):
        _bundle(models / f"pancreas-phantom-v{version}", f"pancreas-phantom-v{version}")
    (models / "not-a-bundle").mkdir()
    choices = model_choices(models / "pancreas-phantom-v3", models, default=models / "pancreas-phantom-v3")
    assert [c["title"] for c in choices] == ["pancreas-phantom-v3 (bundled, default)", "pancreas-phantom-v2 (bundled)",
                                             "pancreas-phantom-v1 (bundled)"]
    mine = _bundle(tmp_path / "fine-tuned", "mine")
    with_mine = model_choices(mine, models, default=models / "pancreas-phantom-v3")
    assert with_mine[-1] == {"title": "fine-tuned (from a folder)", "value": str(mine)}
    assert len(with_mine) == 4


def test_the_shipped_models_are_all_offered():
    choices = model_choices(default_model(), BUNDLED_MODELS_DIR, default_model())
    offered = {c["value"] for c in choices}
    shipped = {str(p) for p in BUNDLED_MODELS_DIR.iterdir() if (p / "model.json").is_file()}
    assert offered == shipped and len(shipped) >= 3
    assert sum("default" in c["title"] for c in choices) == 1


def test_only_an_offered_model_is_accepted(tmp_path):
    models = tmp_path / "Models"
    offered = _bundle(models / "a", "a")
    choices = model_choices(offered, models)
    assert chosen_model(str(offered), choices) == str(offered)
    assert chosen_model(str(models / "." / "a"), choices) == str(offered)
    for value in (str(tmp_path / "elsewhere"), None, "../a"):
        with pytest.raises(ValueError, match="not one of the models offered"):
            chosen_model(value, choices)
