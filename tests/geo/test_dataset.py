"""TileDataset and normalize: normalised tensors, splits, deterministic D4 augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.transform
import rasterio.warp
import shapely
import torch
import zarr
from rasterio.warp import calculate_default_transform, reproject
from torch.utils.data import DataLoader

from geo.contracts.normalization import Normalization
from geo.errors import InputError
from geo.finetune.dataset import TileDataset, d4
from geo.io.normalize import normalize
from tests.support.stores import tile

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
PIVOTS = DATA / "nebraska_center_pivots_landsat"
CLASSES = Path(__file__).resolve().parents[2] / "examples" / "pivots_classes.yaml"
ALBERS = "EPSG:5070"  # CONUS Albers, metres: where both scenes' tiles are compared


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tile(
        [str(PIVOTS / "nebraska_landsat_albers_30m.tif")], [str(PIVOTS / "pivots.gpkg")],
        str(CLASSES), tmp_path_factory.mktemp("ds") / "pivots.zarr",
        tile_size=128, overlap=16,
    )  # fmt: skip


def test_items_follow_the_contract(store: Path) -> None:
    group = zarr.open_group(str(store), mode="r")
    split = group["split"][:]
    train, val, every = (TileDataset(store, s) for s in ("train", "val", "all"))
    assert len(train) == (split == 0).sum() and len(val) == (split == 1).sum()
    assert len(every) == len(split) and len(train) > 0 and len(val) > 0
    item = train[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 128, 128)
    assert item["label"].dtype == torch.int64 and item["label"].shape == (128, 128)
    assert item["valid"].dtype == torch.bool and isinstance(item["index"], int)
    i = item["index"]
    stats = group.attrs["normalization"]
    raw = group["images"][i].astype(np.float64)
    expected = (raw - np.array(stats["mean"])[:, None, None]) / np.array(stats["std"])[
        :, None, None
    ]
    assert np.allclose(item["image"].numpy(), expected, atol=1e-4)
    assert np.array_equal(item["label"].numpy(), group["labels"][i])
    assert set(torch.unique(item["label"]).tolist()) <= {0, 1, 255}
    assert train.num_classes == 2 and train.in_channels == 3 and train.tile_size == 128


def test_d4_augmentation_is_deterministic_and_consistent(store: Path) -> None:
    plain = TileDataset(store, "all")
    aug = TileDataset(store, "all", augment=True, seed=7)
    ks = {aug.transform_of(int(i)) for i in aug.indices}
    assert ks <= set(range(8)) and len(ks) > 1
    for i in range(len(aug)):
        a, p = aug[i], plain[i]
        k = aug.transform_of(a["index"])
        for key in ("image", "label", "valid"):
            assert np.array_equal(a[key].numpy(), d4(p[key].numpy(), k)), key
            assert a[key].is_contiguous(), key  # turned before conversion, not copied after
    again = TileDataset(store, "all", augment=True, seed=7)
    assert all(torch.equal(again[i]["image"], aug[i]["image"]) for i in range(len(aug)))
    before = [aug.transform_of(int(i)) for i in aug.indices]
    aug.set_epoch(1)
    assert [aug.transform_of(int(i)) for i in aug.indices] != before
    aug.set_epoch(0)
    assert [aug.transform_of(int(i)) for i in aug.indices] == before


def test_training_tiles_leave_out_what_they_share_with_validation(store: Path) -> None:
    """Tiles overlap by 16 px: the labels a training tile shares with a validation tile are
    255 in training, the rest as tiled; validation tiles are whole."""
    group = zarr.open_group(str(store), mode="r")
    split, windows = group["split"][:], group["window"][:]
    train, val = TileDataset(store, "train"), TileDataset(store, "val")
    touched = 0
    for i in range(len(train)):
        index = int(train.indices[i])
        col, row = windows[index][:2]
        inside = np.zeros((128, 128), dtype=bool)
        for v in np.flatnonzero(split == 1):
            vc, vr = windows[v][:2]
            r0, r1 = max(row, vr) - row, min(row, vr) + 128 - row
            c0, c1 = max(col, vc) - col, min(col, vc) + 128 - col
            if r1 > r0 and c1 > c0:
                inside[r0:r1, c0:c1] = True
        label = train[i]["label"].numpy()
        stored = np.where(group["valid"][index], group["labels"][index], 255)
        assert (label[inside] == 255).all()
        assert np.array_equal(label[~inside], stored[~inside])
        touched += inside.any() and (stored[inside] != 255).any()
    assert touched > 0
    assert np.array_equal(
        val[0]["label"].numpy(),
        np.where(group["valid"][int(val.indices[0])], group["labels"][int(val.indices[0])], 255),
    )


def test_scenes_of_one_place_in_two_crss_share_the_split_and_hold_out_across(
    tmp_path: Path,
) -> None:
    """The scene and the same scene warped to UTM: their validation tiles cover the same ground,
    and no label a training tile keeps lies in a validation tile of either scene."""
    utm = tmp_path / "nebraska_utm.tif"
    with rasterio.open(PIVOTS / "nebraska_landsat_albers_30m.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32614", src.width, src.height, *src.bounds, resolution=30
        )
        profile = {**src.profile, "crs": "EPSG:32614", "transform": transform}
        with rasterio.open(utm, "w", **{**profile, "width": width, "height": height}) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band))
    store = tile(
        [str(PIVOTS / "nebraska_landsat_albers_30m.tif"), str(utm)],
        [str(PIVOTS / "pivots.gpkg")], str(CLASSES), tmp_path / "two.zarr",
        tile_size=128, overlap=16,
    )  # fmt: skip
    index = gpd.read_file(store / "tile_index.gpkg", layer="tiles").to_crs(ALBERS)
    val = index[index["split"] == "val"]
    areas = [shapely.union_all(val[val["scene"] == s].geometry) for s in (0, 1)]
    assert areas[0].area > 0 and areas[0].intersection(areas[1]).area > 0.8 * areas[0].area
    group = zarr.open_group(str(store), mode="r")
    windows, train = group["window"][:], TileDataset(store, "train")
    scenes = [rasterio.open(PIVOTS / "nebraska_landsat_albers_30m.tif"), rasterio.open(utm)]
    inside = shapely.union_all(val.geometry).buffer(-20)  # within a pixel of its edge: either
    kept = 0
    for i in range(len(train)):
        t = int(train.indices[i])
        scene = scenes[int(index["scene"][t])]
        rows, cols = np.nonzero(train[i]["label"].numpy() != 255)
        col, row = windows[t][:2]
        xs, ys = rasterio.transform.xy(scene.transform, rows + row, cols + col)
        xs, ys = rasterio.warp.transform(scene.crs, ALBERS, xs, ys)
        assert not shapely.contains_xy(inside, xs, ys).any(), t
        kept += len(xs)
    assert kept > 0


def test_d4_has_eight_distinct_elements() -> None:
    a = np.arange(9).reshape(3, 3)
    images = {d4(a, k).tobytes() for k in range(8)}
    assert len(images) == 8 and np.array_equal(d4(a, 0), a)


def test_dataset_pickles_and_loads_in_a_worker(store: Path) -> None:
    ds = TileDataset(store, "train", augment=True)
    _ = ds[0]  # opens the arrays in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[0]["image"], ds[0]["image"])
    loader = DataLoader(ds, batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 128, 128) and batch["label"].shape == (2, 128, 128)


def test_normalization_override_and_bad_store(store: Path, tmp_path: Path) -> None:
    stats = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0,) * 3, (1.0,) * 3)
    ds = TileDataset(store, "all", normalization=stats)
    raw = zarr.open_group(str(store), mode="r")["images"][0]
    valid = ds[0]["valid"].numpy()
    assert np.array_equal(ds[0]["image"].numpy()[:, valid], raw[:, valid].astype(np.float32))
    with pytest.raises(InputError, match="not a tile store"):
        TileDataset(tmp_path)
    with pytest.raises(ValueError, match="split"):
        TileDataset(store, "test")


def test_normalize_numpy_and_torch_agree() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, (2, 3, 8, 8)).astype(np.float32)
    x[0, 1, 0, 0], x[0, 0, 2, 2], x[1, 2, 1, 1] = np.nan, np.inf, -np.inf
    valid = np.ones((2, 8, 8), dtype=bool)
    valid[1, 4:] = False
    mean, std = [100.0, 90.0, 80.0], [20.0, 0.0, 10.0]
    a = normalize(x, mean, std, valid)
    b = normalize(torch.from_numpy(x), mean, std, torch.from_numpy(valid))
    assert a.dtype == np.float32 and b.dtype == torch.float32
    assert np.allclose(a, b.numpy())
    assert np.all(a[1, :, 4:] == 0) and a[0, 1, 0, 0] == a[0, 0, 2, 2] == a[1, 2, 1, 1] == 0
    assert np.allclose(a[0, 2], (x[0, 2] - 80) / 10) and np.allclose(a[0, 1, 1:], x[0, 1, 1:] - 90)
    assert normalize(x[0], mean, std).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="3 bands"):
        normalize(x[:, :2], mean, std)
