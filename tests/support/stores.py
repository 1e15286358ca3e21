"""Tile stores built from the bundled data, through the real tiling code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zarr

from geo.io.hashing import fingerprint
from geo.tiling import TileConfig, tile_scenes
from tests.support.paths import AGNET, AGNET_CLASSES, AGNET_TILES


def agnet_store(
    out: Path,
    rows: range,
    *,
    count: int | None = None,
    class_map: Path = AGNET_CLASSES,
    tile_size: int = 128,
    val_fraction: float = 0.2,
    scheduler: str | None = None,
) -> Path:
    """The first `count` (default all) bundled AgNet scenes of grid `rows`, 128 x 128 px each, in
    a tile store of `tile_size` px tiles without overlap."""
    tiles = [t for t in AGNET_TILES if int(t["grid_row"]) in rows][:count]
    config = TileConfig(
        images=[str(AGNET / t["image"]) for t in tiles],
        labels=[str(AGNET / t["label"]) for t in tiles],
        class_map=str(class_map),
        out=str(out),
        tile_size=tile_size,
        overlap=0,
        val_fraction=val_fraction,
        dask_address=scheduler,
    )
    return tile_scenes(config, progress=False)


def tile(
    images: list[str | Path],
    labels: list[str | Path],
    class_map: str | Path | list[dict[str, Any]] | None,
    out: str | Path,
    **options: Any,
) -> Path:
    """`tile_scenes` with keyword options of `TileConfig` (quiet); a class map given as a list
    is written to a JSON file beside `out` first, None for none."""
    if isinstance(class_map, list):
        path = Path(out).parent / f"{Path(out).name}.classes.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(class_map))
        class_map = path
    config = TileConfig.parse(
        {"images": [str(p) for p in images], "labels": [str(p) for p in labels],
         "class_map": None if class_map is None else str(class_map), "out": str(out),
         **options}
    )  # fmt: skip
    return tile_scenes(config, progress=False)


def as_tiled_by_another_version(store: Path, **algorithm: object) -> str:
    """Rewrite a store's settings and fingerprint as a convlora-geo of another tiling
    `algorithm` wrote them (its fingerprint is computed the same way); returns the fingerprint."""
    group = zarr.open_group(str(store), mode="r+")
    attrs = group.attrs.asdict()
    settings = {**attrs["settings"], "algorithm": {**attrs["settings"]["algorithm"], **algorithm}}
    stored = fingerprint(attrs["inputs"], settings)
    group.attrs.update({"settings": settings, "fingerprint": stored})
    return stored


OLD_SPLIT = [[4, 2, 1], 4, "labelled tiles, masked overlaps"]  # the split before class balance


def small_agnet_store(out: Path, rows: range, count: int, class_map: Path = AGNET_CLASSES) -> Path:
    """`count` AgNet scenes of grid `rows` in 64 px tiles (4 per scene), a quarter validation."""
    return agnet_store(
        out, rows, count=count, class_map=class_map, tile_size=64, val_fraction=0.25,
        scheduler="sync",
    )  # fmt: skip
