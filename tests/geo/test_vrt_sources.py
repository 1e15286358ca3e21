"""A VRT is only a recipe: when the raster it reads changes (the VRT's own text does not),
tiling must not reuse the old store and prediction must not keep the old outputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import zarr

from geo.errors import InputError
from geo.io.vrt import rewrite_sources
from tests.support.http_range import RangeServer
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


def test_a_vrt_signed_again_is_the_same_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A VRT over remote sources signed with SAS tokens (Planetary Computer's): signed again
    (a token renewed just before prediction, or the item signed anew on a retry), it is the same
    input, so that its finished outputs (and resumable work) are kept, not predicted again."""
    rasterio.shutil.copy(NEBRASKA, tmp_path / "source.tif")
    url = "http://storage.example/source.tif?se=2099-01-01T00%3A00%3A00Z&sp=rl&sig={}"
    vrt = tmp_path / "scene.vrt"
    metadata = metadata_for(NEBRASKA, [1, 2, 3], tile_size=64)
    with RangeServer(tmp_path) as server:
        monkeypatch.setenv("GDAL_HTTP_PROXY", server.url.removeprefix("http://"))
        server.signature = "FIRST"
        rasterio.shutil.copy(f"/vsicurl/{url.format('FIRST')}", vrt, driver="VRT")
        first = predict_image(vrt, ToyModel(3), metadata, tmp_path / "out")
        written = first["classes"].stat().st_mtime_ns
        server.signature = "NEXT"  # the first token ran out
        assert rewrite_sources(vrt, lambda s: s.replace("sig=FIRST", "sig=NEXT")) == 3
        with caplog.at_level(logging.INFO, logger="geo"):
            again = predict_image(vrt, ToyModel(3), metadata, tmp_path / "out")
    assert "scene: its outputs in" in caplog.text and "are finished" in caplog.text
    assert again["classes"].stat().st_mtime_ns == written
