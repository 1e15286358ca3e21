"""`demo` flow: the whole job on bundled real data (tile, fine-tune the tiny SAM, predict)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.finetune import finetune_flow
from flows.params import PredictParams, TileParams, TrainParams
from flows.predict import predict_flow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PIVOTS = EXAMPLES / "data" / "nebraska_center_pivots_landsat"
SCENE = PIVOTS / "nebraska_landsat_albers_30m.tif"


def demo_params(out: Path, steps: int) -> tuple[TileParams, TrainParams]:
    """Tiling and training parameters on the Nebraska centre-pivot scene."""
    tile = TileParams(
        images=[str(SCENE)],
        labels=[str(PIVOTS / "pivots.gpkg")],
        class_map=str(EXAMPLES / "pivots_classes.yaml"),
        out=str(out / "pivots.zarr"),
        tile_size=128,
        overlap=32,
        val_fraction=0.25,
    )
    train = TrainParams(
        sam="tiny",
        adapter="full",
        mask_token_init="copy+noise",
        image_size=128,
        steps=steps,
        batch_size=4,
        accumulate=1,
        lr=3e-4,
        device="cpu",
    )
    return tile, train


@flow(name="demo", log_prints=True)
def demo_flow(out: str = "demo-output", steps: int = 300) -> dict[str, str]:
    """Tile, fine-tune and predict on the bundled scene; returns the output paths."""
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tile, train = demo_params(out_dir, steps)
    finetune_flow(tile=tile, train=train, run_dir=str(out_dir / "run"))
    predict = PredictParams(
        images=[str(SCENE)],
        model=str(out_dir / "run"),
        out=str(out_dir / "predictions"),
        tile_size=128,
        overlap=32,
        batch_size=8,
        device="cpu",
        min_area=2000,
    )
    outputs = predict_flow(predict)[0]
    get_run_logger().info("demo outputs in %s", out_dir)
    return outputs
