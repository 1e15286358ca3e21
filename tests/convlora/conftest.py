"""Shared fixtures for the model-core tests: tiny SAM checkpoints built from the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_sam import save_tiny_sam


@pytest.fixture(scope="session")
def tiny_sam_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM checkpoint at its native 256 px."""
    return save_tiny_sam(tmp_path_factory.mktemp("sam") / "sam_tiny.pth")
