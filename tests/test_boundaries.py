"""The dependency direction is flows -> geo -> convlora, never back (DESIGN.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"convlora": ROOT / "convlora" / "src" / "convlora", "geo": ROOT / "geo"}

FORBIDDEN = {
    "convlora": {
        "geo",
        "flows",
        "prefect",
        "prefect_dask",
        "rasterio",
        "geopandas",
        "shapely",
        "pyogrio",
        "zarr",
        "xarray",
        "rioxarray",
        "dask",
        "distributed",
    },
    "geo": {"flows", "prefect", "prefect_dask"},
}


def imported_top_level(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a file (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_boundaries(package: str) -> None:
    files = sorted(SOURCES[package].rglob("*.py"))
    assert files, f"no sources found for {package}"
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_top_level(f) & FORBIDDEN[package]) for f in files
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package} imports what it must not: {offenders}"


def test_importing_convlora_loads_no_geo_or_prefect() -> None:
    """At run time too: importing the model core loads neither the geo nor the Prefect stack."""
    code = (
        "import sys, convlora, convlora.model, convlora.checkpoint;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'geo', 'flows', 'prefect', 'rasterio', 'geopandas'});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


STAGES = {"tiling", "finetune", "evaluate", "predict", "vectorize", "ingest"}
INSIDE_GEO = {  # geo module or package -> geo stages it must not import
    "io": STAGES,
    "contracts": STAGES,
    "options.py": STAGES,
    "errors.py": STAGES,
    "predict": {"tiling", "finetune", "evaluate", "ingest"},
    "vectorize": STAGES - {"vectorize"},
    "tiling": STAGES - {"tiling"},
    "finetune": STAGES - {"finetune"},
}


def imported_geo_parts(path: Path) -> set[str]:
    """The geo sub-packages and modules a file imports (`geo.tiling.run` -> `tiling`)."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        parts.update(n.split(".")[1] for n in names if n.startswith("geo.") and "." in n)
    return parts


@pytest.mark.parametrize("part", sorted(INSIDE_GEO))
def test_geo_stages_import_only_what_they_may(part: str) -> None:
    """Primitives and contracts know no stage; prediction needs no tiling or fine-tuning code."""
    target = ROOT / "geo" / part
    files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_geo_parts(f) & INSIDE_GEO[part]) for f in files
    }
    assert not {k: v for k, v in offenders.items() if v}
