"""The module's Logic on the warm worker: the REAL ``pancreasseg worker`` through the real runner.

Two clicks share one worker process; a cancel stops the request and keeps the worker; a crashed worker
fails its request and is started again on the next click; shutting the Logic down ends the worker.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from bundle_doubles import make_random_bundle
from module_doubles import FakeScene
from PancreasSegModuleLib.logicTypes import SegmentOptions
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic
from PancreasSegModuleLib.workerRunner import WorkerRunner
from test_module_cli_integration import FileScene, Recorder

from PancreasSegLib.model.configs import tiny_config
from PancreasSegLib.phantoms.generator import make_phantom

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    config = tiny_config()
    config["stages"]["localizer"]["score_threshold"] = 0.0  # a random localizer then always "finds" something
    return make_random_bundle(tmp_path_factory.mktemp("bundles") / "random-eager", seed=0, config=config)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(3, preset="small", spacing=(6.0, 6.0, 6.0))


@pytest.fixture
def env(tmp_path, phantom, monkeypatch):
    monkeypatch.delenv("PANCREASSEG_FULL_IMPORTS", raising=False)  # the worker starts as in Slicer
    scene = FileScene()
    runner = WorkerRunner(cancelGraceSeconds=30.0)
    runs = tmp_path / "runs"
    runs.mkdir()
    logic = SegmentationLogic(scene, runner, pythonExecutable="", libraryRoot=str(ROOT),
                              commandPrefix=[sys.executable, "-m", "PancreasSegLib"], tempRoot=str(runs),
                              confirm=lambda question: True)  # each click replaces the last result
    volume = scene.addVolume("CT phantom", phantom[0])
    yield logic, scene, runner, volume, runs
    runner.close()


def _click(logic, volume, bundle, onProgress=None) -> Recorder:
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(bundle), device="cpu"), rec.callbacks(onProgress=onProgress))
    try:
        logic.wait(timeoutSeconds=TIMEOUT)
    except RuntimeError:
        pass  # the recorder holds what happened
    return rec


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_clicks_are_served_by_one_warm_worker_and_shutdown_ends_it(env, bundle):
    logic, scene, runner, volume, runs = env
    first = _click(logic, volume, bundle)
    pid = runner.workerPid
    assert first.errors == [] and len(first.done) == 1 and pid is not None
    second = _click(logic, volume, bundle)
    assert second.errors == [] and len(second.done) == 1
    assert runner.workerPids == [pid] and runner.workerPid == pid
    assert list(runs.iterdir()) == []
    logic.shutdown()
    assert runner.workerPid is None and _gone(pid)


def test_cancel_stops_the_request_and_the_worker_stays_loaded(env, bundle):
    logic, scene, runner, volume, runs = env
    assert len(_click(logic, volume, bundle).done) == 1
    pid, nodes = runner.workerPid, list(scene.nodes)
    cancelled = _click(logic, volume, bundle, onProgress=lambda fraction, message: logic.cancel())
    assert cancelled.cancelled == 1 and cancelled.done == [] and cancelled.errors == []
    assert scene.nodes == nodes and list(runs.iterdir()) == [] and not logic.isRunning()
    assert runner.workerPid == pid  # not killed: the next click finds the model loaded
    assert len(_click(logic, volume, bundle).done) == 1 and runner.workerPids == [pid]


def test_a_crashed_worker_fails_its_request_and_is_started_again_on_the_next_click(env, bundle):
    logic, scene, runner, volume, runs = env

    def crash(fraction, message):
        if runner.workerPid is not None:
            os.killpg(runner.workerPid, signal.SIGKILL)

    nodes = list(scene.nodes)
    crashed = _click(logic, volume, bundle, onProgress=crash)
    assert len(crashed.errors) == 1 and "worker stopped unexpectedly" in crashed.errors[0]
    assert crashed.done == [] and scene.nodes == nodes and list(runs.iterdir()) == []
    first = runner.workerPids[0]
    again = _click(logic, volume, bundle)
    assert again.errors == [] and len(again.done) == 1
    assert len(runner.workerPids) == 2 and runner.workerPid == runner.workerPids[1] != first


def test_other_commands_run_as_their_own_process_not_in_the_worker():
    runner = WorkerRunner()
    lines, ends = [], []
    runner.start([sys.executable, "-m", "PancreasSegLib", "--version"], onStdout=lines.append,
                 onFinished=lambda code, tail: ends.append(code))
    assert runner.wait(timeoutSeconds=TIMEOUT) == 0
    assert ends == [0] and "".join(lines).startswith("pancreasseg ") and runner.workerPids == []


def test_a_logic_without_a_worker_still_shuts_down():
    # The Logic's shutdown closes the runner only when it has a close(): a plain BackgroundProcess has none.
    from PancreasSegModuleLib.processRunner import BackgroundProcess

    logic = SegmentationLogic(FakeScene(), BackgroundProcess(), pythonExecutable=sys.executable)
    logic.shutdown()
    assert not logic.isRunning()
