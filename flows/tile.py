"""`tile` flow: scenes and labels into a Zarr tile store (reused while inputs are unchanged)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from flows.params import TileParams
from flows.retries import IO_RETRIES
from flows.runtime import dask_address
from geo.tiling import tile_scenes


def inputs_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Cache on the parameters, each input's size and mtime, and the store's own metadata file.

    With no store at the output path there is nothing to reuse: a fresh key forces the work.
    """
    params: TileParams = parameters["params"]
    marker = os.path.join(params.out, "zarr.json")
    if not os.path.exists(marker):
        return f"tile-{uuid.uuid4()}"
    paths = [
        *params.images,
        *params.labels,
        params.class_map,
        *([params.aoi] if params.aoi else []),
    ]
    paths.append(marker)
    stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths if os.path.exists(p)]
    payload = json.dumps([params.model_dump(), stats], sort_keys=True, default=str)
    return "tile-" + hashlib.sha256(payload.encode()).hexdigest()


@task(**IO_RETRIES, cache_key_fn=inputs_cache_key, persist_result=True)
def build_tile_store(params: TileParams) -> str:
    """Tile the scenes (scenes and tile blocks fan out over Dask) and return the store path."""
    get_run_logger().info("tiling %d scene(s) into %s", len(params.images), params.out)
    store = tile_scenes(**params.tiling_args(), scheduler=dask_address(params.dask_address))
    if not os.path.isdir(store):
        raise RuntimeError(f"tiling finished but {store} does not exist")
    return str(store)


@flow(name="tile", log_prints=True)
def tile_flow(params: TileParams) -> str:
    """Tile labelled scenes into a Zarr tile store with a `tile_index.gpkg` for QGIS."""
    store = build_tile_store(params)
    create_markdown_artifact(
        key="tile-summary",
        markdown=f"# Tile store\n\n- store: `{store}`\n- tile index: `{store}/tile_index.gpkg`\n"
        f"- scenes: {len(params.images)}\n"
        f"- tile size: {params.tile_size}, overlap {params.overlap}\n",
        description="Where the tile store was written",
    )
    return store
