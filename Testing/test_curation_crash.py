"""Crash safety: an export killed with SIGKILL at any moment leaves a dataset that verifies and that
still holds every case whose export had finished.

After a kill, :func:`verify_dataset` first runs the recovery (finish a committed export, discard an
uncommitted one), as the next export would, then checks; that is the documented protocol.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from curation_data import make_case

from PancreasSegLib.curation import export_case, verify_dataset

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")

REPO = Path(__file__).resolve().parents[1]

# Kills its own process just before the N-th file-system change of the export (rename, replace, link,
# unlink, mkdir, rmdir), so that every intermediate state of the protocol is reached once.
KILL_AT_STEP = r"""
import os, signal, sys
limit, calls = int(sys.argv[1]), [0]
def wrap(name):
    original = getattr(os, name)
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    setattr(os, name, wrapper)
for name in ("replace", "rename", "link", "unlink", "mkdir", "rmdir"):
    wrap(name)
from PancreasSegLib.cli import main
sys.exit(main(sys.argv[2:]))
"""


def write_inputs(folder: Path, seed: int) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    images = make_case(seed)
    paths = {}
    for key, image in zip(("image", "label", "proposal"), images):
        paths[key] = str(folder / f"{key}{seed}.nii.gz")
        sitk.WriteImage(image, paths[key])
    return paths


def export_args(paths: dict[str, str], dataset: Path, note: str, case_id: str | None = None) -> list[str]:
    args = ["export", "--image", paths["image"], "--label", paths["label"], "--proposal", paths["proposal"],
            "--dataset", str(dataset), "--note", note]
    return args + (["--case-id", case_id] if case_id else [])


def notes_on_disk(dataset: Path) -> list[str]:
    files = list((dataset / "provenance").glob("*.json")) + list((dataset / "history").glob("*/*/provenance.json"))
    return [json.loads(p.read_text(encoding="utf-8"))["note"] for p in files]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                OMP_NUM_THREADS="1")


def test_exports_killed_at_random_moments_leave_a_dataset_that_verifies(tmp_path):
    rng = random.Random(20240611)
    dataset = tmp_path / "Dataset502_Crash"
    inputs = [write_inputs(tmp_path / "in", seed) for seed in range(3)]
    start = time.monotonic()
    first = subprocess.run([sys.executable, "-m", "PancreasSegLib", *export_args(inputs[0], dataset, "setup")],
                           env=env(), check=False, capture_output=True, text=True, timeout=120)
    duration = time.monotonic() - start
    assert first.returncode == 0, first.stderr
    # Most of an export's run is Python starting and importing; aim the kills past that, at the writing.
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import SimpleITK, numpy, PancreasSegLib.curation.export"], env=env(),
                   check=True, timeout=120)
    startup = min(time.monotonic() - start, 0.8 * duration)
    finished, killed, recovered = ["setup"], 0, 0
    for trial in range(20):
        cases = sorted(p.stem for p in (dataset / "provenance").glob("*.json"))
        case_id = rng.choice(cases) if rng.random() < 0.5 else None  # a re-export or a new case
        note = f"trial {trial}"
        proc = subprocess.Popen([sys.executable, "-m", "PancreasSegLib",
                                 *export_args(inputs[trial % 3], dataset, note, case_id)],
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.8 * startup, 1.1 * duration))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            finished.append(note)
        else:
            assert proc.returncode == -signal.SIGKILL, err
            killed += 1
        result = verify_dataset(dataset)
        assert result.problems == [], f"after {note} (case {case_id}): {result.problems}"
        recovered += bool(result.recovered)
        on_disk = notes_on_disk(dataset)
        assert set(finished) <= set(on_disk), f"a finished export is missing after {note}"
        assert len(on_disk) == len(set(on_disk)), "an export was applied twice"
    print(f"{killed} of 20 exports killed ({recovered} mid-write, recovered), export takes {duration:.2f} s")


def test_an_export_killed_before_each_of_its_file_operations_leaves_the_old_or_the_new_case(tmp_path):
    base = tmp_path / "base"
    first = write_inputs(tmp_path / "in", 0)
    export_case(first["image"], first["label"], base, proposal=first["proposal"], note="old")
    other = write_inputs(tmp_path / "in", 1)
    export_case(other["image"], other["label"], base, proposal=other["proposal"], note="other")
    # A re-export with a different image takes every path: image, history snapshot with image, proposal.
    second = write_inputs(tmp_path / "in2", 2)
    step = 0
    while True:
        step += 1
        assert step < 200, "the export never finished"
        dataset = tmp_path / f"step{step}"
        shutil.copytree(base, dataset)
        proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(step),
                               *export_args(second, dataset, "new", "case_0001")],
                              env=env(), check=False, capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        result = verify_dataset(dataset)
        assert result.problems == [], f"killed before file operation {step}: {result.problems}"
        live = json.loads((dataset / "provenance" / "case_0001.json").read_text(encoding="utf-8"))
        history = list((dataset / "history" / "case_0001").glob("*/provenance.json"))
        if live["note"] == "old":
            assert (live["revision"], history) == (1, [])
        else:
            assert (live["note"], live["revision"], len(history)) == ("new", 2, 1)
            assert json.loads(history[0].read_text(encoding="utf-8"))["note"] == "old"
        assert json.loads((dataset / "provenance" / "case_0002.json").read_text(encoding="utf-8"))["note"] == "other"
        if proc.returncode == 0:
            assert live["note"] == "new"
            break
        shutil.rmtree(dataset)
    print(f"{step - 1} kill points")
    assert step > 10  # the protocol really has that many steps, each of which was interrupted once
