"""QGIS styles: well-formed QML and SLD, and the GeoPackage layer_styles table."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely

from geo.contracts.classes import parse_class_list
from geo.io.styles import (
    add_gpkg_style,
    class_categories,
    colormap,
    raster_qml,
    vector_qml,
    vector_sld,
)

CLASSES = parse_class_list(
    [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "centre pivot <irrigated> & 'dry'", "color": "#e31a1c"},
        {"id": 2, "name": "water", "color": "#1f78b4"},
    ],
    "test",
)


def test_colormap_makes_background_transparent() -> None:
    assert colormap(CLASSES) == {0: (0, 0, 0, 0), 1: (227, 26, 28, 255), 2: (31, 120, 180, 255)}


def test_qml_and_sld_are_well_formed_and_name_the_classes() -> None:
    raster = ET.fromstring(raster_qml(CLASSES))
    labels = [e.get("label") for e in raster.iter("paletteEntry")]
    assert labels == [c.name for c in CLASSES]
    vector = ET.fromstring(vector_qml(class_categories(CLASSES), "class_id"))
    assert [c.get("label") for c in vector.iter("category")] == [CLASSES[1].name, "water"]
    colors = [o.get("value") for o in vector.iter("Option") if o.get("name") == "outline_color"]
    assert colors == ["227,26,28,255", "31,120,180,255"]
    sld = ET.fromstring(vector_sld(class_categories(CLASSES), "polygons", "class_id"))
    names = [e.text for e in sld.iter("{http://www.opengis.net/se}Name")]
    assert CLASSES[1].name in names and "water" in names


def test_gpkg_style_is_the_default_and_replaced_not_duplicated(tmp_path: Path) -> None:
    gpkg = tmp_path / "p.gpkg"
    frame = gpd.GeoDataFrame({"class_id": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=32618)
    pyogrio.write_dataframe(frame, gpkg, layer="polygons", driver="GPKG")
    for _ in range(2):
        add_gpkg_style(
            gpkg, "polygons", class_categories(CLASSES), field="class_id", name="classes",
            timestamp="2021-06-17T00:00:00.000Z", description="class colours",
        )  # fmt: skip
    with sqlite3.connect(gpkg) as con:
        styles = con.execute("SELECT f_table_name, useAsDefault, update_time FROM layer_styles")
        assert styles.fetchall() == [("polygons", 1, "2021-06-17T00:00:00.000Z")]
        contents = con.execute("SELECT data_type FROM gpkg_contents WHERE table_name = ?",
                               ("layer_styles",)).fetchall()  # fmt: skip
        assert contents == [("attributes",)]
    assert len(pyogrio.read_dataframe(gpkg, layer="polygons")) == 1  # still a readable GPKG
