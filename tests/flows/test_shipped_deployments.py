"""The shipped `field-boundaries` deployments, with the parameters `prefect.yaml` gives them, learn
something a user can see: the fine-tuned model's best checkpoint finds pivots on the validation
tiles, and prediction with it writes pivot polygons."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pytest
import yaml

from tests.support.paths import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def deployment_parameters(flow: str, name: str) -> dict:
    """The parameters of the deployment of `flow` named `name` in prefect.yaml."""
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (found,) = [
        d for d in document["deployments"]
        if d["name"] == name and d["entrypoint"].endswith(f":{flow}")
    ]  # fmt: skip
    return found["parameters"]


def test_field_boundaries_finetune_then_predict_finds_pivots(
    prefect_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.finetune import finetune_flow
    from flows.predict import predict_flow

    os.symlink(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # the deployments' paths are relative to the project folder
    metrics = finetune_flow(**deployment_parameters("finetune_flow", "field-boundaries"))
    assert metrics["per_class_iou"]["pivot"] > 0.02, metrics
    assert metrics["predicted_share"]["background"] < 0.99
    (outputs,) = predict_flow(**deployment_parameters("predict_flow", "field-boundaries"))
    polygons = gpd.read_file(outputs["polygons"], layer="polygons")
    assert (polygons["class_name"] == "pivot").sum() >= 5
