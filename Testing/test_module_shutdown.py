"""The module's Logic when the scene or the module closes during a run, overlapping runs, failed imports."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

import pytest
from module_doubles import FakeRunner, FakeScene, writeFakeBundle, writeFakeOutput
from PancreasSegModuleLib.logicTypes import Callbacks, ExportOptions, SegmentOptions
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic
from test_module_logic import Recorder, done_line

MODULE = Path(__file__).resolve().parents[1] / "PancreasSeg"


@pytest.fixture
def model(tmp_path):
    return writeFakeBundle(tmp_path / "model", name="m")


@pytest.fixture
def env(tmp_path):
    scene, runner = FakeScene(), FakeRunner()
    temp = tmp_path / "temp"
    temp.mkdir()
    logic = SegmentationLogic(scene, runner, pythonExecutable="python", confirm=lambda q: True, tempRoot=str(temp))
    return logic, scene, runner, scene.add("CT", "volume"), temp


def test_shutdown_during_a_run_kills_it_removes_its_files_and_leaves_the_scene_unchanged(env, model):
    logic, scene, runner, volume, temp = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    nodes = list(scene.nodes)
    assert len(list(temp.iterdir())) == 1
    logic.shutdown()
    assert runner.cancelCalls == 1 and not logic.isRunning()
    assert list(temp.iterdir()) == [] and rec.cancelled == 1
    # The killed process's end report arrives late: it changes nothing.
    runner.play([done_line()], before_finish=lambda: None)
    assert scene.nodes == nodes and rec.done == [] and rec.errors == [] and rec.cancelled == 1


def test_quiet_shutdown_calls_no_callback_of_the_closing_widget(env, model):
    logic, _, _, volume, temp = env
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    logic.shutdown(quiet=True)
    assert rec.cancelled == 0 and list(temp.iterdir()) == [] and not logic.isRunning()


def test_a_late_end_report_of_a_shut_down_run_does_not_end_the_next_run(env, model):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    stale = runner._callbacks["finished"]
    logic.shutdown()
    logic.segment(volume, SegmentOptions(str(model)))
    stale(130, "")
    assert logic.isRunning()
    with pytest.raises(ValueError, match="already in progress"):
        logic.segment(volume, SegmentOptions(str(model)))


def test_shutdown_without_a_run_does_nothing(env):
    logic, _, runner, _, _ = env
    logic.shutdown()
    assert runner.cancelCalls == 0


@pytest.mark.parametrize("first", ["segment", "export"])
def test_a_segment_and_an_export_cannot_overlap(env, model, tmp_path, first):
    logic, _, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args))
    export = ExportOptions(str(tmp_path / "ds"), "case_0001")
    start = {"segment": lambda: logic.segment(volume, SegmentOptions(str(model))),
             "export": lambda: logic.exportForTraining(volume, export)}
    start[first]()
    for other in start.values():
        with pytest.raises(ValueError, match="already in progress"):
            other()


def test_a_result_that_fails_to_load_leaves_the_previous_result_and_no_new_node(env, model, monkeypatch):
    logic, scene, runner, volume, _ = env
    logic.segment(volume, SegmentOptions(str(model)))
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args, b"first"))
    nodes = list(scene.nodes)
    first = scene.findResult(volume)

    def broken(*args, **kwargs):
        raise RuntimeError("Slicer could not copy the segmentation")

    monkeypatch.setattr(scene, "copySegmentation", broken)
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), rec.callbacks())
    runner.play([done_line()], before_finish=lambda: writeFakeOutput(runner.args, b"second"))
    assert rec.errors == ["Slicer could not copy the segmentation"] and rec.done == []
    assert scene.nodes == nodes and scene.findResult(volume) is first
    assert first.segmentation.props["source"] == b"first"


SLEEPER = r'''
import os, subprocess, sys, time
args = sys.argv[1:]
out = args[args.index("-o") + 1]
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(os.path.join(os.path.dirname(out), "pids"), "w").write(f"{os.getpid()} {child.pid}")
open(out + ".partial", "wb").write(b"half")
time.sleep(120)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0); it is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(os.name != "posix", reason="process groups")
def test_closing_the_scene_during_a_real_run_kills_the_process_tree_and_removes_the_files(tmp_path, model):
    from PancreasSegModuleLib.processRunner import BackgroundProcess

    script = tmp_path / "fake_python"
    script.write_text(f"#!{sys.executable}\n" + SLEEPER)
    script.chmod(0o755)
    temp = tmp_path / "temp"
    temp.mkdir()
    scene = FakeScene()
    logic = SegmentationLogic(scene, BackgroundProcess(terminateGraceSeconds=1.0), pythonExecutable=str(script),
                              tempRoot=str(temp))
    volume = scene.add("CT", "volume")
    rec = Recorder()
    logic.segment(volume, SegmentOptions(str(model)), Callbacks(onCancelled=rec._cancel))
    run_folder = next(temp.iterdir())
    deadline = time.monotonic() + 30
    while not (run_folder / "pids").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in (run_folder / "pids").read_text(encoding="utf-8").split()]
    assert all(_alive(pid) for pid in pids)
    logic.shutdown(timeoutSeconds=20)
    # shutdown() waits for the direct child; the signal reaches the rest of the group asynchronously.
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    assert list(temp.iterdir()) == [] and rec.cancelled == 1 and not logic.isRunning()
    assert scene.nodes == [volume]


def test_the_widget_shuts_the_logic_down_on_scene_close_and_cleanup():
    tree = ast.parse((MODULE / "PancreasSeg.py").read_text(encoding="utf-8"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PancreasSegWidget")
    methods = {n.name: ast.unparse(n) for n in widget.body if isinstance(n, ast.FunctionDef)}
    assert "self.logic.shutdown(" in methods["onSceneStartClose"]
    assert "self.logic.shutdown(quiet=True)" in methods["cleanup"]
