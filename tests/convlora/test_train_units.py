"""Training building blocks that need no model: config, schedule, parameter groups, data order,
random-state capture and the atomically replaced checkpoint folder."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from convlora.errors import ConvLoRAInputError
from convlora.training.config import TrainConfig
from convlora.training.data import EpochPlan, epoch_permutation, rank_indices
from convlora.training.optim import build_optimizer, build_scheduler, param_groups
from convlora.training.state import CheckpointDir, MetricsLog, capture_rng, restore_rng


def test_train_config_defaults_follow_the_official_recipe() -> None:
    cfg = TrainConfig()
    assert (cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.warmup_steps) == (1e-4, 1e-4, 1.0, 0)
    assert cfg.batch_size * cfg.accumulate == 4
    assert cfg.max_epochs == 30 and cfg.seed == 42686693
    assert TrainConfig(steps=10).max_epochs is None


def test_train_config_round_trip_and_errors() -> None:
    cfg = TrainConfig(steps=5, class_weights=[1, 2])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert "device" not in cfg.result_dict() and "lr" in cfg.result_dict()
    assert not cfg.compile and "compile" not in TrainConfig(compile=True).result_dict()
    assert cfg.total_steps(steps_per_epoch=3) == 5 and TrainConfig(epochs=2).total_steps(3) == 6
    with pytest.raises(ConvLoRAInputError, match="either epochs or steps"):
        TrainConfig(epochs=1, steps=1)
    with pytest.raises(ConvLoRAInputError, match="batch_size 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConvLoRAInputError, match="unknown keys"):
        TrainConfig.from_dict({"lr": 1e-3, "momentum": 0.9})


def test_linear_decay_to_zero_without_warmup() -> None:
    param = nn.Parameter(torch.zeros(2, 2))
    opt = torch.optim.AdamW([param], lr=1e-4)
    sched = build_scheduler(opt, total_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-4, 0.75e-4, 0.5e-4, 0.25e-4])
    assert sched.get_last_lr()[0] == 0.0


def test_warmup_rises_then_decays() -> None:
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total_steps=6, warmup_steps=2)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25])


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.tokens = nn.Embedding(3, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 2, 2, 4))
        self.conv = nn.Conv2d(4, 4, 3)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)


def test_no_weight_decay_on_biases_norms_and_tokens() -> None:
    groups = {g["name"]: g for g in param_groups(Block(), weight_decay=1e-4)}
    assert groups["decay"]["param_names"] == ["conv.weight", "linear.weight"]
    assert groups["decay"]["weight_decay"] == 1e-4
    assert groups["no_decay"]["weight_decay"] == 0.0
    assert set(groups["no_decay"]["param_names"]) == {
        "conv.bias", "linear.bias", "norm.weight", "norm.bias", "tokens.weight", "pos_embed",
    }  # fmt: skip
    optimizer = build_optimizer(Block(), lr=1e-4, weight_decay=1e-4)
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-6


def test_epoch_plan_counts_micro_batches_and_steps() -> None:
    plan = EpochPlan(num_items=11, batch_size=2, world_size=1, accumulate=4)
    assert (plan.micro_batches, plan.steps) == (5, 2)
    assert [plan.group_size(s) for s in range(plan.steps)] == [4, 1]


def test_permutation_is_seeded_per_epoch() -> None:
    assert epoch_permutation(20, 7, 0) == epoch_permutation(20, 7, 0)
    assert epoch_permutation(20, 7, 0) != epoch_permutation(20, 7, 1)
    assert sorted(epoch_permutation(20, 7, 3)) == list(range(20))


def test_two_ranks_see_exactly_the_batches_of_one_rank_with_double_batch() -> None:
    one = rank_indices(EpochPlan(9, 2, 1, 1), seed=3, epoch=1, rank=0)
    plan = EpochPlan(9, 1, 2, 1)
    r0 = rank_indices(plan, seed=3, epoch=1, rank=0)
    r1 = rank_indices(plan, seed=3, epoch=1, rank=1)
    assert len(one) == 8 and len(r0) == len(r1) == 4
    assert [one[2 * k : 2 * k + 2] for k in range(4)] == [
        [a, b] for a, b in zip(r0, r1, strict=True)
    ]


def test_resuming_mid_epoch_continues_the_same_order() -> None:
    plan = EpochPlan(10, 2, 1, 1)
    full = rank_indices(plan, seed=1, epoch=2, rank=0)
    assert rank_indices(plan, seed=1, epoch=2, rank=0, start_micro_batch=3) == full[6:]


def draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.standard_normal()), torch.rand(3)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path) -> None:
    torch.manual_seed(0)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    state = capture_rng()
    torch.save(state, tmp_path / "rng.pt")
    expected = draws()
    draws()
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = draws()
    assert again[:2] == expected[:2]
    assert torch.equal(again[2], expected[2])


def test_checkpoint_dir_swaps_whole_folders_and_recovers(tmp_path) -> None:
    ckpt = CheckpointDir(tmp_path / "last")
    assert ckpt.path() is None
    ckpt.write(lambda d: (d / "a.txt").write_text("1"))
    ckpt.write(lambda d: (d / "a.txt").write_text("2"))
    assert (tmp_path / "last" / "a.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]

    def crash(folder):
        (folder / "a.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        ckpt.write(crash)
    assert (ckpt.path() / "a.txt").read_text() == "2"
    # killed between the two renames: only the old version is there
    (tmp_path / "last").rename(tmp_path / ".last.old")
    assert (ckpt.path() / "a.txt").read_text() == "2"


def test_metrics_log_truncates_to_a_checkpoint_offset(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"step": 1})
    offset = log.offset()
    log.append({"step": 2})
    log.truncate(offset)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'
    MetricsLog(tmp_path / "other.jsonl", enabled=False).append({"step": 1})
    assert not (tmp_path / "other.jsonl").exists()


def test_metrics_log_keeps_per_class_values_in_class_order(tmp_path) -> None:
    """Classes in the order of the class map (water before crop here), not sorted by name."""
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.append({"kind": "epoch", "val": {"per_class_iou": {"water": 0.5, "crop": 0.25}}})
    line = (tmp_path / "metrics.jsonl").read_text()
    assert line == '{"kind": "epoch", "val": {"per_class_iou": {"water": 0.5, "crop": 0.25}}}\n'
