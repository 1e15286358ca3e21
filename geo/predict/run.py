"""Prediction of one scene in bounded memory, resumable, into GIS-ready outputs.

Windows are read row by row of the tile grid (a background thread reads ahead), batched to the
model within a grid row, and blended into a `RowBand` (`geo.predict.stitch`); rows that become
final are turned into class ids and winning-class scores and written to raw row files at once.
Peak memory depends on the tile size and the scene width, never on its height. Every so often
the position and the band in flight are checkpointed, so a killed run continues where it stopped
and produces the same bytes. The raw files then become COGs, the class COG becomes polygons, and
a manifest records inputs, parameters and timings. Everything is written under
OUT_DIR/.NAME.partial/ and moved into OUT_DIR only when complete, the manifest last; each stage
is recorded in the folder's state.json, so a rerun after a failure at any stage picks up there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import torch
from rasterio.windows import Window

from convlora.devices import resolve_device
from convlora.files import sha256_file
from geo.contracts.adapter import AdapterMetadata
from geo.contracts.classes import CLASSES_TAG, MODEL_TAG, SCORE_BAND, ClassMap
from geo.io.cog import raw_to_cog
from geo.io.hashing import input_record
from geo.io.outputs import (
    date_tags,
    discard_on_failure,
    exclusive,
    make_folder,
    read_json_object,
    scene_date,
)
from geo.io.progress import Progress
from geo.io.provenance import (
    canonical_json,
    model_digest,
    software_versions,
    write_json,
)
from geo.io.raster import area_mask, open_raster
from geo.io.storage import StagedOutput, exists, is_url, join, read_json
from geo.io.styles import colormap, raster_qml
from geo.io.units import pixel_metres
from geo.predict.quicklook import write_quicklook
from geo.predict.replaced import replaced_because
from geo.predict.rows import ProbabilityModel, predict_rows
from geo.predict.scene import Scene, output_paths
from geo.predict.stitch import RowBand
from geo.vectorize.polygons import (
    default_min_area,
    default_simplify,
    polygon_batches,
    write_polygons,
)

log = logging.getLogger(__name__)

CLASS_NODATA = 255
COUNT_ROWS = 1024  # rows of the class raster read at a time to count its pixels of each class
SCORE_NODATA = 0
FORMAT = "convlora-geo-prediction/3"


def predict_scene(
    scene: Scene,
    model: ProbabilityModel,
    out_dir: str | Path,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    min_area: float | None = None,
    simplify: float | None = None,
    progress: bool = True,
    model_record: dict[str, Any] | None = None,
    checkpoint_seconds: float = 30.0,
) -> dict[str, Path]:
    """Predict one scene into OUT_DIR: NAME_classes.tif, NAME_probability.tif (COGs on the
    input's grid), NAME_polygons.gpkg, NAME_polygons.parquet (fiboa GeoParquet),
    NAME_classes.qml and NAME_manifest.json. A model with a boundary class gives one polygon per
    object (field, building), touching objects apart.

    `model_record` identifies the model in the manifest ({"name", checksums, ...}; default: its
    name from the metadata and a digest of a torch module's weights). A run that finds its own
    finished outputs returns at once; one that finds its own interrupted work continues it
    (checkpoints at most every `checkpoint_seconds`).
    """
    started = time.perf_counter()
    min_area, simplify = _polygon_settings(scene, min_area, simplify)
    device = resolve_device(str(device))
    if isinstance(model, torch.nn.Module):
        model.to(device).eval()
    out_dir = make_folder(Path(out_dir))
    paths = output_paths(out_dir, scene.name)
    run = _run_record(scene, model, batch_size, device, min_area, simplify, model_record)
    record = run["inputs"]["model"]
    fingerprint = _fingerprint(run)
    if _finished(paths, fingerprint):
        log.info("%s: its outputs in %s are finished", scene.name, out_dir)
        return paths
    if paths["manifest"].exists():
        because = replaced_because(read_json_object(paths["manifest"]), run)
        log.info("%s: replacing its outputs in %s (%s)", scene.name, out_dir, because)
    folder = out_dir / f".{scene.name}.partial"
    with exclusive(out_dir / scene.name, "prediction"), discard_on_failure(folder, out_dir):
        work = _Work(folder, fingerprint)
        if work.state["runs"] > 1:
            log.info(
                "%s: resuming where an interrupted run stopped (%s, at row %d)",
                scene.name, work.state["stage"], work.state["next_row"],
            )  # fmt: skip
        staged = {name: folder / p.name for name, p in paths.items()}
        if work.state["stage"] == "predict":
            with _timed(work, "predict"):
                _predict_rasters(
                    scene, model, work, batch_size, device, progress, checkpoint_seconds
                )
            work.save(stage="rasters")
        if work.state["stage"] == "rasters":
            with _timed(work, "cog"):
                _write_cogs(scene, work, staged, record["name"])
            work.save(stage="vectors")
        if work.state["stage"] == "vectors":
            with _timed(work, "vectorize"):
                date = scene_date(scene.info.path)  # the rasters', fields' and picture's date
                frames = polygon_batches(
                    staged["classes"], staged["probability"], scene.classes, min_area=min_area,
                    simplify=simplify, source=Path(scene.info.path).name, model=record["name"],
                    progress=progress,
                )  # fmt: skip
                totals = write_polygons(
                    frames, staged["polygons"], scene.classes,
                    timestamp=date, parquet=staged["fiboa"],
                )  # fmt: skip
                staged["style"].write_text(raster_qml(scene.classes), encoding="utf-8")
                pixels = _class_pixels(staged["classes"])
                write_quicklook(
                    scene.info, staged["classes"], scene.metadata, staged["quicklook"],
                    bands=scene.bands, title=scene.name + (f"  {date[:10]}" if date else ""),
                    present=np.flatnonzero(pixels[:CLASS_NODATA]).tolist(),
                )  # fmt: skip
            work.save(
                stage="manifest",
                polygons=totals.count,
                area=totals.area,
                area_unit=totals.unit,
                predicted=round(100.0 * (1 - pixels[CLASS_NODATA] / pixels.sum()), 1),
            )
        if work.state["stage"] == "manifest":
            timings = dict(work.state["timings"], total=time.perf_counter() - started)
            manifest = {
                **run,
                "scene": scene.name,
                "source": scene.info.path,
                "fingerprint": fingerprint,
                "model": _model_record(scene.metadata),
                "grid": {
                    "width": scene.info.width,
                    "height": scene.info.height,
                    "crs": scene.info.crs_wkt,
                    "transform": list(scene.info.transform),
                },
                "outputs": {
                    name: {"file": p.name, "sha256": sha256_file(p)}
                    for name, p in staged.items()
                    if name != "manifest"
                },
                "predicted_percent": work.state.get("predicted"),
                "polygons_per_class": work.state["polygons"],
                f"polygon_area_{work.state.get('area_unit', 'ha')}_per_class": work.state.get(
                    "area", {}
                ),
                "resumed": work.state["runs"] > 1,
                "software": software_versions(),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            write_json(staged["manifest"], manifest)
            work.save(stage="publish")
        if staged["manifest"].exists():  # the set is incomplete until the new manifest is in
            paths["manifest"].unlink(missing_ok=True)  # (a crash midway: no finished mixture)
        for name, path in staged.items():  # the manifest last: it marks the set complete
            if path.exists():  # a run stopped while publishing has moved some already
                os.replace(path, paths[name])
        shutil.rmtree(work.folder)
    return paths


def predict_scene_into(
    scene: Scene,
    model: ProbabilityModel,
    out: str,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    min_area: float | None = None,
    simplify: float | None = None,
    progress: bool = True,
    model_record: dict[str, Any] | None = None,
) -> dict[str, str]:
    """`predict_scene` into OUT, a folder or an object-storage URL (s3://, gs://, az://).

    For a URL the outputs are predicted into a local staging folder (`geo.io.storage.
    StagedOutput`, where an interrupted run resumes), uploaded one by one when complete, the
    manifest last, and then removed here. A scene whose outputs at the URL come from this very
    run (the remote manifest's fingerprint) is not predicted again. Returns where the outputs are.
    """
    min_area, simplify = _polygon_settings(scene, min_area, simplify)
    options: dict[str, Any] = dict(
        batch_size=batch_size, device=device, min_area=min_area, simplify=simplify,
        progress=progress, model_record=model_record,
    )  # fmt: skip
    if not is_url(out):
        return {
            kind: str(path) for kind, path in predict_scene(scene, model, out, **options).items()
        }
    names = [path.name for path in output_paths(".", scene.name).values()]
    urls = {kind: join(out, path.name) for kind, path in output_paths(".", scene.name).items()}
    run = _run_record(
        scene, model, batch_size, resolve_device(str(device)), min_area, simplify, model_record
    )
    manifest = read_json(urls["manifest"]) or {}
    if manifest.get("fingerprint") == _fingerprint(run) and all(map(exists, urls.values())):
        log.info("%s: its outputs in %s are finished", scene.name, out)
        return urls
    with StagedOutput(out) as staged:
        predict_scene(scene, model, staged.folder, **options)
        staged.publish(names)  # the manifest last: it marks the set complete
    return urls


def _run_record(
    scene: Scene,
    model: ProbabilityModel,
    batch_size: int,
    device: torch.device,
    min_area: float,
    simplify: float,
    model_record: dict[str, Any] | None,
) -> dict[str, Any]:
    """What makes the outputs what they are: the inputs, the parameters, the output format."""
    record = model_record or {
        "name": scene.metadata.label,
        "weights_sha256": model_digest(model),
    }
    return {
        "inputs": {"image": _image_record(scene.info.path), "model": record},
        "parameters": {
            "tile_size": scene.plan.tile_size,
            "overlap": scene.plan.overlap,
            "margin": scene.plan.margin,
            "blend": scene.plan.blend,
            "batch_size": batch_size,
            "device": device.type,
            "bands": list(scene.bands),
            "min_area": min_area,
            "simplify": simplify,
            **({"collar": scene.info.collar} if scene.info.collar is not None else {}),
            **({"aoi": _area_record(scene)} if scene.area is not None else {}),
        },
        "format": FORMAT,
    }


def _model_record(metadata: AdapterMetadata) -> dict[str, Any]:
    """The model as trained (its weights are in the fingerprint): what SAM saw, at what scale."""
    return {
        "sam_variant": metadata.model.sam_variant,
        "adapter": metadata.model.adapter,
        "image_size": metadata.image_size,
        "tile_size": metadata.tile_size,
        "overlap": metadata.overlap,
        "bands": list(metadata.bands),
    }


def _area_record(scene: Scene) -> dict[str, Any]:
    """The area of interest: its file, the pixel window of the scene it covers, and a digest
    of its polygons in the scene's CRS."""
    assert scene.area is not None
    info = scene.info
    return {
        "file": scene.area.path,
        "window": [*info.offset, info.width, info.height],
        "polygons_sha256": hashlib.sha256(scene.area.wkt.encode()).hexdigest(),
    }


def _polygon_settings(
    scene: Scene, min_area: float | None, simplify: float | None
) -> tuple[float, float]:
    """`min_area` and `simplify`, each by default for the scene's pixel size
    (`default_min_area`, `default_simplify`): the values the manifest records."""
    info = scene.info
    pixel_m = pixel_metres(info.crs, info.affine, info.height)
    return (
        default_min_area(pixel_m) if min_area is None else min_area,
        default_simplify(pixel_m) if simplify is None else simplify,
    )


def _fingerprint(run: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(run).encode()).hexdigest()


def _image_record(path: str) -> dict[str, Any]:
    """The scene: path and checksum of all its files (a VRT's sources too), or of its
    metadata for a remote scene."""
    record = input_record(path, "image")
    return {"path": path, "sha256": record["sha256"], "of": record["of"]}


def _predict_rasters(
    scene: Scene,
    model: ProbabilityModel,
    work: _Work,
    batch_size: int,
    device: torch.device,
    progress: bool,
    checkpoint_seconds: float,
) -> None:
    """Run the model over the grid, writing final rows of class ids and scores to raw files."""
    plan, width = scene.plan, scene.info.width
    area = None if scene.area is None else shapely.from_wkt(scene.area.wkt)
    band = RowBand(plan, len(scene.classes))
    start = work.state["next_row"]
    if start:
        with np.load(work.folder / work.state["band"]) as saved:
            band.restore(dict(saved))
    files = [work.folder / "classes.u8", work.folder / "probability.u8"]
    fds = [os.open(f, os.O_RDWR | os.O_CREAT, 0o644) for f in files]
    try:
        for fd in fds:
            os.ftruncate(fd, width * scene.info.height)
        per_row = len(plan.grid.cols)
        bar = Progress(len(plan.grid) - start * per_row, scene.name, "window", enabled=progress)
        last = time.monotonic()
        rows = predict_rows(
            scene, model, band, batch_size=batch_size, device=device, start_row=start,
            progress=bar,
        )  # fmt: skip
        with bar, closing(rows):
            for i, top, probs, valid in rows:
                if area is not None:  # outputs only inside the area of interest
                    inside = Window(0, top, width, valid.shape[0])
                    valid = valid & area_mask(area, inside, scene.info.affine)
                classes, score = _encode(probs, valid)
                os.pwrite(fds[0], classes.tobytes(), top * width)
                os.pwrite(fds[1], score.tobytes(), top * width)
                done = i + 1 == len(plan.grid.rows)
                if done or time.monotonic() - last >= checkpoint_seconds:
                    for fd in fds:
                        os.fsync(fd)
                    work.checkpoint(i + 1, band)
                    last = time.monotonic()
    finally:
        for fd in fds:
            os.close(fd)


def _class_pixels(classes: Path) -> np.ndarray:
    """How many pixels of the class raster hold each value (256 counts; CLASS_NODATA: outside
    the scene's data or the area of interest, or clouds), counted on the class COG strip by
    strip (overviews would hide scattered no data and small classes: their MODE skips them)."""
    counts = np.zeros(256, dtype=np.int64)
    with open_raster(str(classes)) as src:
        for top in range(0, src.height, COUNT_ROWS):
            strip = Window(0, top, src.width, min(COUNT_ROWS, src.height - top))
            counts += np.bincount(src.read(1, window=strip).ravel(), minlength=256)
    return counts


def _encode(probs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (255 where invalid) and the winning probability as 1..255 (0 where invalid)."""
    classes = probs.argmax(axis=0).astype(np.uint8)
    score = np.clip(np.rint(probs.max(axis=0) * 255), 1, 255).astype(np.uint8)
    classes[~valid] = CLASS_NODATA
    score[~valid] = SCORE_NODATA
    return classes, score


def _write_cogs(scene: Scene, work: _Work, staged: dict[str, Path], model: str) -> None:
    info = scene.info
    profile = {
        "width": info.width,
        "height": info.height,
        "crs": info.crs,
        "transform": info.affine,
    }
    palette = {**colormap(scene.classes), CLASS_NODATA: (0, 0, 0, 0)}
    dated = date_tags(scene_date(info.path))  # the scene's date, where it records one
    classes = json.dumps(ClassMap(scene.classes).to_list(), ensure_ascii=False)
    raw_to_cog(
        work.folder / "classes.u8", staged["classes"], {**profile, "nodata": CLASS_NODATA},
        resampling="MODE", colormap=palette, description="class id",
        tags={CLASSES_TAG: classes, MODEL_TAG: model, **dated},
    )  # fmt: skip
    raw_to_cog(
        work.folder / "probability.u8", staged["probability"],
        {**profile, "nodata": SCORE_NODATA}, resampling="AVERAGE",
        description=SCORE_BAND, tags=dated,
    )  # fmt: skip
    for name in ("classes.u8", "probability.u8"):
        (work.folder / name).unlink()


class _Work:
    """The resumable state of one scene's prediction: a folder and its state.json."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        state = read_json_object(self.path)
        if state.get("fingerprint") != fingerprint:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            state = {"fingerprint": fingerprint, "stage": "predict", "next_row": 0,
                     "band": None, "timings": {}, "runs": 0}  # fmt: skip
        state["runs"] += 1
        self.state = state
        write_json(self.path, state)

    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        write_json(self.path, self.state)

    def checkpoint(self, next_row: int, band: RowBand) -> None:
        """Save the band in flight, then the position that goes with it; drop the old band."""
        name = f"band-{next_row}.npz"
        tmp = self.folder / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **band.state())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        old = self.state["band"]
        self.save(next_row=next_row, band=name)
        if old and old != name:
            (self.folder / old).unlink(missing_ok=True)


class _timed:
    """Add the seconds spent in a block to the work state's timings (across resumed runs)."""

    def __init__(self, work: _Work, key: str) -> None:
        self.work, self.key = work, key

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        timings = self.work.state["timings"]
        timings[self.key] = timings.get(self.key, 0.0) + time.perf_counter() - self.start


def _finished(paths: dict[str, Path], fingerprint: str) -> bool:
    """True when all outputs exist and the manifest says they come from this very run."""
    manifest = read_json_object(paths["manifest"])
    return manifest.get("fingerprint") == fingerprint and all(p.exists() for p in paths.values())
