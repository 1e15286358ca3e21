"""A quick-look PNG of a prediction: class colours over a contrast-stretched rendering of the
scene, with a legend, so a user sees in one second whether a run worked."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from math import ceil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rasterio.enums import Resampling

from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import IGNORE
from geo.io.fonts import font_for
from geo.io.raster import SceneInfo, decimated_shape, open_raster

MAX_SIDE = 1024  # longest side of the picture, in pixels
MIN_SIDE = 512  # a smaller scene is enlarged (whole times, pixels kept square) to about this
CLASS_ALPHA = 0.55  # how strongly class colours cover the scene
LEGEND_ROW = 18  # pixels
LEGEND_ROWS = 8  # classes in one column before the legend fills more
NOTE_GREY = (90, 90, 90)  # lines under the legend: classes not shown, the scene's name and date
NO_DATA = "not predicted (no data)"  # the legend's black swatch, where the picture has some
ABSENT_NAMED = 3  # classes the scene does not show, named under the legend before "and N more"
STRETCH = (2, 98)  # percentiles of each band's valid pixels shown as black and as full colour


def rgb_bands(metadata: AdapterMetadata, bands: Sequence[int]) -> list[int]:
    """Source bands shown as red, green and blue: those fed to SAM's R, G, B (or one band), of
    `bands`, the scene's bands the model reads."""
    positions = metadata.model.band_init or tuple(range(min(3, len(bands))))
    return [bands[p] for p in positions]


def write_quicklook(
    scene: SceneInfo,
    classes_path: Path,
    metadata: AdapterMetadata,
    dest: Path,
    *,
    bands: Sequence[int] | None = None,
    max_side: int = MAX_SIDE,
    title: str = "",
    present: Collection[int] | None = None,
) -> Path:
    """Render the scene (each band stretched between its own 2 and 98 % values, so that a scene
    unlike the training data shows too) with the class raster over it and a legend into `dest`
    (PNG, written under a temporary name and renamed). The legend shows the classes `present`
    in the class raster (default: those the picture shows) and names the others in a line below
    ("not predicted: ..."); `bands`: the scene's bands the model reads (default: the training
    band numbers); `title` (the scene's name and date) is written under the legend."""
    bands = rgb_bands(metadata, metadata.bands if bands is None else bands)
    with open_raster(classes_path.as_posix()) as src:
        shape = decimated_shape(src.width, src.height, max_side)
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    with open_raster(scene.path) as src:
        pixels = src.read(
            bands, window=scene.file_window,
            out_shape=(len(bands), *shape), resampling=Resampling.average, masked=True,
        )  # fmt: skip
    image = _stretch(pixels)
    del pixels
    image[classes == IGNORE] = 0
    colours = np.zeros((256, 3), dtype=np.float32)
    shown = np.zeros(256, dtype=bool)
    for c in metadata.classes:
        if c.id != 0:
            colours[c.id] = c.rgba[:3]
            shown[c.id] = True
    over = shown[classes]
    image[over] = (1 - CLASS_ALPHA) * image[over] + CLASS_ALPHA * colours[classes[over]]
    if present is None:
        present = np.flatnonzero(np.bincount(classes.ravel(), minlength=256)).tolist()
    drawn = [c for c in metadata.classes if c.id != 0]
    legend = [(c.name, c.rgba[:3]) for c in drawn if c.id in present]
    if (classes == IGNORE).any():  # black: not predicted (no data, clouds, outside the area)
        legend.append((NO_DATA, (0, 0, 0)))
    absent = [c.name for c in drawn if c.id not in present]  # said, not shown as a swatch
    notes = ([_absent(absent)] if absent else []) + ([title] if title else [])
    picture = Image.fromarray(np.rint(image, out=image).astype(np.uint8))
    times = MIN_SIDE // max(picture.size)
    if times > 1:  # a 128 px scene is a picture to look at, not a thumbnail
        size = (picture.width * times, picture.height * times)
        picture = picture.resize(size, Image.Resampling.NEAREST)
    picture = _with_legend(picture, legend, notes)
    tmp = dest.with_name(f".{dest.name}.tmp")
    picture.save(tmp, format="PNG", optimize=True)
    tmp.replace(dest)
    return dest


def _stretch(pixels: np.ma.MaskedArray) -> np.ndarray:
    """(H, W, 3) float32 values 0..255: each band stretched between the 2 and 98 % values of its
    valid pixels (computed in place: the picture may be 1024 px a side; one band is grey)."""
    scaled = np.empty((*pixels.shape[1:], 3), dtype=np.float32)
    for k in range(3):
        band = pixels[min(k, pixels.shape[0] - 1)]
        valid = band.compressed()
        valid = valid[np.isfinite(valid)]
        low, high = np.percentile(valid, STRETCH) if valid.size else (0.0, 1.0)
        out = scaled[..., k]
        np.subtract(band.data, low, out=out, casting="unsafe")
        out *= np.float32(255 / max(float(high - low), 1e-12))
        np.clip(out, 0, 255, out=out)
        np.nan_to_num(out, copy=False)
    return scaled


def _absent(names: Sequence[str]) -> str:
    """The legend's line for classes the scene does not show."""
    more = f" and {len(names) - ABSENT_NAMED} more" if len(names) > ABSENT_NAMED else ""
    return f"not predicted: {', '.join(names[:ABSENT_NAMED])}{more}"


def _with_legend(
    image: Image.Image, legend: Sequence[tuple[str, tuple[int, ...]]], notes: Sequence[str]
) -> Image.Image:
    """The picture with a legend strip below it: one colour swatch and name per entry (class),
    each name in a font that draws its characters (`font_for`); more than LEGEND_ROWS entries
    fill columns side by side, as many as the picture's width holds, then rows; then the
    `notes` (the classes not shown, the title), each a line of its own in grey."""
    entries = [(name, colour, font_for(name)) for name, colour in legend]
    column = 34 + ceil(max((font.getlength(name) for name, _, font in entries), default=0))
    width = max(image.width, 220, column)
    columns = max(1, min(width // column, ceil(len(entries) / LEGEND_ROWS)))
    rows = ceil(len(entries) / columns)
    height = image.height + LEGEND_ROW * (rows + len(notes)) + 8
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, (name, colour, font) in enumerate(entries):
        left, top = 6 + (k // rows) * column, image.height + 4 + (k % rows) * LEGEND_ROW
        draw.rectangle((left, top + 2, left + 14, top + 14), fill=colour, outline=(0, 0, 0))
        draw.text((left + 22, top + 1), name, fill=(0, 0, 0), font=font)
    for k, note in enumerate(notes):
        top = image.height + 4 + (rows + k) * LEGEND_ROW
        draw.text((6, top + 1), note, fill=NOTE_GREY, font=font_for(note))
    return canvas
