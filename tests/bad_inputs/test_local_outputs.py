"""Tile stores, training runs and vectorised polygons live on disk: an object-storage URL given
for one is refused in one line, and nothing appears in the working folder (a Path made
`s3://bucket/x.zarr` a local folder `s3:/bucket/x.zarr` before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import refused
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, PIVOT_MASK, SCENE

LOCAL = (
    "must be a local path: tile stores, training runs and vectorised polygons are written on disk"
)
TILING = [SCENE, "--labels", PIVOT_LABELS, "--class-map", PIVOT_CLASSES]

CASES = {
    "tile --out": (["tile", *TILING, "--out", "s3://bucket/s.zarr"], "--out s3://bucket/s.zarr: "),
    "tile --out https": (
        ["tile", *TILING, "--out", "https://example.org/s.zarr"],
        "--out https://example.org/s.zarr: ",
    ),
    "finetune --store": (
        ["finetune", *TILING, "--store", "s3://bucket/s.zarr", "--out", "run"],
        "--store s3://bucket/s.zarr: ",
    ),
    "finetune --out": (
        ["finetune", *TILING, "--store", "s.zarr", "--out", "gs://bucket/run"],
        "--out gs://bucket/run: ",
    ),
    "train STORE": (["train", "s3://bucket/s.zarr", "--out", "run"], "error: s3://bucket/s.zarr: "),
    "train --out": (["train", "{store}", "--out", "s3://bucket/run"], "--out s3://bucket/run: "),
    "evaluate STORE": (
        ["evaluate", "s3://bucket/s.zarr", "--model", "run"],
        "error: s3://bucket/s.zarr: ",
    ),
    "demo --out": (["demo", "--out", "s3://bucket/demo"], "--out s3://bucket/demo: "),
    "vectorize --out": (
        ["vectorize", PIVOT_MASK, "--class-map", PIVOT_CLASSES, "--out", "s3://bucket/p.gpkg"],
        "--out s3://bucket/p.gpkg: ",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_an_object_storage_url_for_a_local_output_is_refused(
    case: str, store: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, named = CASES[case]
    monkeypatch.chdir(work)
    refused(work, [str(a).format(store=store) for a in argv], named + LOCAL)
