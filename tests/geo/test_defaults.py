"""Defaults that learn and explain themselves: band roles from the data, tile sizes that suit
the scenes, warnings when a scene or a trained model is off."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
import zarr
from affine import Affine

from flows.run_names import finetune_run
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.metrics import one_class_warning
from geo.contracts.tile_store import StoreInfo
from geo.errors import InputError
from geo.finetune import FinetuneConfig, check_finetune
from geo.finetune.train import model_config
from geo.io.raster import SceneInfo, scene_info
from geo.predict.familiar import unfamiliar
from geo.predict.scene import prepare_scene
from geo.tiling import TileConfig, check_tiling
from geo.tiling.inputs import auto_tile_size
from tests.support.cli import write_like
from tests.support.models import ToyModel, metadata_for
from tests.support.paths import (
    BUILDINGS_CLASSES,
    DATA,
    FTW,
    RGB_BYTE,
    SPACENET,
    SPACENET_LABELS,
)
from tests.support.predict import predict_image
from tests.support.stores import tile
from tests.support.tiny_sam import save_tiny_sam

NAIP = DATA / "naip_north_dakota_5m" / "naip_2018_crop_256.tif"


def vegetation_labels(scene: Path, dest: Path) -> Path:
    """A label raster on the scene's grid: 1 where NDVI > 0.3 (bands 1 red, 4 near-infrared)."""
    with rasterio.open(scene) as src:
        red, nir = src.read(1).astype(float), src.read(4).astype(float)
        profile = {**src.profile, "count": 1, "nodata": None}
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    with rasterio.open(dest, "w", **profile) as dst:
        dst.write((ndvi > 0.3).astype("uint8"), 1)
    return dest


def test_the_sam_variant_follows_the_checkpoint(tmp_path: Path) -> None:
    """`--sam auto`: the tiny SAM trained in full without a checkpoint; with one, the variant its
    tensors hold, with Conv-LoRA adapters (the run is named so); a checkpoint of no known variant
    is one line naming --sam."""
    labels = vegetation_labels(NAIP, tmp_path / "veg.tif")
    classes = [{"name": "other", "values": [0]}, {"name": "vegetation", "values": [1]}]
    store = str(tile([NAIP], [labels], classes, tmp_path / "naip.zarr", dask_address="sync"))
    plan = check_finetune(FinetuneConfig(store=store, out=str(tmp_path / "scratch")))
    assert (plan.model.sam_variant, plan.model.adapter) == ("tiny", "full")
    checkpoint = save_tiny_sam(tmp_path / "sam_tiny.pth")
    config = FinetuneConfig(store=store, out=str(tmp_path / "run"), sam_checkpoint=str(checkpoint))
    plan = check_finetune(config)
    assert (plan.model.sam_variant, plan.model.adapter) == ("tiny", "conv-lora")
    assert plan.model.mask_token_init == "copy"
    scenes = {"images": ["a.tif"], "out": "runs/fields"}
    assert finetune_run(scenes) == "a.tif -> fields (tiny full)"
    assert finetune_run({**scenes, "sam_checkpoint": str(checkpoint)}) == (
        "a.tif -> fields (sam_tiny.pth conv-lora)"
    )
    state = torch.load(checkpoint, weights_only=True)
    shallow = {k: v for k, v in state.items() if not k.startswith("image_encoder.blocks.3.")}
    torch.save(shallow, tmp_path / "shallow.pth")
    odd = config.model_copy(update={"sam_checkpoint": str(tmp_path / "shallow.pth")})
    with pytest.raises(InputError, match="not a checkpoint of a SAM variant this tool knows"):
        check_finetune(odd)


def test_training_tiles_whose_labels_all_lie_in_validation_tiles_are_refused(
    tmp_path: Path,
) -> None:
    """The scene at 5 m and at 10 m, one 256 px tile each: one tile goes to validation, the other
    covers the same ground, so no training label is left; `train` says so before any work."""
    coarse = tmp_path / "naip_10m.tif"
    with rasterio.open(NAIP) as src:
        profile = {**src.profile, "width": 128, "height": 128,
                   "transform": src.transform @ src.transform.scale(2)}  # fmt: skip
        with rasterio.open(coarse, "w", **profile) as dst:
            dst.write(src.read(out_shape=(src.count, 128, 128)))
    labels = [vegetation_labels(s, tmp_path / f"veg{i}.tif") for i, s in enumerate((NAIP, coarse))]
    classes = [{"name": "other", "values": [0]}, {"name": "vegetation", "values": [1]}]
    store = tile([NAIP, coarse], labels, classes, tmp_path / "two.zarr", tile_size=256)
    with pytest.raises(InputError, match="every labelled pixel of its training tiles lies in a"):
        check_finetune(FinetuneConfig(store=str(store), out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_naip_like_bands_without_descriptions_feed_rgb_from_bands_1_2_3(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with rasterio.open(NAIP) as src:
        assert src.count == 4 and src.descriptions == (None,) * 4
    labels = vegetation_labels(NAIP, tmp_path / "veg.tif")
    classes = [{"name": "other", "values": [0]}, {"name": "vegetation", "values": [1]}]
    store = tile([NAIP], [labels], classes, tmp_path / "naip.zarr", dask_address="sync")
    config = FinetuneConfig(store=str(store), out=str(tmp_path / "run"), sam="tiny")
    with caplog.at_level(logging.INFO, logger="geo"):
        plan = check_finetune(config)
    assert plan.model.band_init == (0, 1, 2) and plan.model.in_channels == 4
    assert "R=band 1, G=band 2, B=band 3, the first three" in caplog.text
    assert plan.model.image_size == plan.store.tile_size == 128  # the store's tile size
    assert plan.model.mask_token_init == "copy+noise"  # no SAM checkpoint: queries told apart
    assert plan.model.adapter == "full"  # no SAM checkpoint: the encoder must learn too
    pretrained = config.model_copy(update={"sam_checkpoint": str(tmp_path / "sam_tiny.pth")})
    assert model_config(pretrained, plan.store).adapter == "conv-lora"  # the official recipe
    assert plan.train.lr == 3e-4  # from scratch


def fake_scene(width: int, height: int) -> SceneInfo:
    return SceneInfo("scene.tif", width, height, 3, "uint8", None, (1, 0, 0, 0, -1, 0), None, ())


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([(10980, 10980)], 1024),  # a Sentinel-2 tile: SAM's native size
        ([(934, 724)], 256),  # a NAIP quarter quad: 20 tiles of 256 px, not 1 padded tile
        ([(512, 512)], 256),
        ([(256, 256)], 128),  # nine tiles for a validation split, not one
        ([(283, 259)], 128),  # four tiles of 256 px are too few too
        ([(128, 128)] * 100, 128),  # AgNet-like chips: one tile each, never padded
        ([(100, 60)], 112),
    ],
)
def test_the_automatic_tile_size_suits_the_scenes(sizes: list, expected: int) -> None:
    assert auto_tile_size([fake_scene(w, h) for w, h in sizes]) == expected


def test_a_scene_unlike_the_training_data_is_described(tmp_path: Path) -> None:
    """A Sentinel-2 stack (uint16, 10 m) against a model trained on Landsat (uint8, 300 m); then
    the same stack as reflectance (0..1) against a model trained on it as digital numbers."""
    trained = replace(metadata_for(RGB_BYTE, [1, 2, 3]), dtype="uint8", pixel_size_m=300.0)
    notes = unfamiliar(scene_info(str(FTW)), trained)
    assert any("uint16 where training scenes were uint8" in n for n in notes)
    assert any("pixels are 10 m where training pixels were 300 m" in n for n in notes)
    assert unfamiliar(scene_info(str(RGB_BYTE)), trained) == []
    bare = write_like(RGB_BYTE, tmp_path / "bare.tif", crs=None, transform=Affine.identity())
    georeferenced = replace(trained, pixel_size_m=None, georeferenced=True)
    assert unfamiliar(scene_info(str(bare)), georeferenced) == [
        "it has no CRS where training scenes had one (areas in pixels)"
    ]
    reflectance = tmp_path / "reflectance.tif"
    with rasterio.open(FTW) as src:
        profile = {**src.profile, "dtype": "float32", "nodata": None}
        data = src.read().astype("float32") / 10000
    with rasterio.open(reflectance, "w", **profile) as dst:
        dst.write(data)
    numbers = replace(metadata_for(FTW, [1, 2, 3, 4]), dtype="float32")
    notes = unfamiliar(scene_info(str(reflectance)), numbers)
    assert len(notes) == 4 and all("far from the training range" in n for n in notes)


def test_bands_named_otherwise_than_in_training_are_described(tmp_path: Path) -> None:
    """A NAIP scene stacked red, green, blue, nir for training and blue, green, red, nir later
    (as two STAC stacks of other asset orders would be): the swapped bands are named. Names of
    another convention (B04 for red) say nothing of the order and are not compared."""
    with rasterio.open(NAIP) as src:
        profile, data = src.profile, src.read()

    def stack(name: str, order: list[str]) -> Path:
        path = tmp_path / name
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = tuple(order)
        return path

    trained_on = stack("rgbn.tif", ["red", "green", "blue", "nir"])
    reordered = stack("bgrn.tif", ["blue", "green", "red", "nir"])
    trained = replace(metadata_for(NAIP, [1, 2, 3]), band_names=("red", "green", "blue"))
    assert unfamiliar(scene_info(str(trained_on)), trained) == []
    assert unfamiliar(scene_info(str(NAIP)), trained) == []  # no names: nothing to compare
    assert unfamiliar(scene_info(str(reordered)), trained) == [
        "band 1 is named 'blue' where it was 'red' in training ('red' is band 3 here)",
        "band 3 is named 'red' where it was 'blue' in training ('blue' is band 1 here)",
    ]
    other_convention = stack("b4b3b2b8.tif", ["B04", "B03", "B02", "B08"])
    assert unfamiliar(scene_info(str(other_convention)), trained) == []


def naip_stack(path: Path, order: list[int], names: list[str]) -> Path:
    """The NAIP scene's bands in `order` (1-based), described by `names`, written to `path`."""
    with rasterio.open(NAIP) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[[b - 1 for b in order]])
        dst.descriptions = tuple(names)
    return path


def test_scenes_of_a_store_are_read_by_band_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """NAIP stacked red, green, blue, nir and the same pixels stacked blue, green, red, nir, in
    one store: the second scene's bands are read by name (logged), so both scenes' tiles hold
    the same pixels (by number, the second went in with red and blue swapped, silently)."""
    rgbn = naip_stack(tmp_path / "rgbn.tif", [1, 2, 3, 4], ["red", "green", "blue", "nir"])
    bgrn = naip_stack(tmp_path / "bgrn.tif", [3, 2, 1, 4], ["Blue", "green", "red ", "nir"])
    labels = vegetation_labels(NAIP, tmp_path / "veg.tif")
    classes = [{"name": "other", "values": [0]}, {"name": "vegetation", "values": [1]}]
    with caplog.at_level(logging.INFO, logger="geo"):
        store = tile([rgbn, bgrn], [labels, labels], classes, tmp_path / "s.zarr",
                     dask_address="sync")  # fmt: skip
    assert f"{bgrn}: bands read by name, as {rgbn} has them: red = band 3" in caplog.text
    group = zarr.open_group(str(store), mode="r")
    scenes, images = group["scene"][:], group["images"][:]
    assert np.array_equal(images[scenes == 0], images[scenes == 1])
    assert StoreInfo.read(store).settings["scene_bands"] == {str(bgrn): [3, 2, 1, 4]}


def test_bands_named_as_in_training_are_read_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same NAIP scene stacked blue, green, red, nir instead of red, green, blue, nir: its
    bands are read by name, so the predictions equal those of the training order, with no
    warning; without names, or with a name twice, bands are taken by number."""
    trained_on = naip_stack(tmp_path / "rgbn.tif", [1, 2, 3, 4], ["red", "green", "blue", "nir"])
    reordered = naip_stack(tmp_path / "bgrn.tif", [3, 2, 1, 4], ["Blue", "green", "red ", "nir"])
    trained = replace(metadata_for(NAIP, [1, 2, 3]), band_names=("red", "green", "blue"))
    with caplog.at_level(logging.INFO, logger="geo"):
        scene = prepare_scene(str(reordered), trained)
    assert scene.bands == (3, 2, 1)
    assert "bands read by name, in training's order: red = band 3, green = band 2" in caplog.text
    assert unfamiliar(scene.info, trained, scene.bands) == []
    assert prepare_scene(str(trained_on), trained).bands == (1, 2, 3)
    twice = naip_stack(tmp_path / "twice.tif", [3, 2, 1, 4], ["blue", "green", "red", "red"])
    assert prepare_scene(str(twice), trained).bands == (1, 2, 3)
    assert prepare_scene(str(NAIP), trained).bands == (1, 2, 3)  # no names
    model = ToyModel(3)
    outputs = [
        predict_image(image, model, trained, tmp_path / image.stem, min_area=0.0)
        for image in (trained_on, reordered)
    ]
    for kind in ("classes", "probability"):
        with rasterio.open(outputs[0][kind]) as a, rasterio.open(outputs[1][kind]) as b:
            assert np.array_equal(a.read(), b.read()), kind


def test_a_model_that_predicts_one_class_everywhere_is_called_out() -> None:
    flat = {"predicted_share": {"background": 0.995, "pivot": 0.005}}
    assert "predicts background for 99.5% of the validation pixels" in one_class_warning(flat)
    assert "of the labelled pixels" in one_class_warning(flat, pixels="labelled")
    assert one_class_warning({"predicted_share": {"background": 0.8, "pivot": 0.2}}) is None
    assert one_class_warning(None) is None
    assert "try --class-weights auto" in one_class_warning(flat)
    assert "class-weights" not in one_class_warning(flat, weighted=True)  # weighed already


def test_a_rare_class_is_named_with_class_weights_suggested(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SpaceNet Atlanta's buildings are 3.9 % of the labelled training pixels (a tiny SAM
    trained on them predicts no building): training names the class and suggests `auto`
    weights, which, given, replace the warning."""
    store = tile([SPACENET], [SPACENET_LABELS], BUILDINGS_CLASSES, tmp_path / "a.zarr",
                 tile_size=256)  # fmt: skip
    config = FinetuneConfig(store=str(store), out=str(tmp_path / "run"), sam="tiny")
    with caplog.at_level(logging.INFO, logger="geo"):
        check_finetune(config)
    assert (
        "rare class(es) building: under 5% of the labelled training pixels; --class-weights "
        "auto weights the loss by class frequency"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="geo"):
        plan = check_finetune(config.model_copy(update={"class_weights": "auto"}))
    assert "rare class" not in caplog.text
    assert "class weights from training label frequencies" in caplog.text
    weights = plan.train.class_weights
    assert weights is not None and weights[1] > weights[0]


def test_scenes_of_other_bands_or_pixels_are_warned_about_at_tiling_and_prediction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bands are read by number from every scene. Tiling warns about a scene with another
    number of bands (NAIP with a fifth band) or whose tiled bands are named otherwise (blue,
    green, red where the first scene has red, green, blue), of another pixel type (reflectance
    as float32 beside bytes) or of another pixel size (10 m beside 5 m); the store and the
    model record the training scenes' band count, and a scene of another count is described at
    prediction."""
    with rasterio.open(NAIP) as src:
        profile, data = src.profile, src.read()

    def stack(name: str, pixels: np.ndarray, names: list[str] | None = None) -> Path:
        path = tmp_path / name
        with rasterio.open(path, "w", **{**profile, "count": len(pixels)}) as dst:
            dst.write(pixels)
            if names:
                dst.descriptions = tuple(names)
        return path

    labels = vegetation_labels(NAIP, tmp_path / "veg.tif")
    classes = [{"name": "other", "values": [0]}, {"name": "vegetation", "values": [1]}]
    five = stack("five.tif", np.concatenate([data, data[3:]]))
    rgbn = stack("rgbn.tif", data, ["red", "green", "blue", "nir"])
    bgrn = stack("bgrn.tif", data[[2, 1, 0, 3]], ["blue", "green", "red", "nir"])

    def tiling_warnings(scenes: list[Path]) -> list[str]:
        caplog.clear()
        config = TileConfig.parse(
            {"images": [str(s) for s in scenes], "labels": [str(labels)] * len(scenes),
             "class_map": str(tmp_path / "c.yaml"), "out": str(tmp_path / "s.zarr")}
        )  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="geo"):
            check_tiling(config)
        return [r.getMessage() for r in caplog.records if "bands" in r.getMessage()]

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"classes": classes}))
    assert tiling_warnings([NAIP, NAIP]) == []
    assert tiling_warnings([rgbn, NAIP]) == []  # no names to compare
    (counted,) = tiling_warnings([NAIP, five])
    assert f"1 scene(s) have another number of bands than {NAIP} (4): {five} has 5" in counted
    assert "bands 1, 2, 3, 4 are read by number from each" in counted
    other_convention = stack("b4b3b2b8.tif", data, ["B04", "B03", "B02", "B08"])
    (named,) = tiling_warnings([rgbn, other_convention])
    assert f"band 1 of {other_convention} is 'B04' where it is 'red'" in named
    assert tiling_warnings([rgbn, bgrn]) == []  # the same names elsewhere: read by name

    def other_pixels(scenes: list[Path]) -> list[str]:
        tiling_warnings(scenes)
        return [r.getMessage() for r in caplog.records if "other pixel" in r.getMessage()]

    reflectance = tmp_path / "reflectance.tif"
    with rasterio.open(reflectance, "w", **{**profile, "dtype": "float32"}) as dst:
        dst.write(data.astype("float32") / 255)
    coarse = tmp_path / "coarse.tif"
    a = profile["transform"]
    with rasterio.open(coarse, "w", **{**profile, "transform": a @ Affine.scale(2)}) as dst:
        dst.write(data)
    assert other_pixels([NAIP, NAIP]) == []
    (typed,) = other_pixels([NAIP, reflectance])
    assert (
        f"1 scene(s) hold other pixel types than {NAIP} (uint8): {reflectance} is float32" in typed
    )
    (sized,) = other_pixels([NAIP, coarse])
    assert f"1 scene(s) have other pixel sizes than {NAIP} (5 m): {coarse} has 10 m" in sized

    store = tile([NAIP], [labels], classes, tmp_path / "naip.zarr", dask_address="sync")
    info = StoreInfo.read(store)
    assert info.scene_band_count == 4
    trained = replace(
        metadata_for(NAIP, [1, 2, 3, 4]),
        scene_band_count=AdapterMetadata.from_store(info)["scene_band_count"],
    )
    assert unfamiliar(scene_info(str(NAIP)), trained) == []
    assert unfamiliar(scene_info(str(five)), trained) == [
        "it has 5 bands where training scenes had 4, and bands 1, 2, 3, 4 are read by number "
        "(do they hold the same bands?)"
    ]
