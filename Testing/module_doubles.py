"""Test doubles of the PancreasSeg module's scene interface and process runner (no Slicer needed)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "PancreasSeg"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from PancreasSegModuleLib.logicTypes import SegmentationResult  # noqa: E402

from PancreasSegLib.labels import PANCREAS  # noqa: E402
from PancreasSegLib.model.bundle import MODEL_JSON, STAGES  # noqa: E402
from PancreasSegLib.model.configs import tiny_config  # noqa: E402
from PancreasSegLib.pipeline.roi import ROI  # noqa: E402


@dataclass(eq=False)
class FakeNode:
    """A stand-in for an MRML node: a name, a kind and free-form properties."""

    name: str
    kind: str
    props: dict = field(default_factory=dict)

    def GetName(self) -> str:  # what the widget asks of an MRML node
        return self.name


class FakeScene:
    """Records every call; keeps nodes in a list like a scene would."""

    def __init__(self) -> None:
        self.nodes: list[FakeNode] = []
        self.calls: list[tuple] = []
        self.results: list[SegmentationResult] = []

    def add(self, name: str, kind: str, **props) -> FakeNode:
        node = FakeNode(name, kind, dict(props))
        self.nodes.append(node)
        return node

    def nodeName(self, node):
        return node.name

    def writeVolume(self, volumeNode, path):
        self.calls.append(("writeVolume", volumeNode.name, path))
        Path(path).write_bytes(b"volume")

    def importSegmentation(self, path, volumeNode, name, labels, hidden=False):
        self.calls.append(("importSegmentation", path, volumeNode.name, name, hidden))
        return self.add(name, "segmentation", source=Path(path).read_bytes(), labels=list(labels), hidden=hidden,
                        referenceVolume=volumeNode)

    def copySegmentation(self, segmentationNode, name):
        self.calls.append(("copySegmentation", segmentationNode.name, name))
        return self.add(name, "segmentation", source=segmentationNode.props["source"], hidden=True)

    def createRoi(self, name, roi: ROI, visible):
        self.calls.append(("createRoi", name, roi, visible))
        return self.add(name, "roi", geometry=roi, visible=visible)

    def readRoi(self, roiNode):
        return roiNode.props["geometry"]

    def loadProbabilityMap(self, path, name):
        return self.add(name, "volume", path=path)

    def findResult(self, volumeNode):
        return next((r for r in self.results if r.volume is volumeNode), None)

    def linkResult(self, result):
        self.results = [r for r in self.results if r.volume is not result.volume] + [result]

    def removeNodes(self, nodes):
        for node in nodes:
            self.calls.append(("remove", node.name))
            self.nodes.remove(node)

    def showResult(self, result):
        self.calls.append(("showResult", result.segmentation.name))

    def setRoiVisible(self, roiNode, visible):
        self.calls.append(("setRoiVisible", roiNode.name, visible))
        roiNode.props["visible"] = visible

    def openSegmentEditor(self, segmentationNode, volumeNode):
        self.calls.append(("openSegmentEditor", segmentationNode.name, volumeNode.name))

    def exportLabelmap(self, segmentationNode, volumeNode, path, labels):
        self.calls.append(("exportLabelmap", segmentationNode.name, volumeNode.name, path))
        Path(path).write_bytes(segmentationNode.props["source"])

    def loadVolume(self, path, name):
        self.calls.append(("loadVolume", path, name))
        return self.add(name, "volume", path=path)


class FakeRunner:
    """Records the command; the test plays the process's output and end with :meth:`play`."""

    def __init__(self) -> None:
        self.args: list[str] | None = None
        self.env: dict | None = None
        self.running = False
        self.cancelled = False
        self.cancelCalls = 0
        self._callbacks: dict = {}

    def start(self, args, onStdout=None, onStderr=None, onFinished=None, env=None, cwd=None):
        self.args, self.env, self.running, self.cancelled = list(args), env, True, False
        self._callbacks = {"out": onStdout, "err": onStderr, "finished": onFinished}

    def isRunning(self):
        return self.running

    def cancel(self):
        self.cancelCalls += 1
        self.cancelled = True

    def emit(self, stdoutChunks):
        """The running process prints ``stdoutChunks`` (and goes on running)."""
        for chunk in stdoutChunks:
            self._callbacks["out"](chunk)

    def play(self, stdoutChunks=(), stderr="", exitCode=0, before_finish=None):
        for chunk in stdoutChunks:
            self._callbacks["out"](chunk)
        if self._callbacks.get("err") is not None:
            for line in stderr.splitlines(keepends=True):
                self._callbacks["err"](line)
        if before_finish is not None:
            before_finish()
        self.running = False
        self._callbacks["finished"](130 if self.cancelled else exitCode, stderr)

    def wait(self, timeoutSeconds=None, idle=None):
        return 0

    def argument(self, flag):
        return self.args[self.args.index(flag) + 1]


def writeFakeOutput(args, content=b"label"):
    """Do what the segment command would: write the -o file (and roi-out) from its command line."""
    out = args[args.index("-o") + 1]
    Path(out).write_bytes(content)
    return out


def copyModel(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def writeFakeBundle(folder: Path, name: str = "pancreas-phantom-v1", description: str = "",
                    labels=(PANCREAS,), weights: bool = True) -> Path:
    """A model folder the module's check accepts: a model.json the library's ``load_config`` validates (the
    tiny configuration with these labels) and one-byte weights files (never loaded: the module does not
    hash or open them). ``weights=False`` leaves the weights files out."""
    folder.mkdir(parents=True)
    config = tiny_config()
    config.update(name=name, version="1.0", description=description, labels=[label.to_json() for label in labels])
    config["stages"]["segmenter"]["params"]["out_channels"] = len(labels) + 1
    for stage in STAGES:
        config["stages"][stage]["weights"] = {"file": f"{stage}.safetensors", "sha256": "0" * 64}
        if weights:
            (folder / f"{stage}.safetensors").write_bytes(b"\0")
    (folder / MODEL_JSON).write_text(json.dumps(config), encoding="utf-8")
    return folder
