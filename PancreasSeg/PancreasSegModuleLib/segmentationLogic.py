"""The PancreasSeg Logic: inputs -> background ``segment`` -> result in the scene -> export for training.

It reaches Slicer only through two small interfaces handed to its constructor, so it runs (and is
tested) without Slicer:

- :class:`~.logicTypes.SceneAdapter`: what it needs of the MRML scene (``sceneAdapter.SlicerSceneAdapter``
  in Slicer);
- :class:`~.logicTypes.ProcessRunner`: a background command with streamed output and cancel
  (``processRunner.BackgroundProcess``).

Nothing heavy runs in this process: the work is ``python -m PancreasSegLib segment|export|train`` in the
background. The Logic is put together from one part per concern:

- :mod:`.commandLines`: the command lines and the child's environment;
- :mod:`.backgroundJob`: the lifecycle of the one background job (start, stream, cancel, shut down, end);
- the flows: :mod:`.segmentFlow` (segment, re-run inside the ROI, correct), :mod:`.datasetFlow` (export for
  training, open case) and :mod:`.fineTune` (fine-tune on the curated set).

Errors a user can fix raise ``ValueError`` with a message meant for them; the widget shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .backgroundJob import JobRunner
from .commandLines import CommandLines
from .datasetFlow import DatasetFlow
from .fineTune import FineTuneFlow
from .logicTypes import ProcessRunner, SceneAdapter
from .modelBundle import ModelInfo, ModelInfoCache, validateModelFolder
from .segmentFlow import SegmentFlow


class SegmentationLogic(SegmentFlow, DatasetFlow, FineTuneFlow):
    """Runs segmentation, export and fine-tuning in the background and brings the results into the scene.

    Args:
        scene: the scene interface.
        runner: the background process runner.
        pythonExecutable: the interpreter that has PancreasSegLib's dependencies (``PythonSlicer`` in Slicer).
        libraryRoot: folder holding the ``PancreasSegLib`` package, put on the child's PYTHONPATH.
        confirm: ``confirm(question) -> bool``, asked before a result is replaced (the widget shows a dialog).
            Without one, replacing is refused.
        tempRoot: where temporary run folders go (system default when None).
        commandPrefix: the command that runs PancreasSegLib, instead of ``pythonExecutable -m PancreasSegLib``
            (e.g. an installed ``pancreasseg`` console script).
        checkDependencies: ``checkDependencies(action) -> bool`` with action "segment", "export" or "train",
            called before every background command; False (packages missing and not installed) stops it.
    """

    def __init__(self, scene: SceneAdapter, runner: ProcessRunner, pythonExecutable: str,
                 libraryRoot: str | None = None, confirm: Callable[[str], bool] | None = None,
                 tempRoot: str | None = None, commandPrefix: Sequence[str] | None = None,
                 checkDependencies: Callable[[str], bool] | None = None) -> None:
        self.scene = scene
        self.runner = runner
        self.confirm = confirm
        self.checkDependencies = checkDependencies
        self.commands = CommandLines(pythonExecutable, libraryRoot, commandPrefix)
        self.jobs = JobRunner(runner, self.commands.environment, tempRoot)
        #: Bundle folders registered as model choices (fine-tuned models), newest last.
        self.registeredModels: list[str] = []
        self._modelInfo = ModelInfoCache()

    # -- models ----------------------------------------------------------------------------------------

    def checkModel(self, modelPath: str) -> ModelInfo:
        """Validate the model folder as it is now (raises ValueError); every run and registration does."""
        return validateModelFolder(modelPath)

    def modelInfo(self, modelPath: str) -> ModelInfo:
        """What the GUI shows of the model: checked once per path, not on every GUI update (raises ValueError)."""
        return self._modelInfo.get(modelPath)

    # -- the background job ----------------------------------------------------------------------------

    def isRunning(self) -> bool:
        """True while a background command of this Logic runs."""
        return self.jobs.isRunning()

    @property
    def runningKind(self) -> str | None:
        """"segment", "export" or "train" while that command runs, else None."""
        return self.jobs.runningKind

    @property
    def lastResult(self) -> Any:
        """What the last successful job handed to ``onDone``."""
        return self.jobs.lastResult

    def cancel(self) -> None:
        """Kill the running command and every process it started; the scene is left as it was."""
        self.jobs.cancel()

    def shutdown(self, timeoutSeconds: float = 10.0, quiet: bool = False) -> None:
        """End a running job now (the scene's StartCloseEvent, the widget's ``cleanup``); see
        :meth:`.backgroundJob.JobRunner.shutdown`; a warm worker (``workerRunner.WorkerRunner``) is shut down
        too. The scene is left as it was."""
        self.jobs.shutdown(timeoutSeconds=timeoutSeconds, quiet=quiet)
        close = getattr(self.runner, "close", None)
        if callable(close):
            close()

    def wait(self, idle: Callable[[], None] | None = None, timeoutSeconds: float | None = None) -> Any:
        """Block until the running job ends (self-test, scripting); return its result.

        Raises:
            RuntimeError: the job failed (with the command's one-line message) or was cancelled.
        """
        return self.jobs.wait(idle=idle, timeoutSeconds=timeoutSeconds)

    def _dependenciesReady(self, action: str) -> bool:
        return self.checkDependencies is None or bool(self.checkDependencies(action))
