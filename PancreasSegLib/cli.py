"""The ``pancreasseg`` command line.

Each subcommand lives in ``PancreasSegLib/commands/<name>.py`` and provides ``add_arguments(parser)``
and ``run(args) -> int``; its module docstring's first line is its help. Command modules import
nothing heavy at module level, so ``pancreasseg --help`` answers at once.

Exit status: 0 success, 2 bad input or usage (one line on stderr naming the file and the problem),
1 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from PancreasSegLib import __version__

#: Subcommands in the order ``--help`` lists them. A module that does not exist yet is skipped.
COMMANDS = (
    "demo",
    "segment",
    "worker",
    "phantom",
    "montage",
    "train",
    "evaluate",
    "calibrate",
    "export",
    "verify",
    "convert",
    "export-dicom-seg",
    "report",
    "review",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors also exit with 2, in one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand registered."""
    parser = _Parser(
        prog="pancreasseg",
        description="Pancreas segmentation in abdominal CT (two-phase Mask R-CNN + 3D U-Net). Research use only.",
    )
    parser.add_argument("--version", action="version", version=f"pancreasseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module_name = f"PancreasSegLib.commands.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name in (module_name, "PancreasSegLib.commands"):  # not built yet; anything else is a bug
                continue
            raise
        summary = (module.__doc__ or name).strip().splitlines()[0]
        command = sub.add_parser(name, help=summary, description=(module.__doc__ or "").strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (the console script passes it to ``sys.exit``)."""
    from PancreasSegLib.errors import Cancelled, InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"pancreasseg {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        print(f"pancreasseg {args.command}: cancelled, nothing written", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"pancreasseg {args.command}: error: out of memory", file=sys.stderr)
        return 1


def entry() -> NoReturn:
    """The console script and ``python -m PancreasSegLib``: run :func:`main` and exit with its status.

    A torchrun rank ends with ``os._exit`` once its output is flushed: with torch 2.14, a finished gloo
    rank sometimes aborts in a library's static destructor after Python has finished ("terminate called
    without an active exception", about one run in five here), which torchrun reports as a failed job.
    Everything the command wrote is closed by then; only interpreter teardown is skipped.
    """
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    entry()
