"""``pancreasseg worker``: the request protocol, in-process (fast) and once as a real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from bundle_doubles import make_random_bundle
from inference_doubles import blob_volume, test_config

from PancreasSegLib.commands.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker")
    bundle = make_random_bundle(folder / "bundle", seed=0, config=test_config())
    other = make_random_bundle(folder / "other", seed=1, config=test_config())
    ct = folder / "case_0000.nii.gz"
    sitk.WriteImage(blob_volume()[0], str(ct))
    roi = folder / "roi.json"
    roi.write_text(json.dumps({"center": [10.0, 5.0, 0.0], "size": [70.0, 50.0, 50.0], "margin_mm": 20.0}))
    return {"bundle": bundle, "other": other, "ct": ct, "roi": roi}


def _segment(case, out: Path, bundle: str = "bundle") -> list[str]:
    return ["segment", str(case["ct"]), "-o", str(out), "--model", str(case[bundle]), "--roi", str(case["roi"]),
            "--device", "cpu"]


def _serve(lines: list[str], keep_models: int = 2) -> tuple[int, list[dict], Worker]:
    stdout = io.StringIO()
    worker = Worker(io.StringIO("".join(line + "\n" for line in lines)), stdout, keep_models=keep_models)
    code = worker.serve()
    return code, [json.loads(line) for line in stdout.getvalue().splitlines()], worker


def _ends(events: list[dict]) -> list[tuple]:
    return [(e["id"], e["event"], e.get("exit")) for e in events if e["event"] in ("done", "error")]


def test_requests_are_answered_in_order_with_their_id_and_a_bad_one_does_not_stop_the_worker(case, tmp_path):
    code, events, worker = _serve([
        json.dumps({"id": "r1", "args": _segment(case, tmp_path / "a.nii.gz")}),
        "this is not json",
        json.dumps({"id": "r2", "args": ["train", "x"]}),
        json.dumps({"id": "r3", "args": ["segment", "--no-such-option"]}),
        json.dumps({"id": "r4", "args": _segment(case, tmp_path / "missing" / "b.nii.gz")}),
        json.dumps({"id": "r5", "args": _segment(case, tmp_path / "c.nrrd", bundle="other")}),
        json.dumps({"id": "r6", "args": _segment(case, tmp_path / "d.nii.gz")}),
    ])
    assert code == 0
    assert events[0]["event"] == "ready"
    # Bad requests are answered at once, while the segment requests run one after the other, in order.
    ends = _ends(events)
    assert sorted(ends, key=str) == sorted([("r1", "done", None), (None, "error", 2), ("r2", "error", 2),
                                            ("r3", "error", 2), ("r4", "error", 2), ("r5", "done", None),
                                            ("r6", "done", None)], key=str)
    assert [e[0] for e in ends if e[0] in ("r1", "r4", "r5", "r6")] == ["r1", "r4", "r5", "r6"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e.get("id") in ("r1", "r5", "r6") for e in progress)
    assert {e["stage"] for e in progress if e["id"] == "r1"} >= {"read", "segment", "postprocess", "write"}
    assert (tmp_path / "a.nii.gz").is_file() and (tmp_path / "c.nrrd").is_file() and (tmp_path / "d.nii.gz").is_file()
    assert next(e for e in events if e.get("id") == "r3")["message"] == \
        "pancreasseg segment: error: the following arguments are required: INPUT, -o/--output"
    done = {e["id"]: e for e in events if e["event"] == "done"}
    assert done["r5"]["model"]["path"] == str(case["other"]) and done["r6"]["model"]["path"] == str(case["bundle"])
    assert len(worker.models) == 2  # both models stayed loaded


def test_only_the_last_models_used_stay_loaded(case, tmp_path):
    _, events, worker = _serve([json.dumps({"id": f"r{i}", "args": _segment(case, tmp_path / f"{i}.nii.gz", b)})
                                for i, b in enumerate(("bundle", "other", "bundle"))], keep_models=1)
    assert [e for _, e, _ in _ends(events)] == ["done"] * 3
    assert [Path(key[0]) for key in worker.models] == [case["bundle"].resolve()]


class _CancelOnFirstProgress(io.StringIO):
    """The worker's stdout: on the first progress of r1 the client sends ``cancel r1`` and waits until it is taken."""

    def __init__(self, requests: list[str]) -> None:
        super().__init__()
        self.requests, self.progressed, self.worker = requests, threading.Event(), None

    def stdin(self):
        yield self.requests[0] + "\n"
        self.progressed.wait(60)
        yield json.dumps({"id": "c", "args": ["cancel", "r1"]}) + "\n"
        yield from (r + "\n" for r in self.requests[1:])

    def write(self, text: str) -> int:
        if '"progress"' in text and '"r1"' in text and not self.progressed.is_set():
            self.progressed.set()
            deadline = time.monotonic() + 60
            while "r1" not in self.worker._cancelled and time.monotonic() < deadline:
                time.sleep(0.005)
        return super().write(text)


def test_cancel_stops_a_running_request_writes_nothing_and_the_worker_goes_on(case, tmp_path):
    stdout = _CancelOnFirstProgress([json.dumps({"id": "r1", "args": _segment(case, tmp_path / "a.nii.gz")}),
                                     json.dumps({"id": "r2", "args": _segment(case, tmp_path / "b.nii.gz")})])
    worker = Worker(stdout.stdin(), stdout)
    stdout.worker = worker
    assert worker.serve() == 0
    events = [json.loads(line) for line in stdout.getvalue().splitlines()]
    ends = _ends(events)
    assert ("c", "done", None) in ends
    assert [e for e in ends if e[0] != "c"] == [("r1", "error", 130), ("r2", "done", None)]
    assert next(e for e in events if e.get("id") == "r1" and e["event"] == "error")["message"] == \
        "cancelled, nothing written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.nii.gz", "b.nii.gz.quality.json"]


def test_shutdown_cancels_what_is_queued_and_ends_the_worker(case, tmp_path):
    code, events, _ = _serve([json.dumps({"id": "r1", "args": _segment(case, tmp_path / "a.nii.gz")}),
                              json.dumps({"id": "s", "args": ["shutdown"]}),
                              json.dumps({"id": "r2", "args": _segment(case, tmp_path / "b.nii.gz")})])
    assert code == 0
    ends = _ends(events)
    assert ("s", "done", None) in ends
    assert ("r1", "error", 130) in ends and "r2" not in [e[0] for e in ends]  # after shutdown nothing is read
    assert list(tmp_path.iterdir()) == []


def test_the_worker_as_a_real_process_answers_and_ends_at_the_end_of_stdin(case, tmp_path):
    requests = "".join(json.dumps({"id": f"r{i}", "args": _segment(case, tmp_path / f"{i}.nii.gz")}) + "\n"
                       for i in range(2))
    result = subprocess.run([sys.executable, "-m", "PancreasSegLib", "worker", "--model", str(case["bundle"]),
                             "--device", "cpu"], input=requests, cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != "PANCREASSEG_FULL_IMPORTS"})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "ready"
    assert _ends(events) == [("r0", "done", None), ("r1", "done", None)]
    assert (tmp_path / "0.nii.gz").is_file() and (tmp_path / "1.nii.gz").is_file()
