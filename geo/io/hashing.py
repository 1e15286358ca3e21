"""Checksums of inputs and the fingerprint that keys a tile store."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from convlora.files import sha256_file
from geo.io.raster import is_virtual, open_raster
from geo.io.sas import vrt_without_tokens
from geo.io.vector import VECTOR_SUFFIXES

__all__ = ["fingerprint", "input_record", "sha256_file", "sha256_text", "watched_files"]

SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
MULTI_FILE_SUFFIXES = (".shp", ".vrt")  # inputs whose content lies in other files too
TEXT_SUFFIXES = (".yaml", ".yml", ".json", ".csv")


def input_record(path: str, role: str) -> dict[str, Any]:
    """{"role", "path", "sha256", "of"}: the checksum of a local input (all its files: a
    shapefile with its sidecars, a VRT with its sources), or, for a GDAL virtual path that
    cannot be read byte by byte here, of the raster's metadata (size, bands, dtype, CRS,
    transform), with "of" saying which.
    """
    if is_virtual(path):
        with open_raster(path) as src:
            meta = [src.driver, src.width, src.height, src.count, src.dtypes, str(src.crs),
                    list(src.transform), src.nodatavals, src.tags()]  # fmt: skip
        text = json.dumps(meta, sort_keys=True, default=str)
        return {"role": role, "path": path, "sha256": sha256_text(text), "of": "metadata"}
    p = Path(path)
    parts = file_parts(p)
    digest = _digest(p) if parts == [p] else sha256_text("".join(map(_digest, parts)))
    return {"role": role, "path": str(p.resolve()), "sha256": digest, "of": "bytes"}


def _digest(path: Path) -> str:
    """sha256 of a file; of a VRT whose sources carry SAS tokens, of its XML without them, so
    that a token renewed or a scene signed again is the same input (resumable work is kept)."""
    if path.suffix.lower() == ".vrt":
        try:
            unsigned = vrt_without_tokens(path)
        except ET.ParseError:  # not XML: its bytes are what there is
            unsigned = None
        if unsigned is not None:
            return sha256_text(unsigned)
    return sha256_file(path)


def file_parts(path: Path) -> list[Path]:
    """The local files an input consists of: a shapefile's sidecar files; the files of a
    dataset that is a folder (a FileGDB), but for lock files; the files a raster reads (a VRT
    and its sources, an .aux.xml); else the file itself."""
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() != ".lock")
    if path.suffix.lower() == ".shp":
        return [q for q in (path.with_suffix(s) for s in SHAPEFILE_PARTS) if q.exists()]
    if path.suffix.lower() in VECTOR_SUFFIXES or path.suffix.lower() in TEXT_SUFFIXES:
        return [path]
    try:
        with open_raster(str(path)) as src:
            files = [Path(f) for f in src.files if not is_virtual(f) and Path(f).is_file()]
    except Exception:  # not a raster (or unreadable): its bytes are what there is
        return [path]
    return [path, *sorted(f for f in files if f.resolve() != path.resolve())]


def watched_files(paths: Iterable[str]) -> list[str]:
    """The local files whose size and modification time tell whether `paths` changed: each
    path, and the files of a shapefile, VRT or folder dataset among them (`file_parts`; a VRT's
    sources change while its own text does not, a FileGDB's files while its folder does not)."""
    files: list[str] = []
    for path in paths:
        local = Path(path) if path and not is_virtual(path) else None
        if local is not None and (local.suffix.lower() in MULTI_FILE_SUFFIXES or local.is_dir()):
            files += [str(part) for part in file_parts(local)]
        else:
            files.append(path)
    return files


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(inputs: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """sha256 of the inputs' checksums (in order, paths left out) and every setting."""
    payload = {"inputs": [(r["role"], r["sha256"]) for r in inputs], "settings": settings}
    return sha256_text(json.dumps(payload, sort_keys=True, default=str))
