"""``pancreasseg review``'s checks before anything starts (they need neither trame nor a browser)."""

from __future__ import annotations

import json

from PancreasSegLib.cli import main


def _dataset(folder):
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps({"name": folder.name}), encoding="utf-8")
    return folder


def test_a_curated_dataset_is_reviewed_into_itself_only(tmp_path, capsys):
    source = _dataset(tmp_path / "Dataset501_Curated")
    other = tmp_path / "Dataset502_Other"
    assert main(["review", str(source), "--dataset", str(other), "--reviewer", "dr-a"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(source) in err and "review it again into itself" in err
    assert not other.exists()  # nothing was created


def test_bad_reviewer_and_port_are_refused_in_one_line(tmp_path, capsys):
    cases = tmp_path / "cts"
    cases.mkdir()
    assert main(["review", str(cases), "--dataset", str(tmp_path / "D"), "--reviewer", " "]) == 2
    assert "--reviewer must name who reviews" in capsys.readouterr().err
    assert main(["review", str(cases), "--dataset", str(tmp_path / "D"), "--reviewer", "r", "--port", "0"]) == 2
    assert "--port 0 is not a port number" in capsys.readouterr().err
    assert not (tmp_path / "D").exists()
