"""`convlora-geo tile` refuses bad input up front: one line, exit status 2, nothing written."""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path

import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from geo.errors import InputError, NoSpaceError
from geo.io.outputs import exclusive
from geo.tiling import TileConfig, check_tiling
from tests.support import stores
from tests.support.cli import mount_tmpfs, refused, run_cli, snapshot, write_like
from tests.support.paths import (
    AGNET_CLASSES,
    AGNET_LABEL,
    PIVOT_CLASSES,
    PIVOT_LABELS,
    PIVOTS,
    SCENE,
)


def tile(scene: object, out: Path, *extra: object, labels: object = PIVOT_LABELS) -> list:
    return [
        "tile", scene, "--labels", labels, "--class-map", PIVOT_CLASSES, "--out", out,
        "--tile-size", "128", "--overlap", "32", *extra,
    ]  # fmt: skip


WITHOUT_CLASS_MAP = ["tile", SCENE, "--out", "{out}", "--tile-size", "128"]

CASES = {
    "missing scene": (lambda b: tile("absent.tif", "{out}"), "absent.tif: image not found"),
    "not a raster": (lambda b: tile(b["notraster.tif"], "{out}"), "not a raster GDAL can read"),
    "truncated": (
        lambda b: tile(b["truncated.tif"], "{out}"),
        "truncated.tif: corrupt or truncated raster (read failed",
    ),
    "scene without CRS, labels with one": (
        lambda b: tile(b["nocrs.tif"], "{out}"),
        "nocrs.tif: the scene has no CRS, so vector labels cannot be placed on it",
    ),
    "labels outside the scene": (
        lambda b: tile(SCENE, "{out}", labels=PIVOTS / "pivots_original_crs_mislabelled.geojson"),
        "no features overlap scene",
    ),
    "empty label file": (
        lambda b: tile(SCENE, "{out}", labels=b["empty.gpkg"]),
        "empty.gpkg: the labels file has no features",
    ),
    "empty label file, a label field named": (
        lambda b: [
            "tile",
            SCENE,
            "--labels",
            b["empty.gpkg"],
            "--label-field",
            "crop",
            "--out",
            "{out}",
        ],
        "empty.gpkg: the labels file has no features",
    ),
    "a label field of 0 alone": (
        lambda b: [
            "tile",
            SCENE,
            "--labels",
            b["zero_codes.gpkg"],
            "--label-field",
            "code",
            "--out",
            "{out}",
        ],
        "zero_codes.gpkg: every value of --label-field code is 0, the background: no class to "
        "learn; give a --class-map that names the class of these features",
    ),
    "zero-byte label file": (
        lambda b: tile(SCENE, "{out}", labels=b["zero_bytes.gpkg"]),
        "zero_bytes.gpkg: not a vector file OGR can read",
    ),
    "missing label field": (
        lambda b: tile(SCENE, "{out}", "--label-field", "crop"),
        "pivots.gpkg: no field 'crop' (fields: id)",
    ),
    "band out of range": (
        lambda b: tile(SCENE, "{out}", "--bands", "3,4"),
        "band 4 out of range (the scene has bands 1..3)",
    ),
    "all nodata": (
        lambda b: [
            "tile",
            b["nodata.tif"],
            "--labels",
            AGNET_LABEL,
            "--class-map",
            AGNET_CLASSES,
            "--out",
            "{out}",
            "--tile-size",
            "64",
            "--overlap",
            "0",
        ],  # fmt: skip
        "nodata.tif: no valid pixel in bands [1, 2, 3, 4, 5, 6, 7] (all nodata?)",
    ),
    "tile size not a multiple of 16": (
        lambda b: [*tile(SCENE, "{out}"), "--tile-size", "120"],
        "--tile-size 120: must be a positive multiple of 16 (try 112 or 128)",
    ),
    "tile size too large": (
        lambda b: [*tile(SCENE, "{out}"), "--tile-size", "8192"],
        "--tile-size 8192: must be at most 4096",
    ),
    "overlap half the tile": (
        lambda b: [*tile(SCENE, "{out}"), "--overlap", "64"],
        "--overlap 64: must be at least 0 and less than half the tile size 128",
    ),
    "missing class map": (
        lambda b: [*tile(SCENE, "{out}"), "--class-map", "absent.yaml"],
        "absent.yaml: class map file not found",
    ),
    "output is a file": (lambda b: tile(SCENE, "{work}/earlier/result.txt"), "result.txt"),
    "--overwrite on a folder that is not a tile store": (
        lambda b: tile(SCENE, "{work}", "--overwrite"),
        "work: exists and is not a tile store; write the store elsewhere (--overwrite replaces "
        "only tile stores)",
    ),
    "points as labels": (
        lambda b: tile(SCENE, "{out}", labels=b["points.gpkg"]),
        "points.gpkg: labels must be polygons, found 19 Point (buffer points and lines",
    ),
    "closed lines as labels (fields digitised as outlines)": (
        lambda b: tile(SCENE, "{out}", labels=b["outlines.gpkg"]),
        "outlines.gpkg: labels must be polygons, found 19 LineString, all closed: make polygons "
        "of them first (QGIS: Lines to Polygons; shapely.polygonize)",
    ),
    "a file of several layers without --label-layer": (
        lambda b: tile(SCENE, "{out}", labels=b["two_layers.gpkg"]),
        "two_layers.gpkg: holds 2 layers (pivots, wells); name the labels layer with --label-layer",
    ),
    "a scene georeferenced by RPCs, not a grid": (
        lambda b: tile(b["rpcs.tif"], "{out}"),
        "rpcs.tif: georeferenced by RPCs, not a pixel grid; orthorectify it first (gdalwarp -rpc",
    ),
    "an --aoi file of several layers": (
        lambda b: tile(SCENE, "{out}", "--aoi", b["two_layers.gpkg"]),
        "two_layers.gpkg: holds 2 layers (pivots, wells); give the aoi as a file of one layer",
    ),
    "the layer named does not exist": (
        lambda b: tile(SCENE, "{out}", "--label-layer", "roads", labels=b["two_layers.gpkg"]),
        "two_layers.gpkg: no layer 'roads' (layers: pivots, wells)",
    ),
    "a continuous raster as labels, without a class map": (
        lambda b: [*WITHOUT_CLASS_MAP, "--labels", b["continuous.tif"]],
        "continuous.tif: holds more than 64 distinct label codes, too many for classes (a "
        "continuous raster?); give a --class-map that groups them",
    ),
    "a label raster of zeros, without a class map": (
        lambda b: [*WITHOUT_CLASS_MAP, "--labels", b["zeros.tif"]],
        "zeros.tif: holds only code 0 (and nodata), no class to learn; give a --class-map if 0 "
        "is a class",
    ),
    "a missing label raster without a class map": (
        lambda b: [*WITHOUT_CLASS_MAP, "--labels", "absent.tif"],
        "absent.tif: labels file not found",
    ),
    "a label field of too many values to be classes, without a class map": (
        lambda b: [*WITHOUT_CLASS_MAP, "--labels", b["many_values.gpkg"], "--label-field", "id"],
        "many_values.gpkg: --label-field id holds 76 distinct values, too many for classes; give "
        "a --class-map that groups them",
    ),
    "a label field that does not exist, without a class map": (
        lambda b: [*WITHOUT_CLASS_MAP, "--labels", PIVOT_LABELS, "--label-field", "crop"],
        "pivots.gpkg: no field 'crop' (fields: id)",
    ),
    "a class map with YAML aliases": (
        lambda b: [*tile(SCENE, "{out}"), "--class-map", b["aliases.yaml"]],
        "aliases.yaml: YAML aliases (*name) are not allowed in a class map",
    ),
    "bands separated by spaces": (
        lambda b: tile(SCENE, "{out}", "--bands", "3 2 1"),
        "argument --bands: expected comma-separated integers like 4,3,2, got '3 2 1'",
    ),
    "a negative seed": (
        lambda b: tile(SCENE, "{out}", "--split-seed", "-1"),
        "--split-seed -1: Input should be greater than or equal to 0",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_before_any_work(case: str, broken, work: Path) -> None:
    argv_of, message = CASES[case]
    argv = [str(a).format(out=work / "s.zarr", work=work) for a in argv_of(broken)]
    refused(work, argv, message)


def test_an_existing_store_of_other_inputs_is_kept(work: Path, tmp_path: Path) -> None:
    store = stores.tile(
        [SCENE], [PIVOT_LABELS], PIVOT_CLASSES, work / "s.zarr", tile_size=128, overlap=32,
        dask_address="sync",
    )  # fmt: skip
    argv = [*tile(SCENE, store), "--overlap", "16"]
    refused(
        work,
        argv,
        "s.zarr: already holds a tile store of other inputs or settings (--overlap 32, now 16)",
    )


def test_a_read_only_output_folder_is_refused(broken, readonly: Path) -> None:
    problem = "is not writable (Read-only file system; write elsewhere or fix"
    refused(readonly, tile(SCENE, readonly / "s.zarr"), problem)


def test_a_scene_on_ground_control_points_is_refused_with_a_command_to_paste(
    work: Path, tmp_path: Path
) -> None:
    """The `gdalwarp` command that puts such a scene on a grid is one a shell takes as it is,
    also for a CRS without an EPSG code (the Nebraska scene's Albers: its WKT, quoted)."""
    with rasterio.open(SCENE) as src:
        crs, (west, top) = src.crs, (src.bounds.left, src.bounds.top)
    gcps = write_like(SCENE, tmp_path / "gcps.tif", crs=None, transform=None)
    with rasterio.open(gcps, "r+") as dst:
        corners = [(0, 0), (0, dst.width), (dst.height, 0), (dst.height, dst.width)]
        dst.gcps = ([GroundControlPoint(r, c, west + 30 * c, top - 30 * r) for r, c in corners],
                    crs)  # fmt: skip
    line = refused(work, tile(gcps, work / "s.zarr"), "gcps.tif: georeferenced by 4 ground")
    command = shlex.split(line[line.index("(gdalwarp ") + 1 : line.rindex(")")])
    assert command[:2] == ["gdalwarp", "-t_srs"] and command[3:] == ["gcps.tif", "grid.tif"]
    assert CRS.from_user_input(command[2]) == crs and crs.to_epsg() is None


def test_a_folder_the_system_refuses_to_write_is_refused_up_front(work: Path) -> None:
    """Permissions do not say everything (root may write anywhere they say): /proc takes no
    new file, and that is found before any work, not by a traceback once the flow runs."""
    refused(work, tile(SCENE, Path("/proc/convlora-geo.zarr")), "/proc is not writable (")


def test_label_values_in_no_class_are_warned_about_before_tiling(
    broken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pre-flight check warns; tiling then ignores them (tests/flows/test_flow_failures.py
    runs the whole command, tests/geo/test_tiling.py checks the labels)."""
    with caplog.at_level(logging.WARNING, logger="geo"):
        check_tiling(
            TileConfig(
                images=[str(SCENE)], labels=[str(PIVOT_LABELS)],
                class_map=str(broken["one_id.yaml"]), out=str(tmp_path / "s.zarr"),
                tile_size=128, overlap=32, label_field="id",
            )
        )  # fmt: skip
    assert "pivots.gpkg: id value(s)" in caplog.text and "they become ignore" in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheduler", ["sync", None])
def test_a_scene_corrupt_in_the_middle_fails_mid_run_and_leaves_nothing(
    broken, work: Path, scheduler: str | None
) -> None:
    """Its first and last blocks read fine, so the pre-flight check passes; tiling then fails
    on the garbled strip with one line naming the file, and removes its temporary store (on
    Dask's threads, once the tasks still at work have ended)."""
    args = ([broken["corrupt.tif"]], [PIVOT_LABELS], PIVOT_CLASSES, work / "s.zarr")
    config = TileConfig(
        images=[str(broken["corrupt.tif"])], labels=[str(PIVOT_LABELS)],
        class_map=str(PIVOT_CLASSES), out=str(work / "s.zarr"), tile_size=128, overlap=32,
    )  # fmt: skip
    check_tiling(config)
    before = snapshot(work, dirs=False)
    with pytest.raises(InputError, match="corrupt.tif: corrupt or truncated raster") as err:
        stores.tile(*args, tile_size=128, overlap=32, dask_address=scheduler)
    assert "\n" not in str(err.value)
    assert snapshot(work, dirs=False) == before


def test_a_full_disk_fails_with_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Tiling into a 256 KiB tmpfs that holds an earlier output: NoSpaceError, no partial store,
    the earlier output intact (the CLI run of a full disk is in tests/flows)."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "256k")
    try:
        (disk / "earlier.txt").write_text("an earlier run's output\n")
        before = snapshot(disk, dirs=False)
        with pytest.raises(NoSpaceError, match="s.zarr: no space left on device") as err:
            stores.tile(
                [SCENE], [PIVOT_LABELS], PIVOT_CLASSES, disk / "s.zarr", tile_size=128,
                overlap=32, dask_address="sync",
            )  # fmt: skip
        assert "\n" not in str(err.value)
        assert snapshot(disk, dirs=False) == before
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_second_run_to_the_same_store_stops_with_one_line(work: Path) -> None:
    """While one run writes s.zarr (its lock held), another run to it is refused."""
    with exclusive(work / "s.zarr", "tile store"):
        code, err = run_cli(*tile(SCENE, work / "s.zarr"))
    assert code == 2 and "s.zarr: another run is writing this tile store now" in err
    assert "Traceback" not in err and not (work / "s.zarr").exists()
