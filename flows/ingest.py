"""`ingest` flow: predict the scenes of a folder, bucket or STAC catalog that this model has not
predicted yet; files it cannot read are skipped and recorded (see `geo.ingest.run`)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.logs import as_parameters
from flows.parameters import INGEST
from flows.predict import predict_all, publish_polygon_table
from flows.run_names import ingest_run, named
from geo.ingest import (
    RECORD_FILE,
    IngestConfig,
    IngestResult,
    finish_ingest,
    plan_ingest,
    predict_options,
)
from geo.io.storage import join, read_json


@flow(name="ingest", log_prints=True, flow_run_name=named(ingest_run))
@INGEST.parameters(
    "Predict the scenes of a folder, bucket or STAC catalog that this model has not predicted "
    "yet. Scenes it cannot read are skipped (and checked again only when they change), files "
    "still being written are left for the next run, and scenes the store or catalog does not "
    "serve for the moment are retried on it; the run fails only when there were new scenes and "
    "none could be predicted. With `region`, the polygons of every scene predicted so far are "
    "kept as one layer in that file."
)
def ingest_flow(**params: Any) -> dict[str, Any]:
    ingest = INGEST.build(IngestConfig, params)
    plan = plan_ingest(ingest, predict_options(ingest, params))
    scenes = [scene for _, scene in plan.scenes]
    results = predict_all(scenes, plan.config, raise_on_failure=False) if scenes else []
    outcomes = {candidate.id: r for (candidate, _), r in zip(plan.scenes, results, strict=True)}
    result = finish_ingest(plan, outcomes)
    if result.predicted:  # an empty table would hide the last one (the artifact's latest)
        publish_polygon_table([r for r in results if not isinstance(r, BaseException)])
    create_markdown_artifact(key="ingest-summary", markdown=as_parameters(summary(result)))
    get_run_logger().info("%d new of %d: %s", result.new, result.found, result.counts())
    result.check()
    return result.to_dict()


def summary(result: IngestResult) -> str:
    """The run as markdown: counts, then one row per new scene with what happened to it."""
    lines = [
        "# Ingest", "", f"- source: `{result.source}`", f"- outputs: `{result.out}`",
        f"- scenes found: {result.found}, new: {result.new}",
        f"- {result.counts()}",
        f"- record: `{join(result.out, RECORD_FILE)}`",
    ]  # fmt: skip
    if result.region:
        lines.append(f"- region layer: {result.region}")
    if result.kept:
        lines.append(f"- **Warning:** {result.kept}")
    rows = [(i, "predicted", _predicted(o)) for i, o in result.predicted.items()]
    rows += [(i, "skipped", reason) for i, reason in result.refused.items()]
    rows += [(i, "failed", reason) for i, reason in result.failed.items()]
    rows += [(i, "nothing to predict", reason) for i, reason in result.empty.items()]
    rows += [(i, "still being written?", reason) for i, reason in result.arriving.items()]
    if rows:
        lines += ["", "| scene | status | outputs or reason |", "| --- | --- | --- |"]
        lines += [f"| `{i}` | {status} | {text.replace('|', '/')} |" for i, status, text in rows]
    return "\n".join(lines) + "\n"


def _predicted(outputs: dict[str, str]) -> str:
    """A predicted scene's row: its class raster, and how much of the scene is no data (clouds,
    outside the area) where some is, from its manifest (where it can be read)."""
    try:
        manifest = read_json(outputs["manifest"]) if "manifest" in outputs else None
    except OSError:  # the store failed for a moment: the row goes without the share
        manifest = None
    share = (manifest or {}).get("predicted_percent")
    text = f"`{outputs['classes']}`"
    if isinstance(share, (int, float)) and share < 100:
        text += f" ({100 - share:.1f} % no data: clouds, or outside the scene or the area)"
    return text
