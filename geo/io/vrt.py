"""A small VRT writer: STAC items' bands stacked over an area (windows of remote rasters), and
class rasters of neighbouring scenes mosaicked into one.

Why the VRT XML is written here rather than by `gdalbuildvrt`: rasterio has no binding for
GDALBuildVRT and GDAL's Python bindings (`osgeo`) are not a dependency. The VRT format is GDAL's
documented XML (https://gdal.org/drivers/raster/vrt.html), and writing it directly lets each band
take its own source window (the area of interest only), its own resampling (coarser bands brought
to the finest grid), and `SourceProperties`, so GDAL opens a remote source only when pixels of it
are read: opening the VRT costs no HTTP request, reading a window costs range requests of the
COG tiles under that window.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from geo.errors import InputError

GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
    "int32": "Int32", "uint64": "UInt64", "int64": "Int64", "float32": "Float32",
    "float64": "Float64",
}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """A band of a source raster placed over the VRT.

    `window` is the source's pixel rectangle (x offset, y offset, width, height, fractional where
    the source is coarser) that covers `dst`, the VRT's pixel rectangle (default: all of it);
    `resampling` None for a source on the VRT's grid (a SimpleSource: pixels copied), else a GDAL
    resampling name (a ComplexSource, whose `nodata` pixels leave what lies below them).
    """

    path: str
    band: int
    width: int
    height: int
    dtype: str
    block: tuple[int, int]  # (x, y)
    window: tuple[float, float, float, float]
    resampling: str | None = None
    nodata: float | None = None
    dst: tuple[int, int, int, int] | None = None
    lut: str | None = None  # a ComplexSource's value map, GDAL's "in:out,in:out" (`<LUT>`)


@dataclass(frozen=True)
class Band:
    """One VRT band: its description, type and nodata, its sources (none: an empty band; where
    sources overlap, the later one's pixels are drawn) and its colour table (value -> RGBA)."""

    description: str
    dtype: str
    sources: tuple[Source, ...] = ()
    nodata: float | None = None
    colors: Mapping[int, tuple[int, ...]] | None = None


def write_vrt(
    path: Path,
    *,
    width: int,
    height: int,
    crs_wkt: str,
    transform: Sequence[float],
    bands: Sequence[Band],
    metadata: Mapping[str, str] | None = None,
    mask: Source | None = None,
) -> Path:
    """Write the VRT atomically (a temporary file renamed into place) and return its path.

    `transform` is GDAL's geotransform order (x0, x res, 0, y0, 0, y res). `mask`: the source
    of a mask all bands share (GDAL's per-dataset mask: 0 no data, 255 valid), such as a cloud
    mask made from a scene classification by its `lut`.
    """
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs_wkt
    ET.SubElement(root, "GeoTransform").text = ", ".join(_num(v) for v in transform)
    if metadata:
        md = ET.SubElement(root, "Metadata")
        for key, value in metadata.items():
            ET.SubElement(md, "MDI", key=key).text = str(value)
    for i, band in enumerate(bands, start=1):
        if band.dtype not in GDAL_TYPES:
            raise InputError(f"{band.description}: data type {band.dtype} cannot be stacked")
        node = ET.SubElement(root, "VRTRasterBand", dataType=GDAL_TYPES[band.dtype], band=str(i))
        ET.SubElement(node, "Description").text = band.description
        if band.nodata is not None:
            ET.SubElement(node, "NoDataValue").text = _num(band.nodata)
        if band.colors:
            ET.SubElement(node, "ColorInterp").text = "Palette"
            table = ET.SubElement(node, "ColorTable")
            for code in range(max(band.colors) + 1):
                rgba = (*band.colors.get(code, (0, 0, 0, 0)), 255)[:4]
                ET.SubElement(table, "Entry", {f"c{k + 1}": str(v) for k, v in enumerate(rgba)})
        for source in band.sources:
            _source(node, source, width, height)
    if mask is not None:
        band_node = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand")
        band_node.set("dataType", "Byte")
        _source(band_node, mask, width, height)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_xml(root, path)
    return path


def rewrite_sources(path: Path, rewrite: Callable[[str], str | None]) -> int:
    """Give each source of the VRT at `path` the file name `rewrite` returns for its current one
    (None: left as it is); the VRT is written again (atomically) if any changed. Returns how
    many changed."""
    root = ET.parse(path).getroot()
    changed = 0
    for node in root.iter("SourceFilename"):
        new = rewrite(node.text or "")
        if new is not None and new != node.text:
            node.text = new
            changed += 1
    if changed:
        _write_xml(root, path)
    return changed


def _write_xml(root: ET.Element, path: Path) -> None:
    """Write the XML to a temporary file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=False)
            f.write(b"\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source(band: ET.Element, src: Source, width: int, height: int) -> None:
    kind = "SimpleSource" if src.resampling is None else "ComplexSource"
    node = ET.SubElement(band, kind)
    if src.resampling is not None:
        node.set("resampling", src.resampling)
    ET.SubElement(node, "SourceFilename", relativeToVRT="0").text = src.path
    ET.SubElement(node, "SourceBand").text = str(src.band)
    ET.SubElement(
        node, "SourceProperties", RasterXSize=str(src.width), RasterYSize=str(src.height),
        DataType=GDAL_TYPES[src.dtype], BlockXSize=str(src.block[0]),
        BlockYSize=str(src.block[1]),
    )  # fmt: skip
    x, y, w, h = src.window
    ET.SubElement(node, "SrcRect", xOff=_num(x), yOff=_num(y), xSize=_num(w), ySize=_num(h))
    dx, dy, dw, dh = src.dst or (0, 0, width, height)
    ET.SubElement(node, "DstRect", xOff=str(dx), yOff=str(dy), xSize=str(dw), ySize=str(dh))
    if src.resampling is not None and src.nodata is not None:
        ET.SubElement(node, "NODATA").text = _num(src.nodata)
    if src.lut is not None:
        ET.SubElement(node, "LUT").text = src.lut


def _num(value: float) -> str:
    """Integers without a decimal point, other numbers in their shortest exact form."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
