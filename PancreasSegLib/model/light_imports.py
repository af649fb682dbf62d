"""Import only the parts of MONAI and torchvision that inference uses: a cold ``segment`` in about half the time.

``import monai`` loads every MONAI submodule (``monai/__init__.py`` walks the whole package), and with
them scipy.signal and scipy.stats, matplotlib.pyplot, pandas, scikit-learn, nibabel and torch._dynamo
(with sympy and triton): 6 s of a 2-core machine before any CT is read, for one network class. Every
package ``__init__`` below ``monai`` is a plain list of ``from .module import name`` lines, so
:func:`enable` puts in front of Python's import system a finder that makes MONAI's packages *lazy*:
a package's names are looked up in its ``__init__`` (read with :mod:`ast`, never run) and the module
that defines a name is imported on first use. ``from monai.networks.nets.dynunet import DynUNet``
then loads the 20 modules it needs instead of 1,500.

torchvision's ``ops.roi_align`` imports ``torch._dynamo.utils`` for one function that it only calls
when its compiled kernels are missing; :func:`enable` imports torchvision with a stand-in for that
function which defers to the real one on its first call, so torch._dynamo is loaded only if needed.

Only the commands that own their process switch them on (``segment``, ``worker``), before anything
imports MONAI; a library caller's MONAI is never touched, and training imports MONAI whole. When
anything unexpected happens the normal import is used instead, so the worst case is the old speed.
``PANCREASSEG_FULL_IMPORTS=1`` switches the light imports off.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import types
from typing import Any

_PACKAGES = ("monai",)
_enabled = False


def enable() -> bool:
    """Make MONAI's packages lazy and import torchvision without torch._dynamo; idempotent.

    Returns:
        True when the light imports are in use; False when MONAI was already imported normally,
        ``PANCREASSEG_FULL_IMPORTS`` is set, or this MONAI's networks and inferer cannot be imported the
        light way (then nothing changes and MONAI is imported as usual).
    """
    global _enabled
    if _enabled:
        return True
    if "monai" in sys.modules or os.environ.get("PANCREASSEG_FULL_IMPORTS", "") not in ("", "0"):
        return False
    finder = _LazyPackageFinder()
    sys.meta_path.insert(0, finder)
    try:
        # What inference uses, imported now: a MONAI whose packages are not plain import lists fails here,
        # not in the middle of a run.
        from monai.inferers import sliding_window_inference  # noqa: F401
        from monai.networks.nets import BasicUNet, DynUNet, UNet  # noqa: F401
    except Exception:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m == "monai" or m.startswith("monai.")]:
            del sys.modules[name]
        return False
    _enabled = True
    _import_torchvision_without_dynamo()
    return True


def is_enabled() -> bool:
    """Whether :func:`enable` has switched the light imports on in this process."""
    return _enabled


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    """Finds MONAI's packages and gives them a loader that does not run their ``__init__``."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in _PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.submodule_search_locations is None or not spec.origin:
            return None  # a plain module: imported as usual
        spec.loader = _LazyPackageLoader()
        return spec


class _LazyPackageLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        with open(module.__spec__.origin, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        names = _exported_names(tree, module.__name__)
        module.__all__ = sorted(names)
        module.__getattr__ = _resolver(module, names)
        if module.__name__ == "monai":
            module.__version__ = importlib.metadata.version("monai")
            module.__revision_id__ = ""
            module.__basedir__ = module.__spec__.submodule_search_locations[0]


def _exported_names(tree: ast.Module, package: str) -> dict[str, tuple[str, str]]:
    """``{name: (defining module, its name there)}`` from the ``from X import a as b`` lines of a package."""
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            source = importlib.util.resolve_name("." * node.level + node.module, package) if node.level \
                else node.module
            if source.split(".", 1)[0] not in _PACKAGES:
                continue
            for alias in node.names:
                if alias.name != "*":
                    names.setdefault(alias.asname or alias.name, (source, alias.name))
    return names


def _resolver(module: types.ModuleType, names: dict[str, tuple[str, str]]):
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in names:
            source, original = names[name]
            value = getattr(importlib.import_module(source), original)
        else:
            try:
                value = importlib.import_module(f"{module.__name__}.{name}")
            except ModuleNotFoundError as exc:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}") from exc
        setattr(module, name, value)
        return value

    return __getattr__


def _import_torchvision_without_dynamo() -> None:
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        return
    import torch

    package, utils = types.ModuleType("torch._dynamo"), types.ModuleType("torch._dynamo.utils")
    utils.is_compile_supported = _is_compile_supported
    package.utils = utils
    sys.modules["torch._dynamo"], sys.modules["torch._dynamo.utils"] = package, utils
    try:
        import torchvision  # noqa: F401
        import torchvision.ops.roi_align  # noqa: F401
    except Exception:  # an unexpected torchvision: import it the normal way below
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
    finally:
        del sys.modules["torch._dynamo.utils"], sys.modules["torch._dynamo"]
        torch.__dict__.pop("_dynamo", None)  # torch imports the real one lazily on first use
    import torchvision  # noqa: F401,F811


def _is_compile_supported(device_type: str) -> bool:
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)
