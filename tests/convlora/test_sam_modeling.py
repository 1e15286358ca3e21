"""convlora imports SAM's model classes without segment_anything's package `__init__` (which
pulls in torchvision and torch._dynamo), and that `__init__` still runs for whoever asks for
one of its names. A fresh interpreter each: the test process has imported SAM already."""

from __future__ import annotations

import subprocess
import sys

BUILD_A_MODEL = """
import sys
from convlora.config import ModelConfig
from convlora.model import build_model
model = build_model(ModelConfig(sam_variant="tiny", num_classes=2, image_size=64))
print(sorted(m for m in ("torchvision", "torch._dynamo") if m in sys.modules))
"""

THEN_USE_THE_PACKAGE = """
from segment_anything import SamPredictor, sam_model_registry
import segment_anything
from segment_anything.modeling import Sam
assert segment_anything.modeling.Sam is Sam
assert SamPredictor.__module__ == "segment_anything.predictor"
print(sorted(sam_model_registry))
"""


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_building_a_model_imports_neither_torchvision_nor_dynamo() -> None:
    assert run(BUILD_A_MODEL) == ["[]"]


def test_the_package_init_runs_when_one_of_its_names_is_asked_for() -> None:
    lines = run(BUILD_A_MODEL + THEN_USE_THE_PACKAGE)
    assert lines == ["[]", "['default', 'vit_b', 'vit_h', 'vit_l']"]
