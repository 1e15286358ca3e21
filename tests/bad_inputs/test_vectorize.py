"""`convlora-geo vectorize`: a class raster into polygons through the real CLI, and bad input
refused up front with one line, nothing written and existing outputs untouched."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from geo.contracts.adapter import class_map_of
from geo.contracts.classes import CLASSES_TAG, SCORE_BAND
from tests.support.cli import garbled, refused, run_cli, write_like
from tests.support.paths import EXAMPLES, FTW, FTW_PREDICTION, PIVOT_MASK, RGB_BYTE

FTW_MAP = EXAMPLES / "ftw_classes.yaml"


def vectorize(*extra: object) -> list[object]:
    return ["vectorize", FTW_PREDICTION, "--class-map", FTW_MAP, *extra]


def test_ftw_prediction_to_geopackage_and_fiboa(work: Path) -> None:
    """Also read through a GDAL virtual path (`/vsizip/`), whose `//` must stay as given."""
    code, err = run_cli(*vectorize("--out", work / "fields.gpkg"))
    assert code == 0, err
    gpkg = gpd.read_file(work / "fields.gpkg", layer="polygons")
    assert len(gpkg) == 267 and set(gpkg.class_name) == {"field"}  # 272 fields, 5 under 4 px
    code, err = run_cli(*vectorize("--out", work / "new" / "fields.parquet", "--min-area", "0"))
    assert code == 0, err  # its folder created, as predict's and tile's are
    assert len(gpd.read_parquet(work / "new" / "fields.parquet")) == 272
    code, err = run_cli(*vectorize("--out", work / "other" / "new" / "fields.gpkg"))
    assert code == 0, err
    assert len(gpd.read_file(work / "other" / "new" / "fields.gpkg", layer="polygons")) == 267
    zipped = work / "earlier" / "prediction.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(FTW_PREDICTION, FTW_PREDICTION.name)
    code, err = run_cli("vectorize", f"/vsizip/{zipped}/{FTW_PREDICTION.name}", "--class-map",
                        FTW_MAP, "--out", work / "zipped.gpkg")  # fmt: skip
    assert code == 0, err
    assert len(gpd.read_file(work / "zipped.gpkg", layer="polygons")) == 267
    code, err = run_cli(*vectorize("--out", work / "any.name", "--format", "parquet"))
    assert code == 2 and "a parquet file ends in .parquet" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (lambda w: vectorize("--out", w / "earlier"), "is a folder; give a file name"),
        (lambda w: vectorize("--out", w / "earlier" / "result.txt"), "exists; pass --overwrite"),
        (lambda w: vectorize("--out", w / "fields"),
         "fields: give a file name ending in .gpkg (GeoPackage), or .parquet or .geoparquet (fiboa "
         "GeoParquet)"),
        (lambda w: ["vectorize", "absent.tif", "--class-map", FTW_MAP, "--out", w / "f.gpkg"],
         "absent.tif: class raster not found"),
        (lambda w: ["vectorize", FTW, "--class-map", FTW_MAP, "--out", w / "f.gpkg"],
         "a class raster has one band, this one has 8"),
        (lambda w: vectorize("--out", w / "f.gpkg", "--scores", PIVOT_MASK),
         "not on the grid of"),
        (lambda w: vectorize("--out", w / "f.gpkg", "--class-map", w / "earlier" / "result.txt"),
         "result.txt: expected a list of classes"),
        (lambda w: vectorize("--out", w / "f.gpkg", "--min-area", "-1"),
         "--min-area -1.0: Input should be greater than or equal to 0"),
    ],
    ids=[
        "folder", "exists", "no-suffix", "missing", "bands", "scores-grid", "class-map", "min-area"
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_any_work(work: Path, argv, message: str) -> None:
    refused(work, argv(work), message)


def test_a_probability_raster_is_not_taken_for_class_ids(work: Path, tmp_path: Path) -> None:
    """Values no class of the map has (here 0..255 against 3 classes) are refused up front."""
    one_band = tmp_path / "probability.tif"
    with rasterio.open(RGB_BYTE) as src:
        profile = {**src.profile, "count": 1}
        with rasterio.open(one_band, "w", **profile) as dst:
            dst.write(src.read(1), 1)
    refused(
        work, ["vectorize", one_band, "--class-map", FTW_MAP, "--out", work / "f.gpkg"],
        "but the class map's class ids are 0 to 2; a class raster holds class ids",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("float32", -3.4028234663852886e38), ("int16", -1)],
    ids=["float", "int16"],
)
def test_a_class_raster_saved_as_another_type_gives_the_same_polygons(
    work: Path, tmp_path: Path, dtype: str, nodata: float
) -> None:
    """The FTW prediction as QGIS's raster calculator saves it (float32, its lowest value as
    nodata) or as an int16 map with nodata -1: the polygons of the byte raster, nodata left out."""
    edited = tmp_path / f"edited_{dtype}.tif"
    with rasterio.open(FTW_PREDICTION) as src:
        classes = src.read(1).astype(dtype)
        classes[:40, :60] = nodata  # a corner cut away
        with rasterio.open(edited, "w", **{**src.profile, "dtype": dtype, "nodata": nodata}) as dst:
            dst.write(classes, 1)
        byte = tmp_path / "byte.tif"
        with rasterio.open(byte, "w", **{**src.profile, "nodata": 255}) as dst:
            dst.write(np.where(classes == nodata, 255, classes).astype("uint8"), 1)
    frames = []
    for raster in (byte, edited):
        out = tmp_path / f"{raster.stem}.gpkg"
        code, err = run_cli("vectorize", raster, "--class-map", FTW_MAP, "--out", out)
        assert code == 0, err[-3000:]
        frames.append(gpd.read_file(out, layer="polygons"))
    assert 200 < len(frames[0]) < 267  # the corner's fields are gone
    assert frames[1].drop(columns="source").equals(frames[0].drop(columns="source"))


def test_without_a_class_map_a_raster_of_other_values_is_refused(
    work: Path, tmp_path: Path
) -> None:
    """Without --class-map the raster's ids are its classes: a probability or image band (more
    than 64 values; predict's probability raster by its band, whatever values it holds),
    fractional values and values past 254 (codes such as CDL's in an int16
    raster) are refused up front as no class ids."""
    with rasterio.open(RGB_BYTE) as src:
        band = src.read(1)[None]
    one_band = write_like(RGB_BYTE, tmp_path / "probability.tif", band, count=1)
    with rasterio.open(FTW_PREDICTION) as src:
        classes = src.read().astype("float32")
    halves = write_like(FTW_PREDICTION, tmp_path / "halves.tif", classes / 2, dtype="float32")
    refused(
        work, ["vectorize", one_band, "--out", work / "f.gpkg"],
        "probability.tif: holds more than 64 distinct class ids, too many for classes (a "
        "continuous raster?); a class raster holds class ids (predict's NAME_classes.tif, not "
        "NAME_probability.tif)",
    )  # fmt: skip
    sure = np.where(classes < 3, classes + 222, 0)  # a few values, as a weak model is sure
    scores = write_like(FTW_PREDICTION, tmp_path / "s_probability.tif", sure)
    with rasterio.open(scores, "r+") as dst:  # as predict writes it
        dst.set_band_description(1, SCORE_BAND)
    refused(
        work, ["vectorize", scores, "--out", work / "f.gpkg"],
        f"s_probability.tif: a probability raster ({SCORE_BAND}); a class raster holds class ids",
    )  # fmt: skip
    refused(
        work, ["vectorize", halves, "--out", work / "f.gpkg"],
        "halves.tif: holds value(s) 0.5, which are no class ids (whole numbers 0 to 254); a class "
        "raster holds class ids",
    )  # fmt: skip
    codes = write_like(FTW_PREDICTION, tmp_path / "codes.tif", (classes * 150).astype("int16"),
                       dtype="int16")  # fmt: skip
    refused(
        work,
        ["vectorize", codes, "--out", work / "f.gpkg"],
        "codes.tif: holds value(s) 300, which are no class ids (whole numbers 0 to 254)",
    )


def test_a_class_raster_of_fractional_values_is_refused(work: Path, tmp_path: Path) -> None:
    halves = tmp_path / "halves.tif"
    with rasterio.open(FTW_PREDICTION) as src:
        profile, classes = {**src.profile, "dtype": "float32"}, src.read(1)
    with rasterio.open(halves, "w", **profile) as dst:
        dst.write(classes.astype("float32") / 2, 1)
    refused(
        work, ["vectorize", halves, "--class-map", FTW_MAP, "--out", work / "f.gpkg"],
        "halves.tif: holds value(s) 0.5, but the class map's class ids are 0 to 2",
    )  # fmt: skip


def test_a_bad_boundary_width_names_the_class(work: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "classes:\n  - name: background\n  - name: field\n  - name: edge\n    boundary: 2 cm\n"
    )
    refused(work, vectorize("--out", work / "f.gpkg", "--class-map", bad),
            "class 'edge': boundary width '2 cm': give a positive width in px or m")  # fmt: skip


def test_a_raster_garbled_midway_is_one_line_naming_it(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class or score raster whose middle is garbled (its ends read fine, so it passes the
    checks that do not read every pixel) stops `vectorize` with one line naming that file, not
    a traceback naming the mosaic's temporary VRT; no output, no temporary folder left."""
    listed = json.dumps(class_map_of(str(FTW_MAP)).to_list())
    as_predicted = garbled(FTW_PREDICTION, tmp_path / "predicted_classes.tif")
    with rasterio.open(as_predicted, "r+") as dst:  # predict's own: its classes, not re-read
        dst.update_tags(**{CLASSES_TAG: listed})
    untagged = garbled(FTW_PREDICTION, tmp_path / "plain_classes.tif")
    scores = garbled(FTW_PREDICTION, tmp_path / "old_probability.tif")
    clean = write_like(FTW_PREDICTION, tmp_path / "probability.tif")  # its name inside the other's
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    for bad, argv in (
        (as_predicted, [as_predicted]),
        (untagged, [untagged]),
        (scores, [FTW_PREDICTION, FTW_PREDICTION, "--scores", clean, scores,
                  "--class-map", FTW_MAP]),
    ):  # fmt: skip
        line = refused(work, ["vectorize", *argv, "--out", work / "f.gpkg"],
                       f"{bad}: corrupt or truncated raster (read failed")  # fmt: skip
        assert str(temporary) not in line and "re-download or re-export it" in line
        assert not list(temporary.iterdir())
