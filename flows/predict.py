"""`predict` flow: tiled inference over scenes into COGs, GeoPackages and QGIS styles."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.params import PredictParams
from flows.retries import IO_RETRIES
from flows.runtime import dask_address, task_runner_for
from geo.predict import predict_scene
from geo.summary import polygon_summary


@task(**IO_RETRIES, task_run_name="predict-{image}")
def predict_one(image: str, params: PredictParams) -> dict[str, str]:
    """Predict one scene; an interrupted scene resumes where it stopped on retry."""
    from convlora.checkpoint import load_adapter
    from convlora.devices import resolve_device

    device = resolve_device(params.device)
    model, metadata = load_adapter(
        params.model, sam_checkpoint=params.sam_checkpoint, device=device
    )
    get_run_logger().info("predicting %s on %s", image, device)
    outputs = predict_scene(
        image,
        model,
        metadata,
        params.out,
        tile_size=params.tile_size,
        overlap=params.overlap,
        batch_size=params.batch_size,
        device=device,
        min_area=params.min_area,
        simplify=params.simplify,
    )
    return {name: str(path) for name, path in outputs.items()}


@flow(name="predict-scenes")
def predict_scenes(params: PredictParams) -> list[dict[str, str]]:
    """Fan the scenes out over the flow's task runner."""
    futures = [predict_one.submit(image, params) for image in params.images]
    return [future.result() for future in futures]


@flow(name="predict", log_prints=True)
def predict_flow(params: PredictParams) -> list[dict[str, str]]:
    """Predict every scene; publishes a table of outputs with polygon counts and areas per class."""
    params.check()  # bad input fails the run here, before any Dask cluster starts
    address = dask_address(params.dask_address)
    runner = task_runner_for(len(params.images), address)
    results = predict_scenes.with_options(task_runner=runner)(params)
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
    get_run_logger().info("predicted %d scene(s) into %s", len(results), params.out)
    return results
