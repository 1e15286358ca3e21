"""fiboa GeoParquet: field boundaries as https://fiboa.org describes them, written in batches.

Columns of fiboa core 0.2: `id`, `geometry` (WKB, the class raster's CRS), `area` (hectares),
`perimeter` (metres; both empty for a raster without a CRS), `determination_method`
("auto-imagery": delineated by a model from imagery) and `determination_datetime` (the date of
the scene the field comes from; empty where the scene records none); plus `class` (the class
name) and `score` (mean winning probability, 0..1; empty without a score raster). The file's
key-value metadata holds the GeoParquet 1.1 `geo` entry (geopandas, GDAL's Parquet driver and
QGIS read it) and the fiboa collection metadata under `fiboa`; the Arrow schema stored in the
file holds them too (its `geo` without the bounding box and geometry types, known only at the
end), for readers that go by the schema (`pyarrow.dataset`, GDAL on a folder of files).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from convlora.files import temporary_path
from geo.io.outputs import WRITING

FIBOA_VERSION = "0.2.0"
GEOPARQUET_VERSION = "1.1.0"
METHOD = "auto-imagery"
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("geometry", pa.binary()),
        ("area", pa.float64()),
        ("perimeter", pa.float64()),
        ("determination_method", pa.string()),
        ("determination_datetime", pa.timestamp("ms", tz="UTC")),
        ("class", pa.string()),
        ("score", pa.float64()),
    ]
)


class FiboaWriter:
    """Append polygon frames (columns of `geo.vectorize.polygons`) to a fiboa GeoParquet file,
    written under a temporary name and renamed by `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temporary_path(path)
        self.writer: pq.ParquetWriter | None = None  # opened once the CRS is known
        self.bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self.crs: Any = None
        self.types: set[str] = set()

    def _opened(self) -> pq.ParquetWriter:
        if self.writer is None:
            geo = self._geo(final=False)  # types and bounds known at the end, in the footer
            metadata = {"geo": json.dumps(geo), "fiboa": json.dumps(collection())}
            schema = SCHEMA.with_metadata(metadata)
            self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        return self.writer

    def write(self, frame: gpd.GeoDataFrame) -> None:
        """One batch of polygons as one row group (nothing for an empty batch); their `date`
        (UTC, empty where unknown) is the fields' determination datetime."""
        self.crs = frame.crs
        if frame.empty:
            return
        geoms = frame.geometry.values
        metres = frame.crs is not None  # else pixel units, which fiboa has no place for
        self.types.update(shapely.get_type_id(geoms).astype(str))
        total = shapely.total_bounds(geoms)
        self.bounds = np.concatenate([np.minimum(self.bounds[:2], total[:2]),
                                      np.maximum(self.bounds[2:], total[2:])])  # fmt: skip
        table = pa.table(
            {
                "id": frame["id"].astype(str),
                "geometry": shapely.to_wkb(geoms),
                "area": (frame["area_m2"] / 1e4).round(6) if metres else [None] * len(frame),
                "perimeter": frame["perimeter_m"] if metres else [None] * len(frame),
                "determination_method": [METHOD] * len(frame),
                "determination_datetime": frame["date"],
                "class": frame["class_name"].astype(str),
                "score": frame["score"],
            },
            schema=SCHEMA,
        )
        self._opened().write_table(table)

    def __enter__(self) -> FiboaWriter:
        WRITING.add(self.tmp)
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Publish the file when the writing succeeded, else remove it."""
        WRITING.discard(self.tmp)
        if kind is not None:
            if self.writer is not None:
                self.writer.close()
            self.tmp.unlink(missing_ok=True)
            return
        writer = self._opened()  # a file of no fields is written too
        writer.add_key_value_metadata({"geo": json.dumps(self._geo(final=True))})
        writer.close()
        os.replace(self.tmp, self.path)

    def _geo(self, final: bool) -> dict[str, Any]:
        """The GeoParquet column metadata; before the `final` one, geometry types unknown (an
        empty list, as GeoParquet has it) and no bounding box."""
        names = {"3": "Polygon", "6": "MultiPolygon"}
        column: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted(names[t] for t in self.types) if final else [],
            "crs": None if self.crs is None else self.crs.to_json_dict(),
        }
        if final and np.isfinite(self.bounds).all():
            column["bbox"] = [float(v) for v in self.bounds]
        return {"version": GEOPARQUET_VERSION, "primary_column": "geometry",
                "columns": {"geometry": column}}  # fmt: skip


def collection() -> dict[str, Any]:
    """The fiboa collection metadata: version, extensions (none) and where the fields come from."""
    return {
        "fiboa_version": FIBOA_VERSION,
        "fiboa_extensions": [],
        "description": "Field boundaries delineated by a convlora-geo model from imagery",
    }
