"""`ingest` flow: find scenes this model has not processed yet and predict them (idempotent)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import fsspec
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import Field

from flows.params import ExistingPath, OutputPath, Params, PredictParams
from flows.predict import predict_flow

MANIFEST = "ingest-manifest.json"


class IngestParams(Params):
    source: ExistingPath = Field(description="folder, fsspec URL (s3://, gs://, ...) or a scene")
    pattern: str = "*.tif"
    model: ExistingPath
    out: OutputPath
    sam_checkpoint: ExistingPath | None = None
    batch_size: int = Field(4, ge=1)
    device: str = "auto"
    min_area: float = Field(500.0, ge=0)
    simplify: float = Field(2.0, ge=0)
    dask_address: str | None = None


def list_scenes(source: str, pattern: str) -> dict[str, str]:
    """Scene URL -> version tag (size and mtime, or the object store's etag) per match."""
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
    weights = Path(model) / "adapter.safetensors" if Path(model).is_dir() else Path(model)
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    return json.loads(path.read_text()) if path.exists() else {}


def write_manifest(path: Path, manifest: dict[str, dict[str, str]]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)


@flow(name="ingest", log_prints=True)
def ingest_flow(params: IngestParams) -> list[str]:
    """Predict every scene under `source` that this model version has not predicted yet."""
    logger = get_run_logger()
    out = Path(params.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = read_manifest(manifest_path)
    key = model_id(params.model)
    scenes = list_scenes(params.source, params.pattern)
    todo = [s for s, v in scenes.items() if manifest.get(s, {}).get(key) != v]
    logger.info("%d scene(s) found, %d new for model %s", len(scenes), len(todo), key)
    if todo:
        predict_flow(
            PredictParams(
                images=todo,
                **params.model_dump(
                    include={
                        "model",
                        "out",
                        "sam_checkpoint",
                        "batch_size",
                        "device",
                        "min_area",
                        "simplify",
                        "dask_address",
                    }
                ),
            )
        )
        for scene in todo:
            manifest.setdefault(scene, {})[key] = scenes[scene]
        write_manifest(manifest_path, manifest)
    create_markdown_artifact(
        key="ingest-summary",
        markdown=f"# Ingest\n\n- source: `{params.source}`\n- scenes found: {len(scenes)}\n"
        f"- predicted now: {len(todo)}\n- outputs: `{out}`\n",
    )
    return todo
