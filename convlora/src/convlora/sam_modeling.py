"""SAM's model classes, imported without running segment_anything's package `__init__` first.

That `__init__` imports SAM's predictor and automatic mask generator, and with them torchvision
and torch._dynamo: about a second on a 2-core CPU for nothing convlora uses. `defer_package_init`
registers the package bare, so its submodules (`segment_anything.modeling`) import as usual; the
first request for a name its `__init__` defines (`from segment_anything import SamPredictor`)
runs that `__init__` then (a module `__getattr__`, PEP 562), so other code sees no difference.
convlora's modules import SAM's classes from here.
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


defer_package_init()

# after the deferral above
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.image_encoder import Attention  # noqa: E402

__all__ = [
    "Attention",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TwoWayTransformer",
]
