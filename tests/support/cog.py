"""Checks of output files that the library itself never needs: Cloud-Optimised GeoTIFF layout,
and where prediction's window seams lie."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from geo.predict.stitch import StitchPlan


def core_edges(plan: StitchPlan, axis: int) -> list[int]:
    """Scene coordinates inside the scene where some tile's kept core starts or ends.

    `axis` 0 gives rows (horizontal seam lines), 1 columns (vertical seam lines).
    """
    grid, length = plan.grid, (plan.height, plan.width)[axis]
    starts = grid.rows if axis == 0 else grid.cols
    keep = plan.tile_size - 2 * plan.margin
    edges = set(starts) | {s + keep for s in starts}
    return sorted(e for e in edges if 0 < e < length)


_STRIP_OFFSETS, _TILE_OFFSETS, _TILE_WIDTH, _SUBFILE = 273, 324, 322, 254
_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8


def validate_cog(path: str | Path) -> list[str]:
    """Problems that keep `path` from being a Cloud-Optimised GeoTIFF (empty when it is one).

    Checks what GDAL's validate_cloud_optimized_geotiff.py checks: tiled, overviews when larger
    than a tile, the ghost header saying IFDs come before data, every IFD before the first tile,
    overview tiles before full-resolution tiles, and tiles in row-major order.
    """
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] not in (b"II", b"MM"):
            return ["not a TIFF file"]
        end = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(end + "H", head[2:4])[0] == 43
        first = struct.unpack(end + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
        f.seek(16 if big else 8)
        ghost = f.read(first - f.tell()).decode("ascii", "replace")
        ifds = _read_ifds(f, first, end, big)
    errors = []
    if "LAYOUT=IFDS_BEFORE_DATA" not in ghost or "BLOCK_ORDER=ROW_MAJOR" not in ghost:
        errors.append("no GDAL ghost header with LAYOUT=IFDS_BEFORE_DATA and BLOCK_ORDER=ROW_MAJOR")
    images = [d for d in ifds if not d["subfile"] & 4]  # leave out mask IFDs
    main, overviews = images[0], images[1:]
    if not main["tiled"]:
        errors.append("the full-resolution image is not tiled")
    if max(main["width"], main["height"]) > main["tile"] and not overviews:
        errors.append("no overviews although the image is larger than one tile")
    data_start = min((o for d in ifds for o in d["offsets"] if o), default=0)
    if any(d["at"] > data_start for d in ifds):
        errors.append("an IFD lies after the start of the tile data")
    if overviews and main["offsets"]:
        overview_end = max(o for d in overviews for o in d["offsets"])
        if overview_end > min(o for o in main["offsets"] if o):
            errors.append("overview tiles do not come before the full-resolution tiles")
    for i, d in enumerate(ifds):
        present = [o for o in d["offsets"] if o]
        if present != sorted(present):
            errors.append(f"the tiles of IFD {i} are not in row-major order")
    return errors


def _read_ifds(f: BinaryIO, offset: int, end: str, big: bool) -> list[dict[str, Any]]:
    """Width, height, tiling, subfile type and tile offsets of every IFD in the chain."""
    count_fmt, entry_size, ptr_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    ifds = []
    while offset:
        f.seek(offset)
        (n,) = struct.unpack(end + count_fmt, f.read(8 if big else 2))
        raw = f.read(n * entry_size)
        tags = {}
        for k in range(n):
            entry = raw[k * entry_size : (k + 1) * entry_size]
            tag, typ = struct.unpack(end + "HH", entry[:4])
            (count,) = struct.unpack(end + ptr_fmt, entry[4 : 12 if big else 8])
            tags[tag] = (typ, count, entry[12:] if big else entry[8:])
        (next_offset,) = struct.unpack(end + ptr_fmt, f.read(8 if big else 4))
        offsets = tags.get(_TILE_OFFSETS) or tags.get(_STRIP_OFFSETS)
        ifds.append(
            {
                "at": offset,
                "width": _value(f, tags[256], end, big)[0],
                "height": _value(f, tags[257], end, big)[0],
                "tiled": _TILE_WIDTH in tags,
                "tile": _value(f, tags[_TILE_WIDTH], end, big)[0] if _TILE_WIDTH in tags else 0,
                "subfile": _value(f, tags[_SUBFILE], end, big)[0] if _SUBFILE in tags else 0,
                "offsets": _value(f, offsets, end, big) if offsets else [],
            }
        )
        offset = next_offset
    return ifds


def _value(f: BinaryIO, field: tuple[int, int, bytes], end: str, big: bool) -> list[int]:
    """The integer values of one IFD entry, inline or at the offset it points to."""
    typ, count, data = field
    fmt = _TYPES[typ]
    size = struct.calcsize(fmt) * count
    if size > len(data):
        (at,) = struct.unpack(end + ("Q" if big else "I"), data)
        here = f.tell()
        f.seek(at)
        data = f.read(size)
        f.seek(here)
    return list(struct.unpack(end + fmt * count, data[:size]))
