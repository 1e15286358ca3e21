"""Evaluation: a trained adapter measured on a labelled tile store (`EvaluateConfig`)."""

from __future__ import annotations

from geo.evaluate.config import EvaluateConfig
from geo.evaluate.run import evaluate_on_store

__all__ = ["EvaluateConfig", "evaluate_on_store"]
