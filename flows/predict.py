"""`predict` flow: tiled inference over scenes into COGs, GeoPackages and QGIS styles."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.logs import as_parameters
from flows.parameters import PREDICT
from flows.retries import IO_RETRIES
from flows.run_names import images_run, named, scenes_run
from flows.runtime import dask_address, task_runner_for
from geo.io.storage import read_json
from geo.predict import PredictConfig, Scene, check_prediction, predict_planned
from geo.predict.summary import polygon_summary

SHOWN = ("classes", "polygons", "quicklook", "probability", "manifest")  # outputs listed
OPEN_IN_QGIS = (
    "Open them in QGIS: drag the `_classes.tif` and `_polygons.gpkg` files onto the map; their "
    "styles load automatically. The quick-look shows the run at a glance."
)


@task(**IO_RETRIES, task_run_name="predict-{scene.name}")
def predict_one(scene: Scene, config: PredictConfig) -> dict[str, str]:
    """Predict one planned scene; an interrupted scene resumes where it stopped on retry."""
    get_run_logger().info("predicting %s", scene.info.path)
    return predict_planned(scene, config)  # a bar on a terminal, else a line every 30 s


@flow(name="predict-scenes", flow_run_name=named(scenes_run))
def predict_scenes(
    scenes: list[Scene], config: PredictConfig, raise_on_failure: bool = True
) -> list[Any]:
    """Fan the scenes out over the flow's task runner: each one's outputs, or (without
    `raise_on_failure`) the exception that stopped it."""
    futures = [predict_one.submit(scene, config) for scene in scenes]
    return [future.result(raise_on_failure=raise_on_failure) for future in futures]


def predict_all(
    scenes: Sequence[Scene], config: PredictConfig, *, raise_on_failure: bool = True
) -> list[Any]:
    """Predict planned scenes on Dask (the config's scheduler, else a local cluster for several
    scenes) or in a thread for one; see `predict_scenes`."""
    runner = task_runner_for(len(scenes), dask_address(config.dask_address))
    fan_out = predict_scenes.with_options(task_runner=runner)  # type: ignore[arg-type]
    return fan_out(list(scenes), config, raise_on_failure)


def publish_polygon_table(results: Sequence[dict[str, str]]) -> None:
    """A table artifact of polygon counts and areas per class and scene (a scene without
    polygons is a row of 0, not left out)."""
    rows = []
    for outputs in results:
        scene = PurePosixPath(outputs["classes"]).name
        classes = polygon_summary(outputs["manifest"])
        rows += [{"scene": scene, **cls} for cls in classes] or [
            {"scene": scene, "class_name": "(none)", "polygons": 0}
        ]
    create_table_artifact(
        key="predict-polygons", table=rows, description="Polygons per class and scene"
    )


def summary_markdown(results: Sequence[dict[str, str]], warnings: Sequence[str]) -> str:
    """The predict-summary artifact: each scene's outputs, how much of it was predicted, and the
    warnings about scenes unlike the training data."""
    lines = ["# Prediction outputs", ""]
    for outputs in results:
        share = (read_json(outputs["manifest"]) or {}).get("predicted_percent")
        predicted = "" if share is None else f" ({share:g} % predicted)"
        lines.append(f"- **{PurePosixPath(outputs['classes']).name}**{predicted}")
        lines += [f"  - {kind}: `{outputs[kind]}`" for kind in SHOWN if kind in outputs]
    lines += ["", *(f"**Warning:** {as_parameters(w)}" for w in warnings)]
    lines += ["", OPEN_IN_QGIS]
    return "\n".join(lines)


def run_prediction(config: PredictConfig) -> list[dict[str, str]]:
    """Plan once (bad input fails here, before any Dask cluster starts), predict every scene,
    and publish a table of outputs with polygon counts and areas per class."""
    plan = check_prediction(config)
    results = predict_all(plan.scenes, config)
    publish_polygon_table(results)
    create_markdown_artifact(
        key="predict-summary",
        markdown=summary_markdown(results, plan.warnings),
        description="Outputs of each scene",
    )
    get_run_logger().info("outputs of %d scene(s) in %s", len(results), config.out)
    return results


@flow(name="predict", log_prints=True, flow_run_name=named(images_run))
@PREDICT.parameters("Predict scenes into class and probability COGs, polygons and QGIS styles.")
def predict_flow(**params: Any) -> list[dict[str, str]]:
    return run_prediction(PREDICT.build(PredictConfig, params))
