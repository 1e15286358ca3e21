"""Types of the names `geo.vectorize` imports on first use (read by lazy_loader and mypy)."""

from .config import VectorizeConfig as VectorizeConfig
from .polygons import polygon_batches as polygon_batches
from .polygons import polygonize as polygonize
from .polygons import write_polygons as write_polygons
from .run import check_vectorize as check_vectorize
from .run import vectorize as vectorize
