"""`VectorizeConfig`: which class rasters become polygons, with which classes, into which file."""

from __future__ import annotations

from typing import Any

from geo.options import (
    StageConfig,
    absolute_paths,
    expanded_paths,
    local_path,
    option,
    validates,
)

FORMATS = ("gpkg", "parquet")
SUFFIXES = {"gpkg": (".gpkg",), "parquet": (".parquet", ".geoparquet")}  # file names per format


def min_area_option() -> Any:
    """The `min_area` option of `vectorize` and `predict` (default: `default_min_area`)."""
    return option(
        None,
        help="drop polygons smaller than this many m² (default: 4 pixels: 1 m² at 0.5 m, 400 m² "
        "at 10 m; pixels without a CRS)",
        ge=0,
    )


def simplify_option() -> Any:
    """The `simplify` option of `vectorize` and `predict` (default: `default_simplify`)."""
    return option(
        None,
        help="polygon simplification tolerance in metres (default: 2 m, or 1 pixel of finer "
        "imagery; under 0.7 pixels nothing moves; 0 keeps the pixel outlines; pixels without a "
        "CRS)",
        ge=0,
    )


class VectorizeConfig(StageConfig):
    """A class raster into polygons: GeoPackage with a QGIS style, or fiboa GeoParquet (see
    `geo.vectorize.vectorize`)."""

    rasters: list[str] = option(
        help="class raster whose pixel values are class ids (a prediction, an FTW mask, ...); "
        "several (or a glob pattern, 'predictions/*_classes.tif') become one layer, fields across "
        "their edges whole (rasters on other grids resampled onto one)",
        positional=True, metavar="CLASS_RASTER", min_length=1,
    )  # fmt: skip
    class_map: str | None = option(
        None,
        help="YAML or JSON list of the raster's classes, in id order, the model that "
        "predicted it (its run folder or adapter.json) or a tile store of those classes; a class "
        "with `boundary` keeps touching objects apart (see README: field boundaries) (default: "
        "the classes predict wrote into the raster, else one class per id, 0 background)",
    )
    out: str = option(help="the polygon file to write (.gpkg or .parquet)")
    format: str | None = option(
        None, help="gpkg or parquet (fiboa GeoParquet) (default: from the --out suffix)",
        choices=FORMATS,
    )  # fmt: skip
    scores: list[str] | None = option(
        None, help="raster of the winning-class probability (0-255) on the class raster's grid, "
        "for each polygon's score, one per class raster in the same order (default: no score)",
        metavar="SCORES",
    )  # fmt: skip
    min_area: float | None = min_area_option()
    simplify: float | None = simplify_option()
    overwrite: bool = option(False, help="replace the file at --out")

    _local = validates("out", by=local_path)
    _rasters = validates("rasters", "scores", by=expanded_paths)
    _paths = validates("class_map", by=absolute_paths)

    @property
    def output_format(self) -> str:
        """`format`, or parquet for a .parquet/.geoparquet --out and gpkg otherwise."""
        if self.format is not None:
            return self.format
        return "parquet" if self.out.lower().endswith(SUFFIXES["parquet"]) else "gpkg"
