"""A VRT is only a recipe: when the raster it reads changes (the VRT's own text does not),
tiling must not reuse the old store and prediction must not keep the old outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from geo.errors import InputError
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import NEBRASKA, PIVOT_CLASSES, PIVOT_LABELS
from tests.support.predict import predict_image
from tests.support.stores import tile
from tests.support.vrt import rewrite_upside_down, vrt_over_copy

OPTIONS = {"tile_size": 128, "overlap": 32, "dask_address": "sync"}


def test_tiling_a_vrt_whose_source_changed_is_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, vrt = vrt_over_copy(tmp_path)
    out = tmp_path / "s.zarr"
    store = tile([vrt], [PIVOT_LABELS], PIVOT_CLASSES, out, **OPTIONS)
    first = zarr.open_group(str(store), mode="r").attrs["fingerprint"]
    vrt_text = vrt.read_text()
    with caplog.at_level(logging.INFO, logger="geo"):
        tile([vrt], [PIVOT_LABELS], PIVOT_CLASSES, out, **OPTIONS)
    assert "is up to date" in caplog.text  # same source: reused
    caplog.clear()
    pixels = rewrite_upside_down(source)
    assert vrt.read_text() == vrt_text
    with caplog.at_level(logging.INFO, logger="geo"):
        with pytest.raises(InputError, match="s.zarr: already holds a tile store of other inputs"):
            tile([vrt], [PIVOT_LABELS], PIVOT_CLASSES, out, **OPTIONS)
        tile([vrt], [PIVOT_LABELS], PIVOT_CLASSES, out, overwrite=True, **OPTIONS)
    assert "is up to date" not in caplog.text
    group = zarr.open_group(str(out), mode="r")
    assert group.attrs["fingerprint"] != first
    first_tile = group["images"][0]  # the top-left 128 px of the new pixels
    assert np.array_equal(first_tile, pixels[:, :128, :128])


def test_predicting_a_vrt_whose_source_changed_predicts_again(tmp_path: Path) -> None:
    source, vrt = vrt_over_copy(tmp_path)
    metadata = metadata_for(NEBRASKA, [1, 2, 3], tile_size=64)
    out = tmp_path / "out"
    first = predict_image(vrt, ToyModel(3), metadata, out)
    manifest = json.loads(first["manifest"].read_text())
    with rasterio.open(first["classes"]) as src:
        before = src.read(1)
    rewrite_upside_down(source)
    again = predict_image(vrt, ToyModel(3), metadata, out)
    assert json.loads(again["manifest"].read_text())["fingerprint"] != manifest["fingerprint"]
    with rasterio.open(again["classes"]) as src:
        after = src.read(1)
    assert not np.array_equal(after, before)
    # the new classes follow the new pixels (the toy model nearly commutes with a flip)
    assert (after[::-1] == before).mean() > 0.9
