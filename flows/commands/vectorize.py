"""`convlora-geo vectorize`: any class raster into polygons (GeoPackage or fiboa GeoParquet).

It runs the library directly, without a Prefect flow: a class raster (or several, in any CRS,
read as one mosaic) in, one file out, in bounded memory (a `predict` flow vectorises its own
predictions).
"""

from __future__ import annotations

import argparse

from flows.commands import add_command
from flows.parameters import VECTORIZE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "vectorize", VECTORIZE, help="turn a class raster into polygons, one per object",
        description="Polygons of a class raster (a prediction, an FTW 3-class mask, ...): one "
        "per object, touching objects kept apart when the class map has a boundary class; a "
        "GeoPackage with a QGIS style, or fiboa GeoParquet. Several class rasters "
        "(neighbouring scenes' predictions, in one CRS or several) give one layer, fields "
        "across their edges whole.",
    )  # fmt: skip
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from geo.vectorize import VectorizeConfig, vectorize

    result = vectorize(VECTORIZE.build(VectorizeConfig, VECTORIZE.values(args)))
    total = sum(result["polygons"].values())
    per_class = ", ".join(f"{n} {name}" for name, n in result["polygons"].items()) or "none"
    print(f"{result['out']}: {total} polygons ({per_class})")
    return 0
