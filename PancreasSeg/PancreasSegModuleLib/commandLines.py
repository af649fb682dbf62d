"""The command lines the module runs in the background, and the environment they run in.

Each is ``python -m PancreasSegLib <command> ...`` (``PythonSlicer`` in Slicer, or an injected prefix such
as an installed ``pancreasseg``): ``segment`` (with ``--progress jsonl``), ``export --json`` and
``train --init`` for "Fine-tune on curated set". The option names are those of the library's commands
(``Testing/test_module_cli_integration.py`` runs them for real).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from PancreasSegLib.constants import DEVICES

from .logicTypes import ExportOptions, FineTuneOptions, SegmentOptions

#: The ROI margin the module accepts, in mm.
MARGIN_RANGE_MM = (0.0, 200.0)
#: The fine-tuning time budget the module accepts, in minutes.
MINUTES_RANGE = (0.1, 24 * 60.0)


class CommandLines:
    """Builds the background command lines.

    Args:
        pythonExecutable: the interpreter that has PancreasSegLib's dependencies (``PythonSlicer`` in Slicer).
        libraryRoot: folder holding the ``PancreasSegLib`` package, put on the child's PYTHONPATH.
        commandPrefix: the command that runs PancreasSegLib, instead of ``pythonExecutable -m PancreasSegLib``.
    """

    def __init__(self, pythonExecutable: str, libraryRoot: str | None = None,
                 commandPrefix: Sequence[str] | None = None) -> None:
        self.pythonExecutable = pythonExecutable
        self.libraryRoot = libraryRoot
        self._prefix = list(commandPrefix) if commandPrefix else None

    def prefix(self) -> list[str]:
        """``python -m PancreasSegLib`` with the configured interpreter (or the injected prefix)."""
        if self._prefix:
            return list(self._prefix)
        return [self.pythonExecutable, "-m", "PancreasSegLib"]

    def segment(self, inputPath: str, outputPath: str, roiOutPath: str, options: SegmentOptions,
                roiInPath: str | None = None, probabilitiesPath: str | None = None) -> list[str]:
        """The ``segment`` command line for one run.

        Raises:
            ValueError: an unknown device or a margin out of range.
        """
        if options.device not in DEVICES:
            raise ValueError(f"Unknown device {options.device!r}: choose one of {', '.join(DEVICES)}.")
        low, high = MARGIN_RANGE_MM
        if not low <= float(options.marginMm) <= high:
            raise ValueError(f"ROI margin must be between {low:g} and {high:g} mm, got {options.marginMm}.")
        # A user-placed ROI is already the box to segment in: no margin on top of it.
        margin = 0.0 if roiInPath else float(options.marginMm)
        args = self.prefix() + [
            "segment", inputPath, "-o", outputPath,
            "--model", str(options.modelPath),
            "--device", options.device,
            "--margin-mm", f"{margin:g}",
            "--roi-out", roiOutPath,
            "--progress", "jsonl",
        ]
        if roiInPath:
            args += ["--roi", roiInPath]
        if probabilitiesPath:
            args += ["--probabilities", probabilitiesPath]
        if options.force:
            args.append("--force")
        return args

    def export(self, imagePath: str, labelPath: str, proposalPath: str | None, options: ExportOptions,
               modelPath: str | None = None) -> list[str]:
        """The ``export`` command line (prints a JSON summary with ``--json``).

        ``modelPath``: the bundle that made the proposal; its name, version and weights' sha256 go into
        the case's provenance.
        """
        args = self.prefix() + ["export", "--image", imagePath, "--label", labelPath]
        if proposalPath:
            args += ["--proposal", proposalPath]
        args += ["--dataset", options.datasetFolder, "--case-id", options.caseId,
                 "--reviewer", options.reviewer, "--status", options.status]
        if options.note:
            args += ["--note", options.note]
        if modelPath:
            args += ["--model", modelPath]
        return args + ["--json"]

    def train(self, initBundle: str, outputBundle: str, options: FineTuneOptions) -> list[str]:
        """The ``train DATASET --init BUNDLE -o NEW`` command line of "Fine-tune on curated set".

        Raises:
            ValueError: a time budget out of range.
        """
        low, high = MINUTES_RANGE
        if not low <= float(options.minutes) <= high:
            raise ValueError(f"The time budget must be between {low:g} and {high:g} minutes, got {options.minutes}.")
        return self.prefix() + [
            "train", options.datasetFolder, "-o", outputBundle, "--stage", "both", "--init", initBundle,
            "--minutes", f"{float(options.minutes):g}", "--device", options.device, "--progress", "jsonl"]

    def environment(self) -> dict[str, str]:
        """The environment of the background command: unbuffered output, PancreasSegLib importable."""
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.libraryRoot:
            parts = [self.libraryRoot] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
        return env
