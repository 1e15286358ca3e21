"""`--compile` reaches torch.compile in training and prediction (the compiled model's numerics
are tested in tests/convlora/test_compile.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from geo.finetune import FinetuneConfig
from geo.predict.model import load_model
from tests.support.cli import train
from tests.support.stores import agnet_store


def test_train_compile_goes_into_the_training_recipe(tmp_path: Path) -> None:
    config = FinetuneConfig(store=str(tmp_path / "s.zarr"), out=str(tmp_path / "run"))
    assert config.train_config(None).compile is False
    assert config.model_copy(update={"compile": True}).train_config(None).compile is True


def test_predict_compile_loads_a_compiled_model(tmp_path: Path) -> None:
    store = agnet_store(
        tmp_path / "agnet.zarr", range(0, 25), count=2, tile_size=64, val_fraction=0.25
    )
    run = train(store, tmp_path / "run")
    cpu = torch.device("cpu")
    eager, record = load_model(str(run), None, cpu)
    compiled, compiled_record = load_model(str(run), None, cpu, compile=True)
    assert eager._compiled_call_impl is None
    assert compiled._compiled_call_impl is not None and not compiled.training
    assert compiled_record == record  # the same model in the manifests
