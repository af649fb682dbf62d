"""The module's background process runner and progress parser, with real child processes."""

from __future__ import annotations

import os
import sys
import time

import module_doubles  # noqa: F401  (puts the module folder on sys.path)
import pytest
from PancreasSegModuleLib.processRunner import CANCELLED_EXIT_CODE, BackgroundProcess
from PancreasSegModuleLib.progress import JsonLinesParser, lastErrorLine

posix_only = pytest.mark.skipif(os.name != "posix", reason="checks process groups with POSIX signals")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return True


def test_output_lines_and_exit_status_reach_the_callbacks():
    runner = BackgroundProcess()
    out, finished = [], []
    code = ("import sys, json\n"
            "for i in range(3): print(json.dumps({'event': 'progress', 'fraction': i / 2}), flush=True)\n"
            "print('pancreasseg segment: error: x.nii: not an image', file=sys.stderr)\n"
            "sys.exit(2)\n")
    runner.start([sys.executable, "-c", code], onStdout=out.append,
                 onFinished=lambda c, err: finished.append((c, err)))
    assert runner.wait(timeoutSeconds=60) == 2
    assert len(out) == 3
    assert finished[0][0] == 2 and lastErrorLine(finished[0][1]) == "pancreasseg segment: error: x.nii: not an image"
    assert not runner.isRunning()


def test_a_missing_program_raises_oserror():
    with pytest.raises(OSError):
        BackgroundProcess().start(["/nonexistent/PythonSlicer", "-m", "PancreasSegLib"])


def test_scheduled_polling_delivers_output_without_wait():
    pending = []
    runner = BackgroundProcess(schedule=lambda ms, fn: pending.append(fn))
    finished = []
    runner.start([sys.executable, "-c", "print('x')"], onFinished=lambda c, e: finished.append(c))
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending.pop(0)()
    assert finished == [0]


@posix_only
def test_cancel_kills_the_process_and_its_child(tmp_path):
    # The parent plays PythonSlicer (a launcher) and starts the real worker as a child.
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
            "print('{\"event\": \"progress\", \"fraction\": 0.1}', flush=True)\n"
            "time.sleep(300)\n")
    runner = BackgroundProcess(terminateGraceSeconds=1.0)
    out, finished = [], []
    runner.start([sys.executable, "-c", code], onStdout=out.append, onFinished=lambda c, e: finished.append(c))
    deadline = time.monotonic() + 60
    while not (out and pidfile.exists() and pidfile.read_text(encoding="utf-8")) and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.05)
    childPid, parentPid = int(pidfile.read_text(encoding="utf-8")), runner.pid
    assert _alive(childPid) and _alive(parentPid)
    runner.cancel()
    assert runner.wait(timeoutSeconds=30) == CANCELLED_EXIT_CODE
    assert finished == [CANCELLED_EXIT_CODE] and runner.cancelled
    deadline = time.monotonic() + 10
    while _alive(childPid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(childPid) and not _alive(parentPid)


@posix_only
def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored():
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(300)\n")
    runner = BackgroundProcess(terminateGraceSeconds=0.5)
    out = []
    runner.start([sys.executable, "-c", code], onStdout=out.append)
    deadline = time.monotonic() + 60
    while not out and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.05)
    pid = runner.pid
    runner.cancel()
    assert runner.wait(timeoutSeconds=30) == CANCELLED_EXIT_CODE
    assert not _alive(pid)


def test_starting_twice_is_refused():
    runner = BackgroundProcess()
    runner.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match="already running"):
            runner.start([sys.executable, "-c", "pass"])
    finally:
        runner.cancel()
        runner.wait(timeoutSeconds=30)


def test_parser_handles_split_lines_garbage_and_a_last_line_without_newline():
    parser = JsonLinesParser()
    events = parser.feed('{"event": "progress", "stage": "segment", "fraction": 0.5}\n{"event": "do')
    events += parser.feed('ne", "outputs": {}}\nINFO: noise\n{"event": "error", "message": "bad"}')
    assert [e.kind for e in events] == ["progress", "done"]
    assert parser.ignoredLines == ["INFO: noise"]
    assert [e.message for e in parser.flush()] == ["bad"]


def test_stage_fractions_map_onto_one_monotonic_bar():
    parser = JsonLinesParser()
    lines = "".join(f'{{"event": "progress", "stage": "{s}", "fraction": {f}}}\n'
                    for s in ("read", "localize", "segment", "postprocess", "write") for f in (0.0, 0.5, 1.0))
    fractions = [e.overallFraction for e in parser.feed(lines)]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_bad_fraction_values_do_not_break_the_bar():
    event = JsonLinesParser().feed('{"event": "progress", "stage": "segment", "fraction": "half"}\n')[0]
    assert 0.0 <= event.overallFraction <= 1.0
