"""Scene rasters: validated metadata and windowed reads that pad outside the scene."""

from __future__ import annotations

import logging
import math
import shlex
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from geo.errors import InputError, NothingToPredictError, UnreadableError
from geo.io.collar import detect_collar, outside_collar
from geo.io.storage import (
    NOT_FOUND,
    UNCACHED_REMOTE_ENV,
    gdal_env,
    gdal_path,
    is_url,
    unserved,
)

log = logging.getLogger(__name__)

GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
READ_CACHE = 2**20
"""GDAL's block cache for reads, in bytes (rasterio sets GDAL_CACHEMAX with GDALSetCacheMax64).
GDAL's default, 5 % of RAM, would grow with the scene; readers that reuse decoded blocks on
purpose (tiling's chains) ask for more."""
# Rasters without georeferencing, and nodata beside an alpha band (nodata wins, as we want),
# are expected: `open_raster` silences rasterio's warnings about them. Threads share warning
# filters and `catch_warnings` is not thread-safe (tiling opens rasters on several threads: one
# thread leaving it restores the filters under another's read), so these filters stay too.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
warnings.filterwarnings("ignore", category=NodataShadowWarning)
PIXEL_FRAME = Affine(1, 0, 0, 0, -1, 0)
"""Where QGIS shows a raster without georeferencing (no CRS, no geotransform): pixel (col, row)
at (col, -row), upright: such a scene's outputs and polygons are placed there too."""


def placed_transform(transform: Affine, crs: object | None) -> Affine:
    """A raster's transform, or PIXEL_FRAME for one without georeferencing (rasterio gives
    those the identity, which would put their vectors upside down under the raster in QGIS)."""
    return PIXEL_FRAME if crs is None and transform.is_identity else transform


def is_virtual(path: str) -> bool:
    """GDAL virtual paths (/vsis3/..., /vsicurl/...) and URLs: no local file to check."""
    return path.startswith("/vsi") or is_url(path)


def absolute(path: str) -> str:
    """A local path made absolute (user folder expanded); URLs and GDAL paths unchanged."""
    if is_virtual(path):
        return path
    return str(Path(path).expanduser().absolute())


@contextmanager
def open_raster(path: str, cache: int = READ_CACHE) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster (a path, a GDAL virtual path, or an s3/gs/az/http(s) URL read in windows
    through GDAL's virtual file systems) with a GDAL block cache of `cache` bytes; rasters
    without georeferencing, or with a nodata value beside an alpha band, open quietly."""
    env = {**GDAL_ENV, "GDAL_CACHEMAX": cache, **gdal_env(path)}
    with rasterio.Env(**env), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.simplefilter("ignore", NodataShadowWarning)  # nodata wins, as we want
        with rasterio.open(gdal_path(path)) as src:
            yield src


def check_exists(path: str, what: str) -> None:
    """Raise InputError when a local input path is missing (virtual paths are checked on open)."""
    if not is_virtual(path) and not Path(path).exists():
        raise InputError(f"{path}: {what} not found")


@dataclass(frozen=True)
class SceneInfo:
    """What tiling needs to know about one scene, without its pixels (picklable)."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str | None
    transform: tuple[float, ...]
    nodata: float | None
    band_names: tuple[str, ...]  # GDAL band descriptions, "" where a band has none
    color_interp: tuple[str, ...] = ()  # GDAL colour interpretation per band: "red", "gray", ...
    collar: float | None = None  # no data where every band holds it (`geo.io.collar`)
    offset: tuple[int, int] = (0, 0)  # (col, row) in the raster file of this scene's pixel 0, 0
    file_size: tuple[int, int] | None = None  # (width, height) of the file, when a cut of it

    def cut(self, window: Window) -> SceneInfo:
        """This scene reduced to a pixel window of it (an area of interest): its grid is the
        window's, and reads of it are offset into the file (`in_file`)."""
        col, row = int(window.col_off), int(window.row_off)
        return replace(
            self, width=int(window.width), height=int(window.height),
            transform=tuple(self.affine @ Affine.translation(col, row))[:6],
            offset=(self.offset[0] + col, self.offset[1] + row), file_size=self.file_extent,
        )  # fmt: skip

    @property
    def file_extent(self) -> tuple[int, int]:
        """(width, height) of the raster file (the scene's own unless it is a cut)."""
        return self.file_size or (self.width, self.height)

    @property
    def file_window(self) -> Window:
        """The whole scene as a window of its raster file."""
        return self.in_file(Window(0, 0, self.width, self.height))

    def in_file(self, window: Window) -> Window:
        """A window of this scene as a window of its raster file."""
        return Window(
            window.col_off + self.offset[0], window.row_off + self.offset[1],
            window.width, window.height,
        )  # fmt: skip

    @property
    def crs(self) -> CRS | None:
        return CRS.from_wkt(self.crs_wkt) if self.crs_wkt else None

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform[:6])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the scene in its CRS (pixel units without a CRS)."""
        return window_bounds(self.affine, Window(0, 0, self.width, self.height))

    @property
    def pixel_size(self) -> float:
        """The longer side of a pixel in CRS units (rotated and sheared grids included)."""
        t = self.affine
        return max(math.hypot(t.a, t.d), math.hypot(t.b, t.e))

    @property
    def outline(self) -> shapely.Polygon:
        """The scene's four corners in its CRS (rotated grids included)."""
        return window_polygon(self.affine, Window(0, 0, self.width, self.height))


def window_polygon(transform: Affine, window: Window) -> shapely.Polygon:
    """The four corners of a pixel window mapped through the full affine (rotation included)."""
    c0, r0 = window.col_off, window.row_off
    c1, r1 = c0 + window.width, r0 + window.height
    return shapely.Polygon(
        [transform @ (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1))]
    )


def window_bounds(transform: Affine, window: Window) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a pixel window: the box around its four mapped corners."""
    left, bottom, right, top = window_polygon(transform, window).bounds
    return left, bottom, right, top


def reads_remote(path: str) -> bool:
    """Whether reading `path` goes over the network: a GDAL virtual path or URL, or a VRT with
    such sources (an ingested STAC item's stack)."""
    if is_virtual(path):
        return True
    if not path.lower().endswith(".vrt"):
        return False
    try:
        with rasterio.open(path) as src:
            return any(is_virtual(f) for f in src.files)
    except RasterioIOError:
        return False


class RemoteReadError(ConnectionError):
    """A read of a remote raster failed (the network, a token that expired): an I/O error, which
    tasks retry, ingest retries on its next run and the CLI says in one line, not bad input."""


def read_failed(path: str, exc: Exception, where: str = "") -> Exception:
    """The error for a failed pixel read: InputError for a local file (it is corrupt or
    truncated); a remote read may fail for a moment, so its error is a RemoteReadError."""
    detail = str(exc.__cause__ or exc)
    for name in (path, Path(path).name):
        detail = detail.replace(f"{name}, ", "")
    if reads_remote(path):
        return RemoteReadError(f"{path}: a remote read failed{where} ({detail})")
    return UnreadableError(
        f"{path}: corrupt or truncated raster (read failed{where}: {detail})",
        "re-download or re-export it",
    )


def check_readable(src: rasterio.io.DatasetReader) -> None:
    """Read the first and the last block of every band: a truncated file fails here."""
    rows, cols = src.block_shapes[0]
    last = Window(
        (src.width - 1) // cols * cols, (src.height - 1) // rows * rows, cols, rows
    ).intersection(Window(0, 0, src.width, src.height))
    for window in (Window(0, 0, min(cols, src.width), min(rows, src.height)), last):
        try:
            src.read(window=window)
        except RasterioIOError as exc:
            raise read_failed(src.name, exc) from exc


def scene_info(path: str) -> SceneInfo:
    """Read a scene's metadata, raising InputError when it is missing, not a raster, or
    truncated (its first and last blocks are read)."""
    check_exists(path, "image")
    try:  # nothing cached of a remote file that fails: a retry in this process asks again
        with rasterio.Env(**UNCACHED_REMOTE_ENV), open_raster(path) as src:
            info = SceneInfo(
                path=path,
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=src.dtypes[0],
                crs_wkt=src.crs.to_wkt() if src.crs else None,
                transform=tuple(placed_transform(src.transform, src.crs))[:6],
                nodata=src.nodata,
                band_names=tuple(d or "" for d in src.descriptions),
                color_interp=tuple(c.name for c in src.colorinterp),
            )
    except RasterioIOError:
        why = unserved(path) if is_url(path) else None
        if why == NOT_FOUND:  # listed, then deleted
            raise InputError(f"{path}: {NOT_FOUND}") from None
        if why is not None:  # not the file's fault: a later run may read it
            raise RemoteReadError(f"{path}: could not be read ({why})") from None
        folder = None if is_url(path) else Path(path)
        if folder is not None and folder.is_dir():
            raise InputError(
                f"{path}: a folder, not a raster GDAL can read; give the scenes in it "
                f"({folder / '*.tif'})"
            ) from None
        raise UnreadableError(f"{path}: not a raster GDAL can read") from None
    with open_raster(path) as src:
        check_not_gcp_referenced(src, path)
        check_readable(src)
        collar = _collar(src)
    if collar is None:
        return info
    log.info(
        "%s declares no nodata value and its edges are %g in every band: pixels %g in every band "
        "are taken as no data, a fill collar (a nodata value set on the scene decides otherwise: "
        "rio edit-info --nodata VALUE %s)",
        path, collar, collar, Path(path).name,
    )  # fmt: skip
    return replace(info, collar=collar)


def _collar(src: rasterio.io.DatasetReader) -> float | None:
    try:
        return detect_collar(src)
    except RasterioIOError as exc:
        raise read_failed(src.name, exc, " at the scene's edge") from exc


def check_not_gcp_referenced(src: rasterio.io.DatasetReader, path: str) -> None:
    """Raise InputError for a raster georeferenced by ground control points or RPCs instead of a
    pixel grid: windows of its pixels have no place on the map, so outputs would have none."""
    if src.crs is not None or not src.transform.is_identity:
        return
    points, crs = src.gcps
    if points:
        target = _as_argument(crs) if crs else "EPSG:CODE"
        raise InputError(
            f"{path}: georeferenced by {len(points)} ground control points, not a pixel grid; "
            f"warp it onto one first (gdalwarp -t_srs {target} {Path(path).name} grid.tif)"
        )
    if src.rpcs:
        raise InputError(
            f"{path}: georeferenced by RPCs, not a pixel grid; orthorectify it first "
            f"(gdalwarp -rpc -t_srs EPSG:CODE {Path(path).name} grid.tif)"
        )


def _as_argument(crs: CRS) -> str:
    """A CRS as one shell argument: EPSG:CODE where it has a code, else its WKT, quoted."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code else shlex.quote(crs.to_wkt())


def check_bands(scene: SceneInfo, bands: Sequence[int]) -> None:
    """Raise InputError when a 1-based band index is outside the scene."""
    bad = [b for b in bands if not 1 <= b <= scene.count]
    if bad:
        raise InputError(
            f"{scene.path}: band {bad[0]} out of range (the scene has bands 1..{scene.count})"
        )


class Pixels(NamedTuple):
    """A window's pixels (C, H, W), its valid mask (H, W), and where pixels inside the scene held
    infinite values (H, W; invalid too; NaN is nodata in floating-point rasters)."""

    data: np.ndarray
    valid: np.ndarray
    infinite: np.ndarray


def read_window(
    src: rasterio.io.DatasetReader,
    window: Window,
    bands: Sequence[int],
    dtype: str,
    fill: float,
    collar: float | None = None,
) -> Pixels:
    """Read `bands` in `window` (which may pass the scene edge) with a valid mask.

    Only the part inside the scene is read; the rest is `fill` and invalid. Pixels equal to a
    band's nodata, NaN or infinite, masked by the dataset's internal mask, or equal to the
    scene's `collar` value in every band read are invalid too.
    """
    inner = window.intersection(Window(0, 0, src.width, src.height))
    try:
        part = src.read(list(bands), window=inner)
    except RasterioIOError as exc:
        at = f" at row {int(inner.row_off)}, column {int(inner.col_off)}"
        raise read_failed(src.name, exc, at) from exc
    ok = np.ones(part.shape[1:], dtype=bool)
    infinite = np.zeros(part.shape[1:], dtype=bool)
    if np.issubdtype(part.dtype, np.floating):
        infinite = np.isinf(part).any(axis=0)
        ok &= ~infinite & ~np.isnan(part).any(axis=0)
    for i, b in enumerate(bands):
        nodata = _comparable(src.nodatavals[b - 1], part.dtype)
        if nodata is not None:
            ok &= part[i] != nodata
    if any(rasterio.enums.MaskFlags.per_dataset in f for f in src.mask_flag_enums):
        ok &= src.dataset_mask(window=inner) > 0
    ok &= outside_collar(part, collar)
    part = part.astype(dtype, copy=False)
    if not ok.all():
        part[:, ~ok] = fill
    if (inner.height, inner.width) == (window.height, window.width):
        return Pixels(part, ok, infinite)  # all inside the scene: nothing to pad
    r0, c0 = int(inner.row_off - window.row_off), int(inner.col_off - window.col_off)
    inside = (slice(r0, r0 + int(inner.height)), slice(c0, c0 + int(inner.width)))
    shape = (int(window.height), int(window.width))
    data = np.full((len(bands), *shape), fill, dtype=dtype)
    valid, padded_infinite = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    data[(slice(None), *inside)], valid[inside], padded_infinite[inside] = part, ok, infinite
    return Pixels(data, valid, padded_infinite)


def _comparable(nodata: float | None, dtype: np.dtype) -> float | np.generic | None:
    """A band's nodata value to compare its pixels with: in their own integer type (a float
    would have every pixel converted to float64 first), None where no pixel can equal it."""
    if nodata is None or np.isnan(nodata):
        return None
    if not np.issubdtype(dtype, np.integer):
        return nodata
    info = np.iinfo(dtype)
    if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
        return None
    return dtype.type(nodata)


def fill_value(dtype: str, nodata: float | None) -> float:
    """The value written into padding and invalid pixels: nodata when the dtype holds it, else 0."""
    if nodata is None or np.isnan(nodata):
        return 0
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(np.dtype(dtype))
        return nodata if float(nodata).is_integer() and info.min <= nodata <= info.max else 0
    return nodata


EARTH_M_PER_DEGREE = 111_320.0
SAMPLE_WINDOW = 256
WINDOWS_PER_SCENE = 64


def sample_windows(scene: SceneInfo, rng: np.random.Generator) -> list[Window]:
    """Up to WINDOWS_PER_SCENE cells of a grid of SAMPLE_WINDOW px: all of a small scene, else
    distinct random ones (no pixel twice). Cells on that grid start on the blocks of tiled
    GeoTIFFs and COGs (256 or 512 px), so each decodes one block, not the four that a window at
    any offset straddles."""
    w, h = min(SAMPLE_WINDOW, scene.width), min(SAMPLE_WINDOW, scene.height)
    cols, rows = math.ceil(scene.width / w), math.ceil(scene.height / h)
    cells = np.arange(cols * rows)
    if len(cells) > WINDOWS_PER_SCENE:
        cells = np.sort(rng.choice(cells, WINDOWS_PER_SCENE, replace=False))
    return [
        Window(c * w, r * h, min(w, scene.width - c * w), min(h, scene.height - r * h))
        for r, c in (divmod(int(cell), cols) for cell in cells)
    ]


def sample_pixels(
    scene: SceneInfo, bands: Sequence[int], budget: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to `budget` valid pixels of a scene as (n, C) float64, from its sample windows."""
    windows = sample_windows(scene, rng)
    per_window = max(1, budget // len(windows))
    parts = []
    with open_raster(scene.path) as src:
        for window in windows:
            data, valid, _ = read_window(
                src, scene.in_file(window), bands, scene.dtype, 0, scene.collar
            )
            pixels = data[:, valid].T
            if len(pixels) > per_window:
                pixels = pixels[np.sort(rng.choice(len(pixels), per_window, replace=False))]
            parts.append(pixels.astype(np.float64))
    return np.concatenate(parts) if parts else np.empty((0, len(bands)))


ALPHA_OPAQUE_SHARE = 0.99  # of a true alpha band's visible pixels, fully opaque


def alpha_bands(scene: SceneInfo) -> list[int]:
    """1-based bands that are an alpha mask: tagged alpha by GDAL, and opaque (the type's
    largest value) wherever they show pixels. GDAL tags the 4th band of a 4-band 8-bit GeoTIFF
    written without PHOTOMETRIC as alpha, so an R,G,B,NIR stack saved that way is tagged too;
    its NIR, which holds image values, is not an alpha band."""
    tagged = [i for i, c in enumerate(scene.color_interp, start=1) if c == "alpha"]
    if not tagged or not np.issubdtype(np.dtype(scene.dtype), np.integer):
        return []
    opaque = np.iinfo(np.dtype(scene.dtype)).max
    pixels = sample_pixels(scene, tagged, 2**16, np.random.default_rng(0))
    if not len(pixels):
        return tagged
    share = (pixels == opaque).mean(axis=0)
    return [
        b
        for b, opaque_share in zip(tagged, share, strict=True)
        if opaque_share >= ALPHA_OPAQUE_SHARE
    ]


def pixel_size_m(scene: SceneInfo) -> float | None:
    """The side of a pixel in metres (geometric mean of its two sides; for degrees at the
    scene's centre), or None for a scene without a CRS."""
    crs = scene.crs
    if crs is None:
        return None
    side = math.sqrt(abs(scene.affine.determinant))
    if crs.is_geographic:
        lat = (scene.bounds[1] + scene.bounds[3]) / 2
        return side * EARTH_M_PER_DEGREE * math.sqrt(max(math.cos(math.radians(lat)), 1e-6))
    return side * float(crs.linear_units_factor[1])


def band_key(name: str) -> str:
    """A band name (GDAL description) as names are compared: case and spaces aside."""
    return name.strip().lower()


def bands_named(wanted: Sequence[str], names: Sequence[str]) -> list[int] | None:
    """The 1-based bands of a raster whose `names` hold each of the `wanted` names exactly once
    (`band_key`), in the order wanted; None when one is unnamed, missing or named twice."""
    keys = [band_key(n) for n in names]
    wanted_keys = [band_key(n) for n in wanted]
    if not all(wanted_keys) or any(keys.count(k) != 1 for k in wanted_keys):
        return None
    return [keys.index(k) + 1 for k in wanted_keys]


SCALE_TOLERANCE = 1.5  # pixel sizes within this factor of each other count as the same


def same_scale(size: float, other: float) -> bool:
    """Whether two pixel sizes are within SCALE_TOLERANCE of each other."""
    return 1 / SCALE_TOLERANCE <= other / size <= SCALE_TOLERANCE


def decimated_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(rows, columns) of a read of a `width` x `height` raster at most `max_side` px a side,
    its aspect kept."""
    scale = max(1.0, max(width, height) / max_side)
    return max(1, round(height / scale)), max(1, round(width / scale))


def check_has_data(scene: SceneInfo, bands: Sequence[int]) -> None:
    """NothingToPredictError (an InputError) when a scene has no valid pixel: the sample
    windows are read until one has data; when they do not cover a large scene, a decimated read
    of all of it decides."""
    windows = sample_windows(scene, np.random.default_rng(0))
    with open_raster(scene.path) as src:
        for window in windows:
            pixels = read_window(src, scene.in_file(window), bands, scene.dtype, 0, scene.collar)
            if pixels.valid.any():
                return
        covered = sum(int(w.width) * int(w.height) for w in windows)
        if covered < scene.width * scene.height:
            shape = (len(bands), *decimated_shape(scene.width, scene.height, 1024))
            data = src.read(list(bands), window=scene.file_window, out_shape=shape, masked=True)
            ok = ~np.ma.getmaskarray(data).any(axis=0)
            if np.issubdtype(data.dtype, np.floating):
                ok &= np.isfinite(data.filled(0)).all(axis=0)
            ok &= outside_collar(data.data, scene.collar)
            if ok.any():
                return
    raise NothingToPredictError(
        f"{scene.path}: no valid pixel in bands {list(bands)} (all nodata?); check the scene and "
        "its nodata value"
    )


def covering_window(scene: SceneInfo, area: shapely.Geometry) -> Window:
    """The smallest pixel window of the scene that holds `area` (in the scene's CRS)."""
    inverse = ~scene.affine
    left, bottom, right, top = area.bounds
    corners = [inverse @ (x, y) for x in (left, right) for y in (bottom, top)]
    eps = 1e-6  # a bound on a pixel edge takes no pixel beyond it
    c0 = max(0, math.floor(min(c for c, _ in corners) + eps))
    r0 = max(0, math.floor(min(r for _, r in corners) + eps))
    c1 = min(scene.width, math.ceil(max(c for c, _ in corners) - eps))
    r1 = min(scene.height, math.ceil(max(r for _, r in corners) - eps))
    return Window(c0, r0, max(c1 - c0, 1), max(r1 - r0, 1))


def area_mask(geom: shapely.Geometry, window: Window, transform: Affine) -> np.ndarray:
    """Boolean mask of the pixels of a window whose centre lies in a geometry (rasterised only
    where the geometry's edge crosses the window)."""
    shape = (int(window.height), int(window.width))
    outline = window_polygon(transform, window)
    if shapely.disjoint(geom, outline):  # every pixel centre half a pixel or more outside
        return np.zeros(shape, dtype=bool)
    if shapely.contains_properly(geom, outline):  # ... or inside
        return np.ones(shape, dtype=bool)
    out = rasterio.features.rasterize(
        [(geom, 1)],
        out_shape=shape,
        transform=rasterio.windows.transform(window, transform),
        fill=0,
        dtype="uint8",
    )
    return out.astype(bool)
