"""What only the Slicer application has, in one place: its module logics and its views.

The scene adapter does all its MRML work with module logics, storage nodes and node references, which
Slicer's core libraries have both inside the application and outside it (the ``slicer-core`` wheel: MRML,
Volumes, Segmentations, Markups; no ``slicer.app``). This file is the seam between the two:

- :func:`moduleLogics`: the volumes, segmentations and markups logics. Inside Slicer they are the
  application's (``slicer.modules.X.logic()``); elsewhere they are created here on the given scene, with the
  application logic and color logic they need.
- :class:`ApplicationViews`: the view and GUI calls (slice view layers, the 3D view, switching to the Segment
  Editor). Without the application each is skipped, and the reason is logged.

``slicer`` is imported inside the functions: this file loads (and its callers can be tested) anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger(__name__)

#: Why a view call did nothing (logged, once per call).
NO_APPLICATION = "skipped: there is no Slicer application here (only Slicer's core libraries)"


def hasApplication() -> bool:
    """True inside the Slicer application (``slicer.app`` exists), False with Slicer's libraries alone."""
    import slicer

    return getattr(slicer, "app", None) is not None


@dataclass
class ModuleLogics:
    """The module logics the scene adapter uses, all on one scene."""

    volumes: Any
    segmentations: Any
    markups: Any
    #: The application logic and color logic they were created with, where this file created them: the
    #: application logic holds its module logics by weak pointer, so they are kept alive here.
    application: Any = None
    colors: Any = None


def moduleLogics(scene: Any) -> ModuleLogics:
    """The application's module logics for its own scene; logics created on ``scene`` otherwise."""
    import slicer

    if hasApplication() and scene is getattr(slicer, "mrmlScene", None):
        modules = slicer.modules
        return ModuleLogics(modules.volumes.logic(), modules.segmentations.logic(), modules.markups.logic())
    return createModuleLogics(scene)


def createModuleLogics(scene: Any) -> ModuleLogics:
    """Volumes, segmentations and markups logics on ``scene``, as the application sets them up.

    The application logic adds the selection and interaction nodes the markups logic needs; the color logic
    adds the default color tables a volume's display node refers to. The markups and segmentations logics
    register their node classes with the scene, so that a saved scene loads again.
    """
    import slicer

    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    logics = {"Colors": slicer.vtkMRMLColorLogic(), "Volumes": slicer.vtkSlicerVolumesLogic(),
              "Segmentations": slicer.vtkSlicerSegmentationsModuleLogic(), "Markups": slicer.vtkSlicerMarkupsLogic()}
    for name, logic in logics.items():
        logic.SetMRMLApplicationLogic(application)
        logic.SetMRMLScene(scene)
        application.SetModuleLogic(name, logic)
    return ModuleLogics(logics["Volumes"], logics["Segmentations"], logics["Markups"], application, logics["Colors"])


class ApplicationViews:
    """The view and GUI calls of the adapter: application-only, skipped with a logged reason elsewhere."""

    def showVolume(self, volumeNode: Any) -> None:
        """Show ``volumeNode`` in the slice views, fit them to it and center the 3D view."""
        if not self._available("Showing the result in the views"):
            return
        import slicer

        slicer.util.setSliceViewerLayers(background=volumeNode, fit=True)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None and layoutManager.threeDWidget(0) is not None:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    def openSegmentEditor(self, segmentationNode: Any, volumeNode: Any) -> None:
        """Switch to the Segment Editor module with ``segmentationNode`` and its source volume selected."""
        if not self._available("Opening the Segment Editor"):
            return
        import slicer

        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentationNode)
        # Slicer 5.2 renamed "master" volume to "source" volume; 5.0/5.1 only have the old name.
        setSource = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode
        setSource(volumeNode)

    @staticmethod
    def _available(what: str) -> bool:
        if hasApplication():
            return True
        LOG.info("%s %s.", what, NO_APPLICATION)
        return False
