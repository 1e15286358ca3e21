"""`convlora.train.fit` end to end with the tiny SAM: run folder, exact resume, early stop, DDP."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from convlora.checkpoint import load_adapter
from convlora.errors import ConvLoRAInputError
from convlora.train import UNTRAINED_WARNING, evaluate, fit
from tests.support.train_runs import (
    CLASS_NAMES,
    CLASSES,
    SIZE,
    Tiles,
    lines,
    model_cfg,
    run_fit,
    step_losses,
    train_cfg,
)

METRIC_NAMES = {
    "miou", "f1", "pixel_accuracy", "per_class_iou", "per_class_f1", "predicted_share", "pixels",
}  # fmt: skip


class Crashing(Tiles):
    """Raises after `after` items, like a worker that dies mid-run."""

    def __init__(self, n: int, after: int) -> None:
        super().__init__(n)
        self.left = after

    def __getitem__(self, i: int) -> dict:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("worker pre-empted")
        return super().__getitem__(i)


@pytest.mark.slow
def test_fit_writes_the_run_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train = Tiles(6)
    with caplog.at_level(logging.WARNING):
        summary = run_fit(tmp_path / "run", train=train)
    assert UNTRAINED_WARNING in caplog.text
    run = tmp_path / "run"
    for name in ("adapter.safetensors", "adapter.json", "config.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    for name in ("adapter.safetensors", "adapter.json", "training_state.pt", "state.json"):
        assert (run / "last" / name).is_file(), name
    assert sorted(p.name for p in run.iterdir()) == sorted(
        ["adapter.safetensors", "adapter.json", "config.json", "metrics.jsonl", "last"]
    )
    assert train.epochs == [0, 1]
    # 6 tiles, batch 1, accumulate 2: 3 optimiser steps per epoch, lr decays linearly to 0
    records = lines(run)
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in steps] == pytest.approx([1e-3 * (6 - s) / 6 for s in range(6)])
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 3), (2, 6)]
    val = epochs[-1]["val"]
    assert set(val) == METRIC_NAMES
    assert list(val["per_class_iou"]) == ["background", "crop", "water"]
    assert val["pixels"] == 2 * (SIZE - 4 - 2) * SIZE  # 255 strip and invalid rows ignored
    assert summary["steps"] == 6 and summary["best_miou"] == max(r["val"]["miou"] for r in epochs)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["adapter"] == "lora" and config["total_steps"] == 6

    model, metadata = load_adapter(run)
    assert metadata["classes"] == CLASSES
    assert metadata["training"]["step"] == summary["best_step"]
    again = evaluate(model, Tiles(2, seed=1), class_names=CLASS_NAMES)
    assert again["miou"] == pytest.approx(summary["best_miou"])


@pytest.mark.slow
def test_crash_and_rerun_gives_the_uninterrupted_adapter_bit_for_bit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Conv-LoRA draws gating noise: the RNG states and data position must come back exactly."""
    options = dict(adapter="conv-lora", checkpoint_every=2)
    reference = run_fit(tmp_path / "reference", **options)
    # 6 tiles, accumulate 2: checkpoints after steps 2 (mid-epoch), 3 (epoch end), 4, 6.
    # Dying while reading the 10th tile (step 5) leaves the step-4 checkpoint.
    with pytest.raises(RuntimeError, match="pre-empted"):
        run_fit(tmp_path / "run", train=Crashing(6, after=9), **options)
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["micro_batch"]) == (4, 1, 2)
    resumed = run_fit(tmp_path / "run", **options)

    assert resumed == {
        **reference,
        **{k: resumed[k] for k in ("run_dir", "adapter", "last", "metrics")},
    }
    for name in ("adapter.safetensors", "last/adapter.safetensors"):
        assert (tmp_path / "run" / name).read_bytes() == (
            tmp_path / "reference" / name
        ).read_bytes()
    drop = ("throughput",)
    strip = [{k: v for k, v in r.items() if k not in drop} for r in lines(tmp_path / "run")]
    want = [{k: v for k, v in r.items() if k not in drop} for r in lines(tmp_path / "reference")]
    assert strip == want

    # a finished run is not trained again, and says so
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="convlora"):
        assert run_fit(tmp_path / "run", **options)["steps"] == 6
    assert "finished earlier (6/6 steps): nothing left to train" in caplog.text
    assert "resuming" not in caplog.text


@pytest.mark.slow
def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    run_fit(tmp_path / "run", epochs=1)
    only_lr = r"other settings is there \(train\.lr: 0\.001 -> 0\.0005\)"
    with pytest.raises(ConvLoRAInputError, match=only_lr):
        run_fit(tmp_path / "run", epochs=1, lr=5e-4)
    # settings that do not change the result may differ
    assert run_fit(tmp_path / "run", epochs=1, log_every=5)["steps"] == 3
    # metadata a later version records is no difference; metadata that differs is
    data = (model_cfg("lora"), train_cfg(epochs=1), Tiles(6), Tiles(2, seed=1), tmp_path / "run")
    added = {"classes": CLASSES, "class_map": {"unmapped": "ignore"}}
    assert fit(*data, metadata=added, progress=False, class_names=CLASS_NAMES)["steps"] == 3
    with pytest.raises(ConvLoRAInputError, match=r"\(metadata\.classes changed\)"):
        fit(*data, metadata={"classes": CLASSES[::-1]}, progress=False, class_names=CLASS_NAMES)


def test_a_run_starts_from_the_weights_of_another(tmp_path: Path) -> None:
    """`init_from`: a new run starts from another run's best weights (a learning rate of 1e-9
    keeps them, where a fresh run keeps its fresh ones), and resumes only on the same start."""
    run_fit(tmp_path / "first", epochs=1)
    start = load_file(tmp_path / "first" / "adapter.safetensors")
    settings = (model_cfg("lora"), train_cfg(epochs=1, lr=1e-9), Tiles(6), Tiles(2, seed=1))
    options = {"metadata": {"classes": CLASSES}, "progress": False, "class_names": CLASS_NAMES}
    fit(*settings, tmp_path / "second", init_from=tmp_path / "first", **options)
    fit(*settings, tmp_path / "fresh", **options)
    after = load_file(tmp_path / "second" / "last" / "adapter.safetensors")
    fresh = load_file(tmp_path / "fresh" / "last" / "adapter.safetensors")
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in start)
    assert not all(torch.allclose(fresh[k], start[k], atol=1e-6) for k in start)
    with pytest.raises(ConvLoRAInputError, match=r"\(init_from_sha256 changed\)"):
        fit(*settings, tmp_path / "second", **options)


@pytest.mark.slow
def test_early_stop_after_patience_epochs_without_gain(tmp_path: Path) -> None:
    summary = run_fit(tmp_path / "run", epochs=6, lr=1e-12, early_stop_patience=1)
    assert summary["stopped_early"] and summary["steps"] == 6 and summary["best_epoch"] == 1
    assert [r["best"] for r in lines(tmp_path / "run") if r["kind"] == "epoch"] == [True, False]


def test_too_few_tiles_for_one_batch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConvLoRAInputError, match="fewer than one batch") as error:
        run_fit(tmp_path / "run", train=Tiles(1), batch_size=2)
    assert str(error.value).endswith("processes): a batch size of at most 1 fits")
    with pytest.raises(ConvLoRAInputError, match="2 values for 3 classes"):
        run_fit(tmp_path / "run", class_weights=[1.0, 2.0])


@pytest.mark.slow
def test_without_validation_the_last_weights_are_kept(tmp_path: Path) -> None:
    cfg = train_cfg(epochs=1, warmup_steps=1)
    summary = fit(model_cfg(), cfg, Tiles(4), None, tmp_path / "run", progress=False)
    assert summary["best_miou"] is None and summary["best_step"] == 2
    run = tmp_path / "run"
    assert (run / "adapter.safetensors").read_bytes() == (
        run / "last" / "adapter.safetensors"
    ).read_bytes()
    assert [r["lr"] for r in lines(run) if r["kind"] == "step"] == pytest.approx([5e-4, 1e-3])


DDP_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    import torch.distributed as dist
    from tests.support.train_runs import Tiles, run_fit
    out, accumulate, adapters = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    dist.init_process_group("gloo")  # one group for all the runs (fit joins it)
    for adapter in adapters:
        run_fit(out / adapter, train=Tiles(8, ignored=(3,)), adapter=adapter, epochs=1,
                batch_size=1, accumulate=accumulate)
    dist.destroy_process_group()
    """
)


def launch(tmp_path: Path, nproc: int, out: Path, accumulate: int, adapters: list[str]) -> None:
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT.format(root=str(Path(__file__).resolve().parents[2])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", str(script), str(out), str(accumulate),
           *adapters]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_train_every_adapter_kind_like_one(tmp_path: Path) -> None:
    """2-process gloo DDP with batch 1 = 1 process accumulating 2 batches of 1, for every adapter
    kind, on tiles one of which is ignored entirely (its process then has no target to match).

    Conv-LoRA's noisy gating draws independent noise per process, so its curve is not compared.
    """
    adapters = ["conv-lora", "lora", "decoder", "full"]
    launch(tmp_path, 2, tmp_path / "ddp", 1, adapters)
    launch(tmp_path, 1, tmp_path / "one", 2, adapters[1:])
    conv_lora = step_losses(tmp_path / "ddp" / "conv-lora")
    assert len(conv_lora) == 4 and all(math.isfinite(v) for v in conv_lora)
    for adapter in adapters[1:]:
        ddp, one = step_losses(tmp_path / "ddp" / adapter), step_losses(tmp_path / "one" / adapter)
        assert len(ddp) == len(one) == 4, adapter
        assert ddp == pytest.approx(one, rel=1e-4), adapter
        a = load_file(str(tmp_path / "ddp" / adapter / "last" / "adapter.safetensors"))
        b = load_file(str(tmp_path / "one" / adapter / "last" / "adapter.safetensors"))
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-5, msg=name)
