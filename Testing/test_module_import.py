"""The module file loads, and its Logic starts, in a Slicer whose Python has no torch, MONAI or SimpleITK yet.

That is how the module meets a new user: it must show its GUI (the model note included) and offer to install
the packages, so at import time it may only use light parts of ``PancreasSegLib``. The check runs in a child
Python where the heavy packages are marked missing (``sys.modules[name] = None``: importing them fails and
``importlib.util.find_spec`` says "not installed") and ``slicer``, ``qt`` and ``vtk`` are small stand-ins;
the stand-in of ``ScriptedLoadableModuleLogic`` calls ``super().__init__()`` as Slicer's does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "PancreasSeg"

CHILD = r'''
import json, sys, types

HEAVY = ("torch", "torchvision", "monai", "SimpleITK", "safetensors", "scipy", "skimage", "matplotlib")
for name in HEAVY:
    sys.modules[name] = None
try:
    import torch  # noqa: F401
    blocked = False
except ImportError:
    blocked = True


class Anything:
    """Any attribute, any call: a stand-in for Qt, VTK and MRML objects."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return Anything()

    def __call__(self, *args, **kwargs):
        return Anything()


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        super().__init__()  # as in Slicer: cooperative
        self.moduleName = self.__class__.__name__[:-len("Logic")]
        self.isSingletonParameterNode = True


def stub(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


slicer = stub("slicer", mrmlScene=Anything(), app=Anything(),
              vtkMRMLScalarVolumeNode=type("vtkMRMLScalarVolumeNode", (), {}))
slicer.parameterNodeWrapper = stub("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                                   Choice=lambda values: ("Choice", tuple(values)),
                                   WithinRange=lambda low, high: ("WithinRange", low, high))
slicer.ScriptedLoadableModule = stub(
    "slicer.ScriptedLoadableModule", ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
    **{name: type(name, (), {}) for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleTest",
                                             "ScriptedLoadableModuleWidget")})
slicer.util = stub("slicer.util", VTKObservationMixin=type("VTKObservationMixin", (), {}))
stub("qt", QTimer=Anything(), QSettings=Anything)
stub("vtk", vtkCommand=Anything(), vtkMatrix4x4=Anything)

sys.path.insert(0, sys.argv[1])
import PancreasSeg
from PancreasSegModuleLib import dependencies
from PancreasSegModuleLib.segmentationLogic import SegmentationLogic

logic = PancreasSeg.PancreasSegLogic(confirm=lambda question: True)
model = PancreasSeg.findBundledModel(PancreasSeg.MODULE_DIR)
info = logic.modelInfo(str(model))
print(json.dumps({
    "blocked": blocked,
    "heavyLoaded": sorted(n for n, m in sys.modules.items() if n.split(".")[0] in HEAVY and m is not None),
    "moduleName": logic.moduleName,
    "isCore": isinstance(logic, SegmentationLogic),
    "libraryModules": sorted(n for n in sys.modules if n.startswith("PancreasSegLib")),
    "missing": dependencies.missingPackages("segment"),
    "device": dependencies.deviceDescription(),
    "devices": PancreasSeg.PancreasSegParameterNode.__annotations__["device"].__metadata__[0][1],
    "model": [model.name, info.name, info.trainedOnPhantoms, info.warning],
}))
'''


def run_child() -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(MODULE_DIR)], capture_output=True, text=True,
                          timeout=120, cwd=str(MODULE_DIR))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_module_loads_and_its_logic_starts_without_torch_monai_or_simpleitk():
    from PancreasSegLib.constants import DEFAULT_MODEL_NAME, DEVICES

    result = run_child()
    assert result["blocked"], "the child was meant to have no torch"
    assert result["heavyLoaded"] == []
    # Slicer's Logic and the core Logic are one object; Slicer's module name comes from the class name.
    assert result["moduleName"] == "PancreasSeg" and result["isCore"]
    # What it shares with the library came from the library, light parts only.
    assert {"PancreasSegLib.constants", "PancreasSegLib.labels", "PancreasSegLib.model.bundle",
            "PancreasSegLib.pipeline.roi", "PancreasSegLib.io.segfile"} <= set(result["libraryModules"])
    assert "PancreasSegLib.pipeline.predictor" not in result["libraryModules"]
    assert tuple(result["devices"]) == DEVICES
    # It knows what to offer to install, and still shows the bundled model and its note.
    assert {"torch", "SimpleITK", "monai"} <= set(result["missing"])
    assert result["device"] == "PyTorch not installed yet"
    name, shown, phantoms, warning = result["model"]
    assert name == shown == DEFAULT_MODEL_NAME and phantoms and "research use only" in warning
