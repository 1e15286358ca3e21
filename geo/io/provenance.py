"""Provenance of prediction outputs: checksums, software versions and atomic JSON files."""

from __future__ import annotations

import hashlib
import json
import platform
import weakref
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convlora.files import atomic_write_json

_DIGESTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[Any, ...], str]] = (
    weakref.WeakKeyDictionary()
)
PACKAGES = ("convlora-geo", "convlora", "torch", "segment-anything", "rasterio", "shapely",
            "geopandas", "pyogrio", "numpy", "scipy")  # fmt: skip


def model_digest(model: object) -> str | None:
    """`weights_digest` of a torch module (else None), computed again only when its weights
    changed since the last call: another tensor, or one written in place (its version counter),
    so predicting many scenes with one model hashes it once."""
    if not isinstance(model, torch.nn.Module):
        return None
    state = model.state_dict()
    try:
        key = tuple((name, t.data_ptr(), t._version) for name, t in state.items())
    except RuntimeError:  # inference-mode tensors keep no version counter: hash every time
        return weights_digest(state)
    known = _DIGESTS.get(model)
    if known is None or known[0] != key:
        known = key, weights_digest(state)
        _DIGESTS[model] = known
    return known[1]


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict: names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions of Python, GDAL and the packages that shape the outputs."""
    import rasterio

    versions = {"python": platform.python_version(), "gdal": rasterio.__gdal_version__}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def canonical_json(data: Any) -> str:
    """Compact JSON with sorted keys: equal data give equal text (for fingerprints)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_plain)


def write_json(path: Path, data: Any) -> None:
    """Indented JSON (numpy values and paths as plain values), written atomically."""
    atomic_write_json(path, data, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, and paths, as plain JSON values."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
