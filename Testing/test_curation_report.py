"""``pancreasseg report``: statuses, reviewers and correction effort of a curated dataset."""

from __future__ import annotations

import json

import pytest
from curation_data import make_case

from PancreasSegLib.cli import main
from PancreasSegLib.curation import export_case
from PancreasSegLib.curation.report import format_text, summarize, write_report_plot
from PancreasSegLib.errors import InputError


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "Dataset504_Report"
    for seed, (reviewer, status) in enumerate([("dr-a", "corrected"), ("dr-a", "corrected"), ("dr-b", "rejected")]):
        image, label, proposal = make_case(seed)
        export_case(image, label, folder, proposal=proposal, reviewer=reviewer, status=status,
                    model={"name": "pancreas-phantom", "version": "1"})
    image, label, _ = make_case(5)
    export_case(image, label, folder, reviewer="dr-b", status="approved")
    return folder


def test_summary_counts_statuses_reviewers_and_effort(dataset):
    summary = summarize(dataset)
    assert summary["cases"] == 4 and summary["compared"] == 3
    assert summary["statuses"] == {"corrected": 2, "approved": 1, "rejected": 1}
    assert summary["reviewers"] == {"dr-a": 2, "dr-b": 2}
    assert summary["models"] == {"pancreas-phantom 1": 3, "(none)": 1}
    dice = summary["effort"]["dice"]
    assert len(dice["values"]) == 3 and 0 < dice["min"] <= dice["median"] <= dice["max"] < 1
    text = format_text(summary)
    assert "2 corrected, 1 approved, 1 rejected" in text and "Edited slices" in text


def test_the_plot_is_a_png_and_other_names_are_refused(dataset, tmp_path):
    path = write_report_plot(summarize(dataset), tmp_path / "effort.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="PNG"):
        write_report_plot(summarize(dataset), tmp_path / "effort.pdf")


def test_cli_report_prints_text_and_writes_plot_and_text_files(dataset, tmp_path, capsys):
    assert main(["report", str(dataset), "-o", str(tmp_path / "r.png"), "--text", str(tmp_path / "r.txt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Curated dataset {dataset}: 4 case(s)")
    assert (tmp_path / "r.txt").read_text(encoding="utf-8") == out and (tmp_path / "r.png").stat().st_size > 1000
    assert main(["report", str(dataset), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cases"] == 4
    assert main(["report", str(tmp_path / "missing")]) == 2
