"""`tile` flow: scenes and labels into a Zarr tile store (reused while inputs are unchanged)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from logging import INFO, WARNING
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext

from flows.commands.tile import NO_LABELS, store_lines
from flows.logs import as_parameters, in_deployment_run
from flows.parameters import TILE
from flows.retries import IO_RETRIES
from flows.run_names import images_run, named
from flows.runtime import dask_address
from geo.contracts.tile_store import metadata_file
from geo.tiling import TileConfig, input_files, tile_scenes


def inputs_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Cache on the options, the size and mtime of each input's files (a VRT's sources too),
    and the store's own metadata file.

    With no store at the output path there is nothing to reuse: a fresh key forces the work.
    """
    config: TileConfig = parameters["config"]
    marker = str(metadata_file(config.out))
    if not os.path.exists(marker):
        return f"tile-{uuid.uuid4()}"
    paths = [*input_files(config), marker]
    stats = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths if os.path.exists(p)]
    payload = json.dumps([config.params(), stats], sort_keys=True, default=str)
    return "tile-" + hashlib.sha256(payload.encode()).hexdigest()


@task(**IO_RETRIES, cache_key_fn=inputs_cache_key, persist_result=True)
def build_tile_store(config: TileConfig) -> str:
    """Tile the scenes (scenes and tile blocks fan out over Dask) and return the store path."""
    get_run_logger().info("tiling %d scene(s) into %s", len(config.images), config.out)
    address = dask_address(config.dask_address)
    store = tile_scenes(config.model_copy(update={"dask_address": address}))
    if not os.path.isdir(store):
        raise RuntimeError(f"tiling finished but {store} does not exist")
    return str(store)


@flow(name="tile", log_prints=True, flow_run_name=named(images_run))
@TILE.parameters("Tile labelled scenes into a Zarr tile store with a tile_index.gpkg for QGIS.")
def tile_flow(**params: Any) -> str:
    config = TILE.build(TileConfig, params)
    store = build_tile_store(config)
    create_markdown_artifact(
        key="tile-summary",
        markdown=f"# Tile store\n\n- store: `{store}`\n- tile index: `{store}/tile_index.gpkg`\n"
        f"- scenes: {len(config.images)}\n" + report_store(store),
        description="Where the tile store was written, and what it holds",
    )
    return store


def report_store(store: str) -> str:
    """What the store holds (tiles per split, labelled pixels per class) as markdown lines for
    the run's summary; logged too in a deployment run (the command line prints them itself)."""
    lines = store_lines(store)
    if in_deployment_run():
        logger = get_run_logger()
        for line in lines:
            logger.log(WARNING if line == NO_LABELS else INFO, as_parameters(line.strip()))
    return "".join(f"- {as_parameters(line.strip())}\n" for line in lines)
