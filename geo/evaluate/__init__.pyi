"""Types of the names `geo.evaluate` imports on first use (read by lazy_loader and mypy)."""

from .config import EvaluateConfig as EvaluateConfig
from .run import evaluate_on_store as evaluate_on_store
