"""Which scenes are new: a listing of the source with version tags, and the ingest manifest
of what each model version has predicted (so reruns predict nothing twice)."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec

from convlora.checkpoint import WEIGHTS_NAME
from convlora.files import atomic_write_json, sha256_file
from geo.errors import InputError
from geo.io.raster import is_virtual

MANIFEST = "ingest-manifest.json"


def check_source(source: str) -> None:
    """InputError when a local source folder or scene does not exist."""
    if not is_virtual(source) and not Path(source).exists():
        raise InputError(f"{source}: source not found (give a folder, a scene or a URL)")


def list_scenes(source: str, pattern: str) -> dict[str, str]:
    """Scene path or URL -> version tag (size and mtime, or the object store's etag)."""
    fs, root = fsspec.core.url_to_fs(source)
    paths = [root] if fs.isfile(root) else fs.glob(f"{root.rstrip('/')}/{pattern}")
    scenes = {}
    for path in sorted(paths):
        info = fs.info(path)
        version = info.get("ETag") or info.get("etag") or f"{info.get('size')}-{info.get('mtime')}"
        url = path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)
        scenes[url] = str(version)
    return scenes


def model_id(model: str) -> str:
    """A short identity of the adapter: the sha256 of its weights file."""
    weights = Path(model) / WEIGHTS_NAME if Path(model).is_dir() else Path(model)
    return sha256_file(weights)[:16]


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(path: Path, manifest: dict[str, dict[str, str]]) -> None:
    atomic_write_json(path, manifest)
