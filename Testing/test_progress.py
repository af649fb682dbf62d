"""Progress reporters: JSON lines for programs, a bar (or plain lines) for people."""

from __future__ import annotations

import io
import json

from PancreasSegLib.progress import BarReporter, JsonlReporter, Reporter, make_reporter


def test_jsonl_lines_follow_the_contract():
    stream = io.StringIO()
    reporter = JsonlReporter(stream)
    reporter("localize", 1.7, "slices 1-32 of 36")
    reporter.done({"segmentation": "out.seg.nrrd"}, {"coordinate_system": "LPS"}, 3.21049, found=True)
    reporter.error("ct.nii.gz: no pancreas\nfound")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"event": "progress", "stage": "localize", "fraction": 1.0, "message": "slices 1-32 of 36"}
    assert lines[1] == {"event": "done", "outputs": {"segmentation": "out.seg.nrrd"},
                        "roi": {"coordinate_system": "LPS"}, "seconds": 3.21, "found": True}
    assert lines[2] == {"event": "error", "message": "ct.nii.gz: no pancreas found"}


def test_the_bar_writes_one_line_per_stage_when_not_on_a_terminal():
    stream = io.StringIO()
    reporter = BarReporter(stream)
    for fraction in (0.0, 0.5, 1.0):
        reporter("segment", fraction, "window")
    reporter("write", 0.0, "writing out.nii.gz")
    reporter.done({}, None, 2.0, volume_ml=71.25)
    assert stream.getvalue().splitlines() == ["segment: window", "write: writing out.nii.gz",
                                              "done in 2.0 s, pancreas 71.2 mL"]


def test_none_reports_nothing(capsys):
    reporter = make_reporter("none")
    assert type(reporter) is Reporter
    reporter("read", 0.5, "x")
    reporter.done({}, None, 1.0)
    assert capsys.readouterr() == ("", "")
