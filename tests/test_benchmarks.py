"""`python -m benchmarks --quick` runs every section and records every key figure, finite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.paths import ROOT

KEYS = {
    "adapters": ["convlora_over_lora_step_time"],
    "accel": ["sdpa_encoder_speedup", "compiled_convlora_step_speedup"],
    "predict": ["pipeline_over_model", "speedup_over_naive", "memory_ratio_naive_over_ours"],
    "memory": ["rss_16x_over_1x"],
    "tiling": [
        "tiling_over_raw_read",
        "tile_mb_per_s",
        "raw_read_mb_per_s",
        "small_tiles_over_raw_read",
    ],
    "vectorize": [
        "polygons_per_s_seams_merged",
        "km2_per_s_seams_merged",
        "polygons_per_s_one_band",
        "km2_per_s_one_band",
    ],
}


@pytest.mark.slow
def test_quick_run_records_every_key_figure(tmp_path: Path) -> None:
    committed = _stamps()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    assert results["mode"] == "quick"
    assert {"cpu", "cores", "torch", "device"} <= set(results["machine"])
    for section, keys in KEYS.items():
        body = results["sections"][section]
        assert "error" not in body, body.get("error")
        for key in keys:
            value = body.get(key)
            assert finite(value), f"{section}.{key}"
            assert key in body["key_figures"]
        for timing in _timings(body):
            assert 0 < timing["min"] <= timing["median"] <= timing["max"]
    markdown = (tmp_path / "quick.md").read_text()
    assert "Key figures" in markdown and results["machine"]["cpu"] in markdown
    assert _stamps() == committed, "the quick run wrote into benchmarks/results"


def _stamps() -> dict[str, int]:
    """Modification times of the committed results files."""
    return {p.name: p.stat().st_mtime_ns for p in (ROOT / "benchmarks" / "results").glob("*")}


def _timings(node: object) -> list[dict]:
    """Every min / median / max summary nested in a section's figures."""
    if isinstance(node, dict):
        if {"min", "median", "max"} <= set(node):
            return [node]
        return [t for value in node.values() for t in _timings(value)]
    if isinstance(node, list):
        return [t for value in node for t in _timings(value)]
    return []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: it would measure")
def test_gpu_benchmarks_skip_without_cuda(tmp_path: Path) -> None:
    """On a machine without CUDA `python -m benchmarks.gpu` says so and writes nothing."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no CUDA device" in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_gpu_benchmark_code_runs_on_the_cpu(tmp_path: Path) -> None:
    """`--cpu-dry-run`: the GPU measurements' code with the tiny SAM on the CPU."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--cpu-dry-run", "--results-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = json.loads((tmp_path / "gpu-dry-run.json").read_text())["sections"]["gpu"]
    for key in body["key_figures"]:
        assert finite(body[key]) and key in body["goals"]
    assert finite(body["convlora_over_lora_step_time_eager"])
    assert finite(body["convlora_over_lora_step_time_cudagraphs"])
    assert body["steps"]["cudagraphs"]["graphs_run_without_cuda_graphs"] == 0  # eager backend


def finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
