"""A tile store already at the output: kept when an older convlora-geo tiled the same inputs
and settings (an upgrade does not stop the pipeline), refused naming what differs otherwise."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import zarr

from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.io.hashing import fingerprint
from geo.tiling import TileConfig, check_tiling, tile_scenes
from tests.support.cli import snapshot, write_like
from tests.support.paths import PIVOT_CLASSES, PIVOT_LABELS, SCENE
from tests.support.stores import OLD_SPLIT, as_tiled_by_another_version


def _config(scene: Path, out: Path, **options: object) -> TileConfig:
    return TileConfig.parse(
        {"images": [str(scene)], "labels": [str(PIVOT_LABELS)], "class_map": str(PIVOT_CLASSES),
         "out": str(out), "tile_size": 128, "overlap": 32, "dask_address": "sync", **options}
    )  # fmt: skip


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    copy = tmp_path / "scene.tif"
    shutil.copyfile(SCENE, copy)
    return copy


def test_a_store_an_older_version_tiled_is_kept_as_it_is(
    scene: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Same inputs and settings, the split drawn by an older recipe: used as it is, with a
    warning, and a run trained on it resumes on it (its fingerprint is the one finetune checks
    the run against); --overwrite tiles it again with this version's recipe."""
    config = _config(scene, tmp_path / "s.zarr")
    store = tile_scenes(config, progress=False)
    stored = as_tiled_by_another_version(store, split=OLD_SPLIT)
    before = snapshot(store)
    with caplog.at_level(logging.INFO, logger="geo"):
        request = check_tiling(config)
        assert tile_scenes(config, progress=False) == store
    assert request.reuse and request.store_fingerprint == stored != request.fingerprint
    assert "s.zarr was tiled by another convlora-geo version, which draws the validation split" in (
        caplog.text
    )
    assert "(--overwrite tiles it again)" in caplog.text
    assert snapshot(store) == before

    tile_scenes(config.model_copy(update={"overwrite": True}), progress=False)
    assert StoreInfo.read(store).fingerprint == check_tiling(config).fingerprint != stored


def test_a_store_of_another_tiling_version_is_refused_by_name(scene: Path, tmp_path: Path) -> None:
    config = _config(scene, tmp_path / "s.zarr")
    store = tile_scenes(config, progress=False)
    version = StoreInfo.read(store).settings["algorithm"]["version"]
    as_tiled_by_another_version(store, version=version - 1)
    with pytest.raises(InputError) as refused:
        check_tiling(config)
    assert (
        f"s.zarr: tiled by another convlora-geo, whose tiles differ from this one's (tiling "
        f"version {version - 1}, now {version}); pass --overwrite to tile it again"
    ) in str(refused.value)


def test_a_store_of_other_inputs_or_settings_names_them(scene: Path, tmp_path: Path) -> None:
    """Each difference by name, and nothing that does not differ (a class map given on one side
    only is its classes, not "other scenes or label files")."""
    config = _config(scene, tmp_path / "s.zarr")
    tile_scenes(config, progress=False)
    with pytest.raises(InputError) as refused:
        check_tiling(_config(scene, tmp_path / "s.zarr", overlap=16, bands=[3, 2, 1]))
    assert "of other inputs or settings (--bands 1,2,3, now 3,2,1; --overlap 32, now 16)" in (
        str(refused.value)
    )
    with pytest.raises(InputError) as refused:  # the same scene and labels, no class map now
        check_tiling(_config(scene, tmp_path / "s.zarr", class_map=None))
    assert "of other inputs or settings (the classes made from the labels without --class-map " in (
        str(refused.value)
    )
    with pytest.raises(InputError) as refused:
        check_tiling(_config(scene, tmp_path / "s.zarr", images=[str(scene), str(SCENE)]))
    assert "of other inputs or settings (2 scene(s), the store's 1)" in str(refused.value)
    write_like(SCENE, scene, nodata=0)  # the same pixels, another nodata value
    with pytest.raises(InputError) as refused:
        check_tiling(config)
    assert "of other inputs or settings (scene.tif changed); write the new store elsewhere" in (
        str(refused.value)
    )


def test_classes_made_another_way_without_a_class_map_are_listed(
    scene: Path, tmp_path: Path
) -> None:
    """A store whose classes were made from the labels (no --class-map) another way than now
    (an older convlora-geo made a numeric field's 0 a class of its own): the refusal lists the
    classes of both, not only that 'the class map differs'."""
    labels = tmp_path / "codes.gpkg"
    pivots = gpd.read_file(PIVOT_LABELS)
    pivots.assign(code=pivots.index % 3).to_file(labels)
    config = _config(scene, tmp_path / "s.zarr", labels=[str(labels)], class_map=None,
                     label_field="code")  # fmt: skip
    store = tile_scenes(config, progress=False)
    group = zarr.open_group(str(store), mode="r+")
    settings = group.attrs["settings"]
    old_classes = [{"id": i, "name": n, "color": "#000000"} for i, n in
                   enumerate(["background", "0", "1", "2"])]  # fmt: skip
    settings["class_map"] = {**settings["class_map"], "classes": old_classes}
    group.attrs.update(
        {"settings": settings, "fingerprint": fingerprint(group.attrs["inputs"], settings)}
    )
    with pytest.raises(InputError) as refused:
        check_tiling(config)
    assert (
        "of other inputs or settings (the classes made from the labels without --class-map are "
        "0 background, 1 1, 2 2, the store's 0 background, 1 0, 2 1, 3 2); write the new store "
        "elsewhere or pass --overwrite"
    ) in str(refused.value)
