"""segment_anything's model classes without its package `__init__` running first.

That `__init__` imports SAM's predictor and automatic mask generator, and with them torchvision
and torch._dynamo: about 1.8 s on a 2-core CPU for nothing convlora uses. `defer_package_init`
registers the package bare, so its submodules (`segment_anything.modeling`) import as usual; the
first request for a name its `__init__` defines (`from segment_anything import SamPredictor`)
runs that `__init__` then (a module `__getattr__`, PEP 562), so other code sees no difference.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

PACKAGE = "segment_anything"


def defer_package_init() -> None:
    """Register segment_anything as a bare package until one of its own names is asked for;
    nothing when it is imported already or not installed (its import then fails as usual)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        return
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def run_init(name: str) -> Any:
        del package.__getattr__  # once: names its `__init__` asks for while running load normally
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package
