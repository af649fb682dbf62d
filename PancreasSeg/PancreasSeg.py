"""PancreasSeg: find and outline the pancreas in abdominal CT, correct it, export it for training.

Flow of the module: inputs -> "Segment pancreas" (background command) -> result in the scene ->
"Correct in Segment Editor" -> "Export for training" -> "Fine-tune on curated set" (a new model
choice). The work is done by ``PancreasSegLib`` in a background ``PythonSlicer -m PancreasSegLib``
process; this file only binds the GUI to the Logic in ``PancreasSegModuleLib.segmentationLogic``.
Only light parts of ``PancreasSegLib`` are imported here (no torch, MONAI or SimpleITK): the module loads
before those are installed, and offers to install them when an action needs them.
"""

import contextlib
import os
import pathlib
import shutil
import sys
import time
from typing import Annotated, Optional

import qt
import slicer
import vtk
from PancreasSegModuleLib.libraryPath import ensureLibraryImportable
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_ROOT = ensureLibraryImportable(MODULE_DIR)

from PancreasSegModuleLib import dependencies  # noqa: E402  (needs PancreasSegLib on sys.path)
from PancreasSegModuleLib.datasetFlow import datasetFolderText  # noqa: E402
from PancreasSegModuleLib.logicTypes import Callbacks, ExportOptions, FineTuneOptions, SegmentOptions  # noqa: E402
from PancreasSegModuleLib.modelBundle import (  # noqa: E402
    RESEARCH_USE_ONLY,
    findBundledModel,
    isModelFolder,
    modelChoices,
)
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic  # noqa: E402
from PancreasSegModuleLib.workerRunner import WorkerRunner  # noqa: E402

from PancreasSegLib.constants import DEVICES, REVIEW_STATUSES  # noqa: E402


class PancreasSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Pancreas Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["PancreasSeg contributors"]
        self.parent.helpText = """
Segments the pancreas in an abdominal CT with a two-phase model (Mask R-CNN localizer, then a 3D U-Net
inside the region it finds), lets you correct the result in the Segment Editor and export the corrected
case into a curated training dataset.<br>
Corrected cases can then fine-tune the model into a new model version ("Fine-tune on curated set").<br>
<b>Research use only, not for clinical use.</b> The bundled model is trained on synthetic phantoms only,
not on patient data: it demonstrates the workflow and is not accurate on real CT.
"""
        self.parent.acknowledgementText = """
The two-phase approach follows Dogan et al., Computer Methods and Programs in Biomedicine, 2021.
Built on 3D Slicer, PyTorch, torchvision, MONAI and SimpleITK.
"""


@parameterNodeWrapper
class PancreasSegParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    modelPath: pathlib.Path
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    marginMm: Annotated[float, WithinRange(0.0, 100.0)] = 20.0
    showRoi: bool = True
    keepProbabilities: bool = False
    force: bool = False
    datasetFolder: pathlib.Path
    caseId: str = ""
    reviewer: str = ""
    reviewStatus: Annotated[str, Choice(list(REVIEW_STATUSES))] = "corrected"
    note: str = ""
    fineTuneMinutes: Annotated[float, WithinRange(0.1, 1440.0)] = 10.0
    fineTuneName: str = ""


#: QSettings key of the fine-tuned bundles offered as model choices (kept across sessions).
REGISTERED_MODELS_KEY = "PancreasSeg/RegisteredModels"


class PancreasSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        #: What the model drop-down was last filled for: (model in use, registered models).
        self._modelChoicesKey = None
        self._lastLogLine = ""

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PancreasSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PancreasSegLogic(confirm=slicer.util.confirmYesNoDisplay)
        self.logic.registeredModels = self.loadRegisteredModels()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentButton.clicked.connect(self.onSegmentOrCancel)
        self.ui.correctButton.clicked.connect(self.onCorrect)
        self.ui.rerunRoiButton.clicked.connect(self.onRerunInsideRoi)
        self.ui.exportButton.clicked.connect(self.onExport)
        self.ui.openCaseButton.clicked.connect(self.onOpenCase)
        self.ui.fineTuneButton.clicked.connect(self.onFineTuneOrCancel)
        self.ui.modelChoiceComboBox.currentIndexChanged.connect(self.onModelChoice)
        self.ui.showRoiCheckBox.toggled.connect(self.onShowRoiToggled)
        self.ui.deviceInfoLabel.text = dependencies.statusText()
        self.ui.progressBar.visible = False
        # The .ui's tooltips; the widget adds the model in use, or says why the main button is disabled.
        self._modelChoiceTip = self.ui.modelChoiceComboBox.toolTip
        self._segmentTip = self.ui.segmentButton.toolTip
        self.refreshModelChoices()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        # The module (or Slicer) is closing: stop a run for good and remove its files now; no timer will
        # deliver its end later.
        if self.logic is not None:
            self.logic.shutdown(quiet=True)
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        # The run's volume is about to go: its result must not land in the next scene.
        self.logic.shutdown()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if str(self._parameterNode.modelPath) in ("", "."):
            self.onUseBundledModel()

    def setParameterNode(self, inputParameterNode: Optional[PancreasSegParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a "SlicerParameterName" property in the .ui file are bound here.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)
            self.updateGui()

    # -- GUI state -------------------------------------------------------------------------------------

    def updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self.logic.isRunning()
        training = self.logic.runningKind == "train"
        # One note on what the model is trained on, in plain sight whatever model is picked, kept when the folder
        # is no usable model. The model is checked once per path (this runs on every parameter change); a run
        # checks it again.
        modelProblem = ""
        try:
            info = self.logic.modelInfo(str(p.modelPath)) if p else None
        except ValueError as exc:
            info, modelProblem = None, str(exc)
        self.ui.modelWarningLabel.text = info.warning if info else RESEARCH_USE_ONLY
        self.ui.modelInfoLabel.text = f"This model cannot be used: {modelProblem}" if modelProblem else ""
        self.ui.modelInfoLabel.visible = bool(modelProblem)
        self.ui.modelChoiceComboBox.toolTip = self._modelChoiceTip + (f"\n\nIn use: {info.summary}" if info else "")
        self.refreshModelChoices()
        self._updateSegmentButton(running, modelProblem)
        result = self.logic.scene.findResult(p.inputVolume) if p else None
        for button in (self.ui.correctButton, self.ui.rerunRoiButton, self.ui.exportButton):
            button.enabled = result is not None and not running
        self.ui.rerunRoiButton.enabled = bool(result and result.roi) and not running
        self.ui.openCaseButton.enabled = not running
        dataset = datasetFolderText(p.datasetFolder) if p else ""
        # The parameter node cannot hold an empty path (an unset one reads "."): show it as no folder.
        if p and not dataset and self.ui.datasetPathLineEdit.currentPath:
            self.ui.datasetPathLineEdit.currentPath = ""
        self.ui.fineTuneDatasetLabel.text = (f"Trains on the cases in {dataset}." if dataset else
                                             'First choose the dataset folder under "Export for training".')
        self.ui.fineTuneButton.text = "Cancel fine-tuning" if training else "Fine-tune on curated set"
        self.ui.fineTuneButton.enabled = training or (not running and bool(dataset and p.fineTuneName.strip()))

    def _updateSegmentButton(self, running: bool, modelProblem: str) -> None:
        """The main button: what it does now, whether it can be pressed and, when it cannot, why (its tooltip)."""
        p = self._parameterNode
        button = self.ui.segmentButton
        button.text = "Cancel" if running else "Segment pancreas"
        hasVolume = bool(p and p.inputVolume)
        button.enabled = running or (hasVolume and not modelProblem)
        if running:
            button.toolTip = "Stop the run; the scene stays as it was."
        elif not hasVolume:
            button.toolTip = "Select a CT volume under Inputs first."
        elif modelProblem:
            button.toolTip = "Choose a usable model first (Model, or Advanced > Model folder)."
        else:
            button.toolTip = self._segmentTip

    def options(self) -> SegmentOptions:
        p = self._parameterNode
        return SegmentOptions(str(p.modelPath), p.device, p.marginMm, p.showRoi, p.keepProbabilities, p.force)

    def callbacks(self) -> Callbacks:
        return Callbacks(onProgress=self.onProgress, onDone=self.onSegmentDone, onError=self.onRunError,
                         onCancelled=self.onRunCancelled)

    # -- actions ---------------------------------------------------------------------------------------

    def onUseBundledModel(self) -> None:
        bundled = findBundledModel(MODULE_DIR)
        if bundled is not None and self._parameterNode:
            self._parameterNode.modelPath = bundled

    # Model choices: the bundled model and the fine-tuned bundles registered by "Fine-tune on curated set".

    @staticmethod
    def loadRegisteredModels() -> list:
        stored = qt.QSettings().value(REGISTERED_MODELS_KEY) or []
        stored = [stored] if isinstance(stored, str) else list(stored)
        return [path for path in stored if isModelFolder(path)]

    def refreshModelChoices(self) -> None:
        """Fill the model drop-down so that it shows the model in use (the parameter node's ``modelPath``)."""
        current = str(self._parameterNode.modelPath) if self._parameterNode else ""
        key = (current, tuple(self.logic.registeredModels))
        if key == self._modelChoicesKey:
            return
        self._modelChoicesKey = key
        choices, index = modelChoices(findBundledModel(MODULE_DIR), self.logic.registeredModels, current)
        combo = self.ui.modelChoiceComboBox
        combo.blockSignals(True)
        combo.clear()
        for choice in choices:
            combo.addItem(choice.label, choice.path)
        combo.setCurrentIndex(index)
        combo.blockSignals(False)

    @contextlib.contextmanager
    def _refusalShown(self, title: str):
        """Run an action's start: a refusal (the Logic's ValueError) is shown in a dialog, the status line and the
        log, and a progress bar started for it is stopped."""
        try:
            with slicer.util.tryWithErrorDisplay(title, waitCursor=True):
                yield
        except Exception as exc:  # tryWithErrorDisplay has shown it and raises it again
            self._stopProgress(f"{title} {exc}")

    def onModelChoice(self, index: int) -> None:
        path = self.ui.modelChoiceComboBox.itemData(index)
        if path and self._parameterNode:
            self._parameterNode.modelPath = pathlib.Path(path)

    def onSegmentOrCancel(self) -> None:
        if self.logic.isRunning():
            self.logic.cancel()
            return
        with self._refusalShown("Failed to start the segmentation."):
            self._startProgress("Starting...")
            if not self.logic.segment(self._parameterNode.inputVolume, self.options(), self.callbacks()):
                self._stopProgress("Kept the existing result.")
        self.updateGui()

    def onRerunInsideRoi(self) -> None:
        with self._refusalShown("Failed to re-run inside the ROI."):
            self._startProgress("Re-running inside the ROI...")
            if not self.logic.rerunInsideRoi(self._parameterNode.inputVolume, self.options(), self.callbacks()):
                self._stopProgress("Kept the existing result.")
        self.updateGui()

    def onCorrect(self) -> None:
        with slicer.util.tryWithErrorDisplay("Failed to open the Segment Editor."):
            self.logic.openInSegmentEditor(self._parameterNode.inputVolume)

    def onShowRoiToggled(self, visible: bool) -> None:
        result = self.logic.scene.findResult(self._parameterNode.inputVolume) if self._parameterNode else None
        if result is not None:
            self.logic.scene.setRoiVisible(result.roi, visible)

    def onExport(self) -> None:
        p = self._parameterNode
        with self._refusalShown("Failed to export the case."):
            options = ExportOptions(datasetFolderText(p.datasetFolder), p.caseId.strip(), p.reviewer.strip(),
                                    p.reviewStatus, p.note)
            self._startProgress("Exporting...", busy=True)
            if not self.logic.exportForTraining(p.inputVolume, options, callbacks=Callbacks(
                    onDone=self.onExportDone, onError=self.onRunError, onCancelled=self.onRunCancelled)):
                self._stopProgress("Not exported.")
        self.updateGui()

    def onFineTuneOrCancel(self) -> None:
        if self.logic.runningKind == "train":
            self.logic.cancel()
            return
        p = self._parameterNode
        with self._refusalShown("Failed to start fine-tuning."):
            options = FineTuneOptions(datasetFolderText(p.datasetFolder), p.fineTuneName.strip(), p.fineTuneMinutes,
                                      p.device)
            # Busy until the command's first progress line (imports and the dataset check come first).
            self._startProgress("Fine-tuning: checking the curated dataset...", busy=True)
            callbacks = Callbacks(onProgress=self.onProgress, onDone=self.onFineTuneDone, onError=self.onRunError,
                                  onCancelled=self.onFineTuneCancelled, onMessage=self.onRunMessage)
            if not self.logic.fineTune(str(p.modelPath), options, callbacks):
                self._stopProgress("Fine-tuning not started.")
        self.updateGui()

    def onOpenCase(self) -> None:
        p = self._parameterNode
        with self._refusalShown("Failed to open the case."):
            result = self.logic.openCase(datasetFolderText(p.datasetFolder), p.caseId.strip())
            p.inputVolume = result.volume
            self.ui.statusLabel.text = f"Opened case {p.caseId.strip()} for review."
            self.log(self.ui.statusLabel.text)
        self.updateGui()

    # -- progress --------------------------------------------------------------------------------------

    def _startProgress(self, message: str, busy: bool = False) -> None:
        # A maximum of 0 makes QProgressBar a busy indicator, for commands that report no fractions.
        self.ui.progressBar.maximum = 0 if busy else 100
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        self.ui.statusLabel.text = message
        self.log(message)
        self.updateGui()

    def _stopProgress(self, message: str) -> None:
        self.ui.progressBar.visible = False
        self.ui.statusLabel.text = message
        self.log(message)
        self.updateGui()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.maximum = 100
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        self.log(message)

    def onRunMessage(self, line: str) -> None:
        self.ui.statusLabel.text = line
        self.log(line)

    def log(self, message: str) -> None:
        """Add a line to the run's log (read-only, copyable), unless it repeats the line before."""
        if message and message != self._lastLogLine:
            self._lastLogLine = message
            self.ui.logTextEdit.appendPlainText(f"{time.strftime('%H:%M:%S')}  {message}")

    def onSegmentDone(self, result) -> None:
        if result.warnings:  # the model is unsure: say so where the reader looks, and every reason in the log
            for warning in result.warnings:
                self.log(f"{result.segmentation.GetName()}: {warning}")
            self._stopProgress(f"Done, but check it closely: {result.warnings[0]}")
            return
        self._stopProgress(f"Done: {result.segmentation.GetName()}. Review it, then correct or export.")

    def onExportDone(self, summary) -> None:
        self._stopProgress(summary.text)
        self.ui.exportResultLabel.text = summary.text

    def onFineTuneDone(self, info) -> None:
        qt.QSettings().setValue(REGISTERED_MODELS_KEY, list(self.logic.registeredModels))
        self._parameterNode.modelPath = info.path
        self.refreshModelChoices()  # the new model is in use: the drop-down lists it and shows it
        text = f"New model {info.name} registered and selected ({info.path})."
        self._stopProgress(text)
        self.ui.fineTuneResultLabel.text = text

    def onFineTuneCancelled(self) -> None:
        self._stopProgress("Fine-tuning cancelled; no model registered. Start it again with the same name to "
                           "continue from its last checkpoint.")

    def onRunError(self, message: str) -> None:
        self._stopProgress("Failed: " + message)
        slicer.util.errorDisplay(message, windowTitle="PancreasSeg")

    def onRunCancelled(self) -> None:
        self._stopProgress("Cancelled; the scene is unchanged.")


class PancreasSegLogic(SegmentationLogic, ScriptedLoadableModuleLogic):
    """The module's Logic: the plain-Python :class:`SegmentationLogic` with Slicer's scene, a Qt-timed runner
    and PythonSlicer, and Slicer's parameter node.

    ``SegmentationLogic`` comes first: ``ScriptedLoadableModuleLogic.__init__`` calls ``super().__init__()``,
    which must reach ``object``, not a class that needs arguments.
    """

    def __init__(self, confirm=None) -> None:
        from PancreasSegModuleLib.sceneAdapter import SlicerSceneAdapter

        ScriptedLoadableModuleLogic.__init__(self)
        SegmentationLogic.__init__(self, SlicerSceneAdapter(), WorkerRunner(schedule=qt.QTimer.singleShot),
                                   pythonExecutable=self.findPythonSlicer(), libraryRoot=LIBRARY_ROOT,
                                   confirm=confirm, checkDependencies=self.ensureDependencies)

    def getParameterNode(self):
        return PancreasSegParameterNode(super().getParameterNode())

    @staticmethod
    def findPythonSlicer() -> str:
        # PythonSlicer sets up Slicer's Python environment for a child process; sys.executable is the app.
        return shutil.which("PythonSlicer") or sys.executable

    @staticmethod
    def ensureDependencies(action: str) -> bool:
        """Called by the Logic before each background command: offer to install what ``action`` needs."""
        missing = dependencies.missingPackages(action)
        return dependencies.installMissing(missing, slicer.util.confirmOkCancelDisplay) if missing else True


class PancreasSegTest(ScriptedLoadableModuleTest):
    """Runs the real module logic with the bundled model on a synthetic phantom."""

    DICE_FLOOR = 0.6

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segment_phantom_with_bundled_model()

    def test_segment_phantom_with_bundled_model(self):
        import numpy as np
        import SimpleITK as sitk

        from PancreasSegLib.evaluation.metrics import binary_metrics
        from PancreasSegLib.io.segfile import terminology_entry
        from PancreasSegLib.labels import PANCREAS
        from PancreasSegLib.phantoms.generator import make_phantom

        self.delayDisplay("Making a phantom CT")
        image, label = make_phantom(seed=7)
        volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom")
        slicer.util.updateVolumeFromArray(volumeNode, sitk.GetArrayFromImage(image).astype(np.int16))
        # SimpleITK geometry is LPS; a Slicer volume node's is RAS.
        ijkToRas = vtk.vtkMatrix4x4()
        direction = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
        lpsToRas = np.diag([-1.0, -1.0, 1.0])
        rasDirection = lpsToRas @ direction
        rasOrigin = lpsToRas @ np.array(image.GetOrigin())
        for row in range(3):
            for column in range(3):
                ijkToRas.SetElement(row, column, rasDirection[row, column])
            ijkToRas.SetElement(row, 3, rasOrigin[row])
        volumeNode.SetIJKToRASMatrix(ijkToRas)

        logic = PancreasSegLogic(confirm=lambda question: True)
        model = findBundledModel(MODULE_DIR)
        self.assertIsNotNone(model, "the bundled model is missing")
        self.delayDisplay("Segmenting (background process)")
        logic.segment(volumeNode, SegmentOptions(str(model), device="auto"))
        result = logic.wait(idle=slicer.app.processEvents, timeoutSeconds=1800)

        segmentation = result.segmentation.GetSegmentation()
        segmentId = segmentation.GetSegmentIdBySegmentName(PANCREAS.name)
        self.assertTrue(segmentId, "no 'Pancreas' segment")
        segment = segmentation.GetSegment(segmentId)
        entry = vtk.reference("")  # vtkSegment::GetTag(name, value&) -> bool
        self.assertTrue(segment.GetTag(segment.GetTerminologyEntryTagName(), entry))
        self.assertEqual(str(entry), terminology_entry(PANCREAS))
        self.assertEqual(result.segmentation.GetNodeReference(
            result.segmentation.GetReferenceImageGeometryReferenceRole()), volumeNode)
        self.assertIsNotNone(result.proposal)

        predicted = slicer.util.arrayFromSegmentBinaryLabelmap(result.segmentation, segmentId, volumeNode) > 0
        truth = sitk.GetArrayFromImage(label) == PANCREAS.value
        dice = binary_metrics(predicted, truth, spacing=tuple(reversed(image.GetSpacing()))).dice
        self.delayDisplay(f"Dice vs phantom label: {dice:.3f}")
        self.assertGreater(dice, self.DICE_FLOOR)
        self.delayDisplay("Test passed")
