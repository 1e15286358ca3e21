"""`predict` flow: tiled inference over scenes into COGs, GeoPackages and QGIS styles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.parameters import PREDICT
from flows.retries import IO_RETRIES
from flows.runtime import dask_address, task_runner_for
from geo.predict import PredictConfig, Scene, check_prediction, predict_planned
from geo.predict.summary import polygon_summary


@task(**IO_RETRIES, task_run_name="predict-{scene.name}")
def predict_one(scene: Scene, config: PredictConfig) -> dict[str, str]:
    """Predict one planned scene; an interrupted scene resumes where it stopped on retry."""
    get_run_logger().info("predicting %s", scene.info.path)
    outputs = predict_planned(scene, config, progress=False)
    return {name: str(path) for name, path in outputs.items()}


@flow(name="predict-scenes")
def predict_scenes(scenes: list[Scene], config: PredictConfig) -> list[dict[str, str]]:
    """Fan the scenes out over the flow's task runner."""
    futures = [predict_one.submit(scene, config) for scene in scenes]
    return [future.result() for future in futures]


def run_prediction(config: PredictConfig) -> list[dict[str, str]]:
    """Plan once (bad input fails here, before any Dask cluster starts), predict every scene,
    and publish a table of outputs with polygon counts and areas per class."""
    plan = check_prediction(config)
    address = dask_address(config.dask_address)
    runner = task_runner_for(len(plan.scenes), address)
    flow = predict_scenes.with_options(task_runner=runner)  # type: ignore[arg-type]
    results = flow(list(plan.scenes), config)
    rows = []
    for outputs in results:
        for cls in polygon_summary(outputs["polygons"]):
            rows.append({"scene": Path(outputs["classes"]).name, **cls})
    create_table_artifact(key="predict-polygons", table=rows, description="Polygons per class")
    lines = [f"- `{o['classes']}`\n- `{o['polygons']}`" for o in results]
    create_markdown_artifact(
        key="predict-summary",
        markdown="# Prediction outputs\n\n" + "\n".join(lines) + "\n\nOpen them in QGIS: "
        "drag the `_classes.tif` and `_polygons.gpkg` files onto the map; "
        "their styles load automatically.",
    )
    get_run_logger().info("predicted %d scene(s) into %s", len(results), config.out)
    return results


@flow(name="predict", log_prints=True)
@PREDICT.parameters("Predict scenes into class and probability COGs, polygons and QGIS styles.")
def predict_flow(**params: Any) -> list[dict[str, str]]:
    return run_prediction(PREDICT.build(PredictConfig, params))
