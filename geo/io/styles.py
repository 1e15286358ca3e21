"""QGIS styles: a paletted .qml for class rasters, categorised styles stored in a GeoPackage.

QGIS loads `NAME.qml` beside `NAME.tif` automatically, and a GeoPackage layer's default style from
the `layer_styles` table (the OGR provider's style table). Background (class 0) is transparent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from geo.contracts.classes import ClassInfo

QGIS_VERSION = "3.34.0-Prizren"
FILL_ALPHA = 110  # of 255: polygons show the image below them


@dataclass(frozen=True)
class Category:
    """One category of a categorised style: the field's `value`, its legend `label`, a colour
    ("#rrggbb")."""

    value: int | str
    label: str
    color: str


def class_categories(classes: Sequence[ClassInfo]) -> list[Category]:
    """The categories of a class layer (on `class_id`): every class but background."""
    return [Category(c.id, str(c.name), c.color) for c in classes if c.id != 0]


LAYER_STYLES_SQL = """CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
  f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT,
  styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
  update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"""


def rgb(color: str) -> tuple[int, int, int]:
    """(r, g, b) of a "#rrggbb" colour."""
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def colormap(classes: Sequence[ClassInfo]) -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF palette entries per class id (RGBA), background fully transparent."""
    return {c.id: c.rgba for c in classes}


def raster_qml(classes: Sequence[ClassInfo]) -> str:
    """A QGIS paletted-renderer style for a class raster: class colours and names."""
    entries = "\n".join(
        f'        <paletteEntry value="{c.id}" color="{c.color}" '
        f'alpha="{0 if c.id == 0 else 255}" label={quoteattr(str(c.name))}/>'
        for c in classes
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories">
  <pipe>
    <provider>
      <resampling enabled="false" maxOversampling="2" zoomedInResamplingMethod="nearestNeighbour"
        zoomedOutResamplingMethod="nearestNeighbour"/>
    </provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" invertColors="0"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def vector_qml(categories: Sequence[Category], field: str, fill_alpha: int = FILL_ALPHA) -> str:
    """A QGIS categorised fill style on `field`, one category each; fills `fill_alpha` of 255."""
    kind = "string" if any(isinstance(c.value, str) for c in categories) else "long"
    rows = "\n".join(
        f'      <category symbol="{i}" value={quoteattr(str(c.value))} label={quoteattr(c.label)} '
        f'render="true" type="{kind}"/>'
        for i, c in enumerate(categories)
    )
    symbols = "\n".join(_fill_symbol(i, c.color, fill_alpha) for i, c in enumerate(categories))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="{QGIS_VERSION}" styleCategories="AllStyleCategories">
  <renderer-v2 type="categorizedSymbol" attr="{field}" forceraster="0" symbollevels="0"
    enableorderby="0" referencescale="-1">
    <categories>
{rows}
    </categories>
    <symbols>
{symbols}
    </symbols>
  </renderer-v2>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>2</layerGeometryType>
</qgis>
"""


def _fill_symbol(name: int, color: str, fill_alpha: int) -> str:
    r, g, b = rgb(color)
    options = {
        "color": f"{r},{g},{b},{fill_alpha}",
        "joinstyle": "bevel",
        "outline_color": f"{r},{g},{b},255",
        "outline_style": "solid",
        "outline_width": "0.4",
        "outline_width_unit": "MM",
        "style": "solid",
    }
    props = "\n".join(
        f'            <Option type="QString" name="{k}" value="{v}"/>' for k, v in options.items()
    )
    return f"""      <symbol type="fill" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <Option type="Map">
{props}
          </Option>
        </layer>
      </symbol>"""


def vector_sld(
    categories: Sequence[Category],
    layer: str,
    field: str,
    fill_alpha: int = FILL_ALPHA,
    name: str = "classes",
) -> str:
    """The same categorised style as SLD 1.1, called `name`, for clients that read SLD rather
    than QML."""
    rules = "\n".join(
        f"""      <se:Rule>
        <se:Name>{escape(c.label)}</se:Name>
        <ogc:Filter><ogc:PropertyIsEqualTo><ogc:PropertyName>{field}</ogc:PropertyName>
          <ogc:Literal>{escape(str(c.value))}</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>
        <se:PolygonSymbolizer>
          <se:Fill><se:SvgParameter name="fill">{c.color}</se:SvgParameter>
            <se:SvgParameter name="fill-opacity">{fill_alpha / 255:.2f}</se:SvgParameter></se:Fill>
          <se:Stroke><se:SvgParameter name="stroke">{c.color}</se:SvgParameter>
            <se:SvgParameter name="stroke-width">1</se:SvgParameter></se:Stroke>
        </se:PolygonSymbolizer>
      </se:Rule>"""
        for c in categories
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<StyledLayerDescriptor version="1.1.0" xmlns="http://www.opengis.net/sld"
  xmlns:se="http://www.opengis.net/se" xmlns:ogc="http://www.opengis.net/ogc">
  <NamedLayer>
    <se:Name>{escape(layer)}</se:Name>
    <UserStyle>
      <se:Name>{escape(name)}</se:Name>
      <se:FeatureTypeStyle>
{rules}
      </se:FeatureTypeStyle>
    </UserStyle>
  </NamedLayer>
</StyledLayerDescriptor>
"""


def add_gpkg_style(
    gpkg: Path,
    layer: str,
    categories: Sequence[Category],
    *,
    field: str,
    timestamp: str,
    name: str,
    description: str,
    fill_alpha: int = FILL_ALPHA,
    geometry_column: str = "geom",
) -> None:
    """Store a categorised style on `field` as `layer`'s default QGIS style, called `name`, in
    the GeoPackage's layer_styles.

    The table is registered in gpkg_contents as an attributes table, as QGIS does; `timestamp`
    (ISO 8601, UTC) is used for both tables so that equal inputs give equal bytes.
    """
    qml = vector_qml(categories, field, fill_alpha)
    sld = vector_sld(categories, layer, field, fill_alpha, name)
    row = ("", "", layer, geometry_column, name, qml, sld, 1, description, "", "", timestamp)
    con = sqlite3.connect(gpkg)
    try:
        with con:
            con.execute(LAYER_STYLES_SQL)
            con.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
                "description, last_change) VALUES ('layer_styles', 'attributes', "
                "'layer_styles', '', ?)",
                (timestamp,),
            )
            con.execute(
                "DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?", (layer, name)
            )
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                "owner, ui, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
    finally:
        con.close()
