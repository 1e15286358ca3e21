"""`evaluate` measures a model exactly as `predict` uses it: the store's scene predicted from
its tiles with the prediction code, scored where the chosen split's tiles lie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from convlora.metrics import ConfusionMatrix
from convlora.training.evaluation import summarize
from flows.commands.evaluate import class_rows
from geo.contracts.metrics import map_accuracies, one_class_warning
from geo.contracts.tile_store import StoreInfo
from geo.evaluate import EvaluateConfig, evaluate_on_store
from geo.finetune import FinetuneConfig, train_on_store
from geo.predict import PredictConfig, predict
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, SCENE
from tests.support.stores import tile


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Nebraska scene in 128 px tiles and the tiny SAM trained on it for a few steps."""
    folder = tmp_path_factory.mktemp("evaluate")
    store = tile([SCENE], [PIVOT_LABELS], PIVOT_CLASSES, folder / "s.zarr", tile_size=128,
                 overlap=32, val_fraction=0.25, dask_address="sync")  # fmt: skip
    run = folder / "run"
    train_on_store(
        FinetuneConfig(
            store=str(store),
            out=str(run),
            sam="tiny",
            adapter="full",
            steps=6,
            batch_size=4,
            accumulate=1,
            device="cpu",
            progress=False,
        )  # fmt: skip
    )
    return store, run


def store_labels(store: Path, splits: tuple[int, ...]) -> np.ndarray:
    """The scene's labels painted from the store's tiles of `splits` (255 elsewhere)."""
    info = StoreInfo.read(store)
    group = zarr.open_group(str(store), mode="r")
    record = info.scenes[0]
    out = np.full((record.height, record.width), 255, dtype=np.uint8)
    for i in range(info.n_tiles):
        if group["split"][i] not in splits:
            continue
        col, row, width, height = (int(v) for v in group["window"][i])
        h, w = min(height, record.height - row), min(width, record.width - col)
        label = np.where(group["valid"][i], group["labels"][i], 255)[:h, :w]
        out[row : row + h, col : col + w] = label
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("split", "codes"), [("all", (0, 1, 2)), ("val", (1,))])
def test_evaluate_equals_scoring_the_predicted_scene(
    trained: tuple[Path, Path], tmp_path: Path, split: str, codes: tuple[int, ...]
) -> None:
    store, run = trained
    metrics = evaluate_on_store(
        EvaluateConfig(store=str(store), model=str(run), split=split, device="cpu")
    )
    (outputs,) = predict(
        PredictConfig(images=[str(SCENE)], model=str(run), out=str(tmp_path), device="cpu"),
        progress=False,
    )
    with rasterio.open(outputs["classes"]) as src:
        predicted = src.read(1)
    labels = store_labels(store, codes)
    keep = (labels != 255) & (predicted != 255)
    matrix = ConfusionMatrix(2)
    matrix.update(predicted[keep], labels[keep])
    expected = summarize(matrix, ["background", "pivot"])
    assert metrics["pixels"] == expected["pixels"] > 0
    assert metrics["per_class_iou"] == expected["per_class_iou"]
    assert metrics["pixel_accuracy"] == expected["pixel_accuracy"]
    assert metrics["split"] == split
    assert metrics["confusion_matrix"]["pixels"] == matrix.matrix.tolist()
    reference, right = matrix.matrix.sum(axis=1), np.diag(matrix.matrix)
    assert metrics["producers_accuracy"]["pivot"] == pytest.approx(right[1] / reference[1])


def test_map_accuracies_read_the_confusion_matrix_both_ways() -> None:
    """Rows are reference pixels, columns predicted ones: of 10 reference fields 8 are found
    (producer's 0.8); of 12 pixels predicted as field 8 are (user's 0.667); a class never
    predicted has no user's accuracy. The table shows both; a model that paints one class
    everywhere is warned about, with class weights suggested only to a run without them."""
    matrix = np.array([[50, 4, 0], [2, 8, 0], [1, 0, 0]])
    names = ["background", "field", "pond"]
    accuracies = map_accuracies(matrix, names)
    assert accuracies["producers_accuracy"] == {"background": 0.925926, "field": 0.8, "pond": 0.0}
    assert accuracies["users_accuracy"] == {"background": 0.943396, "field": 0.666667, "pond": None}
    assert accuracies["confusion_matrix"] == {
        "classes": names, "rows": "reference", "columns": "predicted", "pixels": matrix.tolist(),
    }  # fmt: skip
    metrics = {
        "per_class_iou": {"background": 0.9, "field": 0.57, "pond": 0.0},
        "per_class_f1": {"background": 0.93, "field": 0.73, "pond": 0.0},
        "predicted_share": {"background": 0.82, "field": 0.18, "pond": 0.0},
        "miou": 0.49, "f1": 0.55, **accuracies,
    }  # fmt: skip
    rows = class_rows(metrics)
    assert rows[0].split() == ["class", "IoU", "F1", "producer", "user", "predicted"]
    assert rows[2].split() == ["field", "0.5700", "0.7300", "0.8000", "0.6667", "18.0%"]
    assert rows[3].split()[4] == "n/a"
    flat = {**metrics, "predicted_share": {"background": 0.99, "field": 0.01, "pond": 0.0}}
    assert "of the labelled pixels" in one_class_warning(flat, pixels="labelled")


def test_another_tile_size_is_warned_about(
    trained: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    store, run = trained
    config = EvaluateConfig(store=str(store), model=str(run), tile_size=256, device="cpu")
    with caplog.at_level("WARNING", logger="geo"):
        evaluate_on_store(config)
    assert "trained on 128 px tiles" in caplog.text and "0.50x the training scale" in caplog.text
