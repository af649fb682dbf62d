"""The command line dispatcher: help, version, usage errors, and how commands report bad input."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from PancreasSegLib import __version__, cli
from PancreasSegLib.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "monai", "SimpleITK", "vtk", "vtkmodules", "matplotlib", "scipy")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_works_in_process(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: pancreasseg")


def test_help_works_as_a_real_subprocess():
    result = _run("-m", "PancreasSegLib", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: pancreasseg" in result.stdout
    assert result.stderr == ""


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys; from PancreasSegLib.cli import build_parser; build_parser(); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported while building the parser: {result.stdout.strip()}"


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pancreasseg {__version__}"


@pytest.mark.parametrize("argv", [["no-such-command"], []])
def test_unknown_or_missing_command_exits_2_with_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("pancreasseg: error:") and err.count("\n") == 1


def test_unknown_command_as_subprocess_exits_2():
    result = _run("-m", "PancreasSegLib", "no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


@pytest.fixture
def fake_command(monkeypatch):
    """A command ``fake`` whose behaviour the test chooses through ``module.action``."""
    module = types.ModuleType("PancreasSegLib.commands.fake", "Fake command for tests.\n\nMore text.")
    module.add_arguments = lambda parser: parser.add_argument("input")
    module.run = lambda args: module.action(args)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "fake"))
    return module


def test_bad_input_is_one_line_naming_the_file_and_exit_2(capsys, fake_command):
    def fail(args):
        raise InputError("not a 3D image\n(it has 2 dimensions)", args.input)

    fake_command.action = fail
    assert cli.main(["fake", "scan.nii.gz"]) == 2
    err = capsys.readouterr().err
    assert err == "pancreasseg fake: error: scan.nii.gz: not a 3D image (it has 2 dimensions)\n"


def test_interrupt_exits_130_and_success_returns_0(capsys, fake_command):
    fake_command.action = lambda args: (_ for _ in ()).throw(KeyboardInterrupt())
    assert cli.main(["fake", "x"]) == 130
    assert "nothing written" in capsys.readouterr().err
    fake_command.action = lambda args: None
    assert cli.main(["fake", "x"]) == 0


def test_command_help_comes_from_the_module_docstring(capsys, fake_command):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "Fake command for tests." in capsys.readouterr().out


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_rank_exits_with_the_commands_status_and_its_output_flushed(tmp_path, world_size):
    # Under torchrun (WORLD_SIZE > 1) the process ends through os._exit; nothing printed may be lost.
    import os

    env = {**os.environ, "WORLD_SIZE": world_size, "RANK": "0", "PYTHONPATH": str(ROOT)}
    missing = tmp_path / "missing-dataset"
    result = subprocess.run([sys.executable, "-m", "PancreasSegLib", "verify", str(missing)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "missing-dataset: 1 problem(s)" in result.stdout and "no such dataset folder" in result.stdout
