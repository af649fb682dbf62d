"""The module's real widget (``PancreasSegWidget`` of ``PancreasSeg.py``) on plain Qt, without Slicer.

The ``.ui`` file is loaded by PySide6's ``QUiLoader`` with plain-Qt stand-ins for Slicer's and CTK's
widget classes; ``slicer``, ``qt`` and ``vtk`` are small stand-ins while ``PancreasSeg.py`` is imported.
The widget's own code then runs unchanged: Qt objects are reached through a wrapper that reads and writes
Qt properties as attributes (``button.enabled = False``), as PythonQt does in Slicer. The Logic is the real
core Logic with the scene and runner doubles of ``module_doubles``; the parameter node is a stand-in that
binds the widgets named by ``SlicerParameterName`` like Slicer's parameter node wrapper.

Run as a script to write the README's picture of the panel::

    python Testing/module_panel.py docs/images/slicer-panel.png
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import sys
import types
import typing
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from module_doubles import MODULE_DIR, FakeRunner, FakeScene  # noqa: E402
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402
from PySide6.QtCore import Property, Qt, Signal  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

UI_FILE = MODULE_DIR / "Resources" / "UI" / "PancreasSeg.ui"
#: About the width of Slicer's module panel.
PANEL_WIDTH = 430


# -- plain-Qt stand-ins for the .ui's Slicer and CTK classes -------------------------------------------------

class qMRMLWidget(QtWidgets.QWidget):  # noqa: N801  (the .ui's class names)
    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene


class ctkCollapsibleButton(QtWidgets.QGroupBox):  # noqa: N801
    """A titled box whose contents hide when collapsed, as CTK's collapsible button does."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text, self._collapsed = "", False

    def _getText(self) -> str:
        return self._text

    def _setText(self, text: str) -> None:
        self._text = text
        self._apply()

    def _getCollapsed(self) -> bool:
        return self._collapsed

    def _setCollapsed(self, collapsed: bool) -> None:
        self._collapsed = bool(collapsed)
        self._apply()

    def _apply(self) -> None:
        self.setTitle(("\u25b8 " if self._collapsed else "\u25be ") + self._text)
        for child in self.findChildren(QtWidgets.QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            child.setVisible(not self._collapsed)
        self.setFlat(self._collapsed)
        self.setMaximumHeight(self.fontMetrics().height() + 4 if self._collapsed else 16777215)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _getCollapsed, _setCollapsed)


class ctkPathLineEdit(QtWidgets.QWidget):  # noqa: N801
    """A path field with a browse button; ``currentPath`` and ``currentPathChanged`` as in CTK."""

    currentPathChanged = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.lineEdit = QtWidgets.QLineEdit(self)
        layout.addWidget(self.lineEdit, 1)
        layout.addWidget(QtWidgets.QToolButton(self, text="..."))
        self.lineEdit.textChanged.connect(self.currentPathChanged.emit)

    def _getPath(self) -> str:
        return self.lineEdit.text()

    def _setPath(self, path: str) -> None:
        self.lineEdit.setText(path)

    currentPath = Property(str, _getPath, _setPath, notify=currentPathChanged)


class qMRMLNodeComboBox(QtWidgets.QComboBox):  # noqa: N801
    """Shows the selected node's name; the .ui's node-type settings are kept as properties."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._node = None
        self.setCurrentNode(None)

    def setMRMLScene(self, scene) -> None:
        self.mrmlScene = scene

    def setCurrentNode(self, node) -> None:
        self._node = node
        self.clear()
        self.addItem(node.GetName() if node is not None else "None")

    def currentNode(self):
        return self._node

    nodeTypes = Property(list, lambda self: [], lambda self, value: None)
    showChildNodeTypes = Property(bool, lambda self: False, lambda self, value: None)
    addEnabled = Property(bool, lambda self: False, lambda self, value: None)
    removeEnabled = Property(bool, lambda self: False, lambda self, value: None)
    noneEnabled = Property(bool, lambda self: True, lambda self, value: None)


STAND_INS = (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox)


class PythonQtStyle:
    """A Qt object whose Qt properties read and write as attributes, as in Slicer's PythonQt."""

    def __init__(self, qobject) -> None:
        object.__setattr__(self, "qobject", qobject)

    def __getattr__(self, name):
        qobject = object.__getattribute__(self, "qobject")
        if qobject.metaObject().indexOfProperty(name) >= 0:
            return qobject.property(name)
        return getattr(qobject, name)

    def __setattr__(self, name, value) -> None:
        if self.qobject.metaObject().indexOfProperty(name) < 0:
            raise AttributeError(f"{type(self.qobject).__name__} has no Qt property {name!r}")
        self.qobject.setProperty(name, value)


def application() -> QtWidgets.QApplication:
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["PancreasSegPanel"])


def loadUi(path: str | os.PathLike = UI_FILE) -> QtWidgets.QWidget:
    """The .ui file as plain Qt widgets (the stand-ins above for Slicer's and CTK's classes)."""
    application()
    loader = QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    widget = loader.load(str(path))
    if widget is None:
        raise RuntimeError(f"QUiLoader could not load {path}: {loader.errorString()}")
    for box in widget.findChildren(ctkCollapsibleButton):
        box._apply()
    return widget


# -- the parameter node, bound to the widgets like Slicer's parameter node wrapper ----------------------------

class ParameterNode:
    """The fields of the module's ``@parameterNodeWrapper`` class with their defaults; setting one updates the
    widgets bound to it and calls the observers (the widget's ``updateGui``)."""

    def __init__(self, wrapperClass) -> None:
        hints = typing.get_type_hints(wrapperClass, include_extras=True)
        fields, choices = {}, {}
        for name, hint in hints.items():
            base, extras = hint, ()
            if typing.get_origin(hint) is typing.Annotated:
                base, extras = typing.get_args(hint)[0], typing.get_args(hint)[1:]
            for extra in extras:
                if isinstance(extra, tuple) and extra[:1] == ("Choice",):
                    choices[name] = list(extra[1])
            default = getattr(wrapperClass, name, None)
            if default is None and base is pathlib.Path:
                default = pathlib.Path()  # what the wrapper gives an unset path
            fields[name] = default if default is not None else ("" if base is str else None)
        object.__setattr__(self, "_values", fields)
        object.__setattr__(self, "_choices", choices)
        object.__setattr__(self, "_widgets", {})
        object.__setattr__(self, "_observers", [])

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name not in values:
            raise AttributeError(name)
        return values[name]

    def __setattr__(self, name, value) -> None:
        if name not in self._values:
            raise AttributeError(f"no parameter {name!r}")
        if self._values[name] == value and type(self._values[name]) is type(value):
            return
        self._values[name] = value
        if name in self._widgets:
            self._write(self._widgets[name], name, value)
        for observer in list(self._observers):
            observer(self, "ModifiedEvent")

    def _write(self, widget, name, value) -> None:
        widget.blockSignals(True)
        if isinstance(widget, qMRMLNodeComboBox):
            widget.setCurrentNode(value)
        elif isinstance(widget, ctkPathLineEdit):
            widget.currentPath = str(value)
        elif isinstance(widget, QtWidgets.QComboBox):
            if widget.count() == 0:
                widget.addItems(self._choices.get(name, []))
            widget.setCurrentText(str(value))
        elif isinstance(widget, QtWidgets.QLineEdit):
            widget.setText(value)
        elif isinstance(widget, QtWidgets.QDoubleSpinBox):
            widget.setValue(value)
        elif isinstance(widget, QtWidgets.QCheckBox):
            widget.setChecked(value)
        widget.blockSignals(False)

    def connectGui(self, ui) -> str:
        for proxy in vars(ui).values():
            widget = proxy.qobject
            name = widget.property("SlicerParameterName")
            if not name:
                continue
            self._widgets[name] = widget
            self._write(widget, name, self._values[name])
            if isinstance(widget, ctkPathLineEdit):
                widget.currentPathChanged.connect(lambda text, n=name: setattr(self, n, pathlib.Path(text)))
            elif isinstance(widget, qMRMLNodeComboBox):
                pass  # nodes are chosen by the tests
            elif isinstance(widget, QtWidgets.QComboBox):
                widget.currentTextChanged.connect(lambda text, n=name: setattr(self, n, text))
            elif isinstance(widget, QtWidgets.QLineEdit):
                widget.textChanged.connect(lambda text, n=name: setattr(self, n, text))
            elif isinstance(widget, QtWidgets.QDoubleSpinBox):
                widget.valueChanged.connect(lambda number, n=name: setattr(self, n, float(number)))
            elif isinstance(widget, QtWidgets.QCheckBox):
                widget.toggled.connect(lambda checked, n=name: setattr(self, n, bool(checked)))
        return "gui"

    def disconnectGui(self, tag) -> None:
        self._widgets.clear()


# -- stand-ins for slicer, qt and vtk while PancreasSeg.py is imported ----------------------------------------

class Dialogs:
    """What the widget showed in dialogs (``slicer.util.errorDisplay`` and friends)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.questions: list[str] = []

    @contextlib.contextmanager
    def tryWithErrorDisplay(self, message=None, show=True, waitCursor=False):
        try:
            yield
        except Exception as exc:  # as Slicer's: show it, then raise it again
            self.errors.append(f"{message}\n\n{exc}" if message else str(exc))
            raise

    def errorDisplay(self, message, windowTitle=None, **kwargs) -> None:
        self.errors.append(message)

    def confirm(self, question, **kwargs) -> bool:
        self.questions.append(question)
        return True


class ObservationMixin:
    def __init__(self) -> None:
        self._observations = []

    def addObserver(self, target, event, callback) -> None:
        if isinstance(target, ParameterNode):
            target._observers.append(callback)
        self._observations.append((target, callback))

    def removeObserver(self, target, event, callback) -> None:
        if isinstance(target, ParameterNode) and callback in target._observers:
            target._observers.remove(callback)

    def removeObservers(self) -> None:
        for target, callback in self._observations:
            self.removeObserver(target, None, callback)
        self._observations = []


class ModuleWidgetBase:
    """``ScriptedLoadableModuleWidget``: a panel with a layout, the module's resources."""

    def __init__(self, parent=None) -> None:
        self.parent = parent or SimpleNamespace(isEntered=True)

    def setup(self) -> None:
        self.panel = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(self.panel)
        self.layout = SimpleNamespace(addWidget=lambda widget: layout.addWidget(getattr(widget, "qobject", widget)))

    def resourcePath(self, relative: str) -> str:
        return str(MODULE_DIR / "Resources" / relative)


def _stubModules(dialogs: Dialogs) -> dict[str, types.ModuleType]:
    def module(name, **attributes):
        stub = types.ModuleType(name)
        stub.__dict__.update(attributes)
        return stub

    def childWidgetVariables(top):
        widgets = top.qobject.findChildren(QtWidgets.QWidget)
        return SimpleNamespace(**{w.objectName(): PythonQtStyle(w) for w in widgets if w.objectName()})

    util = module("slicer.util", VTKObservationMixin=ObservationMixin,
                  loadUI=lambda path: PythonQtStyle(loadUi(path)), childWidgetVariables=childWidgetVariables,
                  tryWithErrorDisplay=dialogs.tryWithErrorDisplay, errorDisplay=dialogs.errorDisplay,
                  confirmYesNoDisplay=dialogs.confirm, confirmOkCancelDisplay=dialogs.confirm)
    wrapper = module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                     Choice=lambda values: ("Choice", tuple(values)),
                     WithinRange=lambda low, high: ("WithinRange", low, high))
    scripted = module("slicer.ScriptedLoadableModule", ScriptedLoadableModuleWidget=ModuleWidgetBase,
                      **{name: type(name, (), {"__init__": lambda self, *args, **kwargs: None})
                         for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic",
                                      "ScriptedLoadableModuleTest")})
    scene = SimpleNamespace(StartCloseEvent="StartCloseEvent", EndCloseEvent="EndCloseEvent",
                            GetFirstNodeByClass=lambda className: None)
    slicer = module("slicer", util=util, parameterNodeWrapper=wrapper, ScriptedLoadableModule=scripted,
                    mrmlScene=scene, vtkMRMLScalarVolumeNode=type("vtkMRMLScalarVolumeNode", (), {}))
    qt = module("qt", **{k: v for m in (QtCore, QtGui, QtWidgets) for k, v in vars(m).items() if k.startswith("Q")})
    vtk = module("vtk", vtkCommand=SimpleNamespace(ModifiedEvent="ModifiedEvent"))
    return {"slicer": slicer, "slicer.util": util, "slicer.parameterNodeWrapper": wrapper,
            "slicer.ScriptedLoadableModule": scripted, "qt": qt, "vtk": vtk}


def importModule(dialogs: Dialogs) -> types.ModuleType:
    """``PancreasSeg.py`` imported with the stand-ins (``sys.modules`` is restored afterwards, so Slicer's real
    libraries stay usable by the other tests)."""
    stubs = _stubModules(dialogs)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("PancreasSegPanelUnderTest", MODULE_DIR / "PancreasSeg.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


class Panel:
    """The real widget, set up on plain Qt with the Logic on the scene and runner doubles.

    Args:
        settingsDir: where QSettings (the registered models) are kept for this panel.
        tempRoot: the Logic's temporary run folders.
    """

    def __init__(self, settingsDir: str | os.PathLike, tempRoot: str | os.PathLike) -> None:
        app = application()
        app.setOrganizationName("PancreasSegTests")
        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.Format.IniFormat)
        QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(settingsDir))
        pathlib.Path(tempRoot).mkdir(parents=True, exist_ok=True)
        self.dialogs = Dialogs()
        self.module = importModule(self.dialogs)
        self.scene, self.runner = FakeScene(), FakeRunner()
        self.parameterNode = ParameterNode(self.module.PancreasSegParameterNode)
        parameterNode = self.parameterNode

        class PanelLogic(SegmentationLogic):
            def getParameterNode(self):
                return parameterNode

        self.module.PancreasSegLogic = lambda confirm=None: PanelLogic(
            self.scene, self.runner, pythonExecutable=sys.executable, confirm=confirm, tempRoot=str(tempRoot))
        self.widget = self.module.PancreasSegWidget()
        self.widget.setup()
        self.ui = self.widget.ui
        self.logic = self.widget.logic

    def qt(self, name: str) -> QtWidgets.QWidget:
        """The plain Qt widget of that name."""
        return getattr(self.ui, name).qobject

    def render(self, path: str | os.PathLike, width: int = PANEL_WIDTH) -> pathlib.Path:
        """Lay the panel out at ``width`` and save it as a PNG."""
        panel = self.widget.panel
        panel.setFixedWidth(width)
        panel.show()
        for _ in range(3):
            application().processEvents()
            panel.adjustSize()
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not panel.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")
        return path

    def close(self) -> None:
        self.widget.panel.close()
        self.widget.panel.deleteLater()
        application().processEvents()


def progressLine(stage: str, fraction: float, message: str) -> str:
    return ('{"event": "progress", "stage": "%s", "fraction": %s, "message": "%s"}\n' % (stage, fraction, message))


def showStates(panel: Panel, folder: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Drive the panel through idle, running and result, rendering each (``<folder>/<state>.png``)."""
    import json

    from module_doubles import writeFakeOutput

    folder = pathlib.Path(folder)
    panel.parameterNode.inputVolume = panel.scene.add("CT abdomen", "volume")
    pictures = {"idle": panel.render(folder / "idle.png")}
    panel.qt("segmentButton").click()
    panel.runner.emit([progressLine("read", 1.0, "Reading the CT"),
                       progressLine("localize", 0.6, "Finding the pancreas: slice 30 of 50")])
    pictures["running"] = panel.render(folder / "running.png")
    roi = {"coordinate_system": "LPS", "center": [10.0, 20.0, 30.0], "size": [60.0, 40.0, 50.0],
           "axes": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "margin_mm": 20.0}
    panel.runner.play([json.dumps({"event": "done", "outputs": {}, "roi": roi, "seconds": 1.0}) + "\n"],
                      before_finish=lambda: writeFakeOutput(panel.runner.args))
    pictures["result"] = panel.render(folder / "result.png")
    return pictures


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as temp:
        shown = Panel(os.path.join(temp, "settings"), temp)
        pictures = showStates(shown, temp)
        target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "slicer-panel.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        QtGui.QImage(str(pictures["result"])).save(str(target), "PNG", 9)
        print(target, target.stat().st_size, "bytes")
