"""`ingest` flow: find scenes this model has not processed yet and predict them (idempotent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.parameters import INGEST
from flows.predict import run_prediction
from geo.ingest import MANIFEST, IngestConfig, list_scenes, model_id, read_manifest, write_manifest
from geo.predict import PredictConfig


@flow(name="ingest", log_prints=True)
@INGEST.parameters("Predict every scene under the source that this model has not predicted yet.")
def ingest_flow(**params: Any) -> list[str]:
    logger = get_run_logger()
    ingest = INGEST.build(IngestConfig, params)
    base = INGEST.build(PredictConfig, {**params, "images": [ingest.source]})
    out = Path(base.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = read_manifest(manifest_path)
    key = model_id(base.model)
    scenes = list_scenes(ingest.source, ingest.pattern)
    todo = [s for s, v in scenes.items() if manifest.get(s, {}).get(key) != v]
    logger.info("%d scene(s) found, %d new for model %s", len(scenes), len(todo), key)
    if todo:
        run_prediction(PredictConfig.parse({**base.params(), "images": todo}))
        for scene in todo:
            manifest.setdefault(scene, {})[key] = scenes[scene]
        write_manifest(manifest_path, manifest)
    create_markdown_artifact(
        key="ingest-summary",
        markdown=f"# Ingest\n\n- source: `{ingest.source}`\n- scenes found: {len(scenes)}\n"
        f"- predicted now: {len(todo)}\n- outputs: `{out}`\n",
    )
    return todo
