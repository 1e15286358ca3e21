"""Prediction over a whole scene in bounded memory, resumable, into GIS-ready outputs.

Windows are read row by row of the tile grid (a background thread reads ahead), batched to the
model within a grid row, and blended into a `RowBand` (`geo.stitch`); rows that become final are
turned into class ids and winning-class scores and written to raw row files at once. Peak memory
depends on the tile size and the scene width, never on its height. Every so often the position
and the band in flight are checkpointed, so a killed run continues where it stopped and produces
the same bytes. The raw files then become COGs, the class COG becomes polygons, and a manifest
records inputs, parameters and timings. Everything is written under OUT_DIR/.STEM.partial/ and
moved into OUT_DIR only when complete, the manifest last; each stage is recorded in the folder's
state.json, so a rerun after a failure at any stage picks up from that stage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rasterio.windows import Window
from tqdm import tqdm

from convlora.checkpoint import check_adapter
from convlora.devices import autocast, resolve_device
from geo.cog import raw_to_cog
from geo.errors import InputError
from geo.manifest import (
    canonical_json,
    model_digest,
    sha256_file,
    software_versions,
    write_json,
)
from geo.normalize import normalize
from geo.paths import check_output, discard_on_failure
from geo.prefetch import prefetch
from geo.raster import SceneInfo, check_bands, fill_value, is_virtual, open_raster, read_window
from geo.raster import scene_info as read_scene_info
from geo.stats import check_has_data
from geo.stitch import RowBand, StitchPlan
from geo.styles import colormap, raster_qml
from geo.vectorize import polygonize, write_polygons
from geo.windows import MAX_TILE_SIZE

CLASS_NODATA = 255
SCORE_NODATA = 0
FORMAT = "convlora-geo-prediction/1"
OUTPUTS = {
    "classes": "_classes.tif",
    "probability": "_probability.tif",
    "polygons": "_polygons.gpkg",
    "style": "_classes.qml",
    "manifest": "_manifest.json",
}


class ProbabilityModel(Protocol):
    """Anything that maps normalised tiles (B, C, T, T) to class probabilities (B, K, T, T)."""

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Scene:
    """A scene checked against the model's metadata, with its tiling plan."""

    info: SceneInfo
    bands: list[int]
    normalization: dict[str, list[float]]
    classes: list[dict[str, Any]]
    plan: StitchPlan

    @property
    def stem(self) -> str:
        return Path(self.info.path).stem


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """The files a prediction of scene `stem` writes into `out_dir`, by name."""
    return {name: Path(out_dir) / f"{stem}{suffix}" for name, suffix in OUTPUTS.items()}


def prepare_scene(
    image_path: str | Path,
    metadata: dict[str, Any],
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    blend: bool = True,
) -> Scene:
    """Check the scene and the adapter metadata; tile size defaults to the model's image size
    and overlap to 1/8 of the tile size. Raises InputError naming what is wrong."""
    info = read_scene_info(str(image_path))
    missing = [k for k in ("classes", "bands", "normalization") if k not in metadata]
    if missing:
        raise InputError(f"model metadata: no {', '.join(missing)} (was it saved by convlora-geo?)")
    bands = [int(b) for b in metadata["bands"]]
    try:
        check_bands(info, bands)
    except InputError as exc:
        raise InputError(f"{exc}; the model reads bands {bands}: give a scene with them") from None
    norm = metadata["normalization"]
    if any(len(norm.get(k, ())) != len(bands) for k in ("mean", "std")):
        raise InputError(f"model metadata: normalization needs one mean and std per band {bands}")
    classes = sorted(metadata["classes"], key=lambda c: c["id"])
    if [c["id"] for c in classes] != list(range(len(classes))) or len(classes) < 2:
        raise InputError("model metadata: class ids must be 0..K-1 with K >= 2")
    size = int(tile_size or metadata.get("config", {}).get("image_size") or 0)
    if size < 16:
        raise InputError("--tile-size: give one (the model metadata has no image_size)")
    if size % 16 or size > MAX_TILE_SIZE:
        raise InputError(f"--tile-size {size}: give a multiple of 16 up to {MAX_TILE_SIZE}")
    overlap = size // 8 if overlap is None else int(overlap)
    if not 0 <= 2 * overlap < size:
        raise InputError(f"--overlap {overlap}: must be at least 0 and under half of {size}")
    check_has_data(info, bands)
    plan = StitchPlan(info.width, info.height, size, overlap, blend)
    return Scene(info, bands, {k: list(v) for k, v in norm.items()}, classes, plan)


def check_prediction(
    images: Sequence[str | Path],
    model: str | Path,
    out_dir: str | Path,
    *,
    sam_checkpoint: str | Path | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
) -> None:
    """Pre-flight check of a prediction run: the adapter's files and metadata, the SAM
    checkpoint it needs (shapes only), every scene against the adapter, and that `out_dir`
    is writable. Raises InputError (or ConvLoRAInputError) naming the input; writes nothing."""
    metadata = check_adapter(model, sam_checkpoint)
    for image in images:
        prepare_scene(image, metadata, tile_size=tile_size, overlap=overlap)
    check_output(out_dir, into=True)


class TileReader:
    """Reads batches of windows of the selected bands, reflect-padded where they pass the scene
    edge, as normalised float32 (B, C, T, T) plus valid masks (B, T, T). Its dataset is opened
    by the thread that first calls it, which must also call `close`."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self._open = None
        self._src = None

    def __call__(self, windows: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        if self._src is None:
            self._open = open_raster(self.scene.info.path)
            self._src = self._open.__enter__()
        pairs = [self._read(row, col) for row, col in windows]
        data = np.stack([p[0] for p in pairs])
        valid = np.stack([p[1] for p in pairs])
        return normalize(data, self.scene.normalization, valid), valid

    def _read(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        info, plan = self.scene.info, self.scene.plan
        size, m = plan.tile_size, plan.margin
        r0, c0 = row - m, col - m  # padded offsets to scene pixels
        top, left = max(r0, 0), max(c0, 0)
        bottom, right = min(r0 + size, info.height), min(c0 + size, info.width)
        window = Window(left, top, right - left, bottom - top)
        fill = fill_value(info.dtype, info.nodata)
        data, valid = read_window(self._src, window, self.scene.bands, info.dtype, fill)
        pads = ((top - r0, r0 + size - bottom), (left - c0, c0 + size - right))
        if any(p for pair in pads for p in pair):
            data = np.pad(data, ((0, 0), *pads), mode="reflect")
            valid = np.pad(valid, pads, mode="reflect")
        return data, valid

    def close(self) -> None:
        if self._open is not None:
            self._open.__exit__(None, None, None)
            self._open = self._src = None


def predict_rows(
    scene: Scene,
    model: ProbabilityModel,
    band: RowBand,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    start_row: int = 0,
    progress: tqdm | None = None,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Blend the grid rows from `start_row` on into `band`; after each grid row yield
    (grid row, first scene row, probabilities (K, n, W) float32, valid (n, W)) for the scene rows
    that became final. Batches never span grid rows, so a resumed run batches exactly alike."""
    plan, device = scene.plan, torch.device(device)
    rows, cols = plan.grid.rows, plan.grid.cols
    batches = [
        (i, [(rows[i], c) for c in cols[k : k + batch_size]])
        for i in range(start_row, len(rows))
        for k in range(0, len(cols), batch_size)
    ]
    reader = TileReader(scene)
    loaded = prefetch(reader, [windows for _, windows in batches], finish=reader.close)
    with closing(loaded):  # stop the reader thread now, also when the caller fails
        for (i, windows), (x, valid) in zip(batches, loaded, strict=True):
            probs = _probabilities(model, x, device, len(scene.classes))
            for (row, col), p, v in zip(windows, probs, valid, strict=True):
                band.add(p, v, row, col)
            if progress is not None:
                progress.update(len(windows))
            if windows[-1][1] == cols[-1]:
                until = rows[i + 1] if i + 1 < len(rows) else plan.height
                yield (i, *band.release(until))


def _probabilities(
    model: ProbabilityModel, x: np.ndarray, device: torch.device, classes: int
) -> np.ndarray:
    with torch.inference_mode(), autocast(device):
        out = model.predict_proba(torch.from_numpy(x).to(device))
    if out.ndim != 4 or out.shape[1] != classes or out.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"the model gave probabilities of shape {tuple(out.shape)} for tiles {x.shape}; "
            f"the metadata lists {classes} classes"
        )
    return out.float().cpu().numpy()


def predict_scene(
    image_path: str | Path,
    model: ProbabilityModel,
    metadata: dict[str, Any],
    out_dir: str | Path,
    *,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    min_area: float = 500.0,
    simplify: float = 2.0,
    blend: bool = True,
    progress: bool = True,
    model_name: str | None = None,
    checkpoint_seconds: float = 30.0,
) -> dict[str, Path]:
    """Predict one scene into OUT_DIR: STEM_classes.tif, STEM_probability.tif (COGs on the
    input's grid), STEM_polygons.gpkg, STEM_classes.qml and STEM_manifest.json.

    `metadata` is the adapter's (classes, bands, normalization, config); `model_name` labels
    the polygons and the manifest (default: the metadata's name or SAM variant and adapter).
    A run that finds its own finished outputs returns at once; one that finds its own
    interrupted work continues it (checkpoints at most every `checkpoint_seconds`).
    """
    started = time.perf_counter()
    scene = prepare_scene(image_path, metadata, tile_size=tile_size, overlap=overlap, blend=blend)
    device = resolve_device(str(device))
    if isinstance(model, torch.nn.Module):
        model.to(device).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, scene.stem)
    label = model_name or _model_label(metadata)
    run = {
        "inputs": _inputs(scene, model, metadata, label),
        "parameters": {
            "tile_size": scene.plan.tile_size,
            "overlap": scene.plan.overlap,
            "margin": scene.plan.margin,
            "blend": blend,
            "batch_size": batch_size,
            "device": device.type,
            "bands": scene.bands,
            "min_area_m2": min_area,
            "simplify_m": simplify,
        },
        "format": FORMAT,
    }
    fingerprint = hashlib.sha256(canonical_json(run).encode()).hexdigest()
    if _finished(paths, fingerprint):
        return paths
    folder = out_dir / f".{scene.stem}.partial"
    with discard_on_failure(folder, out_dir):
        work = _Work(folder, fingerprint)
        staged = {name: folder / p.name for name, p in paths.items()}
        if work.state["stage"] == "predict":
            with _timed(work, "predict"):
                _predict_rasters(
                    scene, model, work, batch_size, device, progress, checkpoint_seconds
                )
            work.save(stage="rasters")
        if work.state["stage"] == "rasters":
            with _timed(work, "cog"):
                _write_cogs(scene, work, staged)
            work.save(stage="vectors")
        if work.state["stage"] == "vectors":
            with _timed(work, "vectorize"):
                frame = polygonize(
                    staged["classes"], staged["probability"], scene.classes, min_area=min_area,
                    simplify=simplify, source=Path(scene.info.path).name, model=label,
                )  # fmt: skip
                stamp = _timestamp(scene.info.path)
                write_polygons(frame, staged["polygons"], scene.classes, timestamp=stamp)
                staged["style"].write_text(raster_qml(scene.classes))
            counts = frame["class_name"].value_counts().sort_index()
            work.save(stage="manifest", polygons={str(k): int(v) for k, v in counts.items()})
        if work.state["stage"] == "manifest":
            timings = dict(work.state["timings"], total=time.perf_counter() - started)
            manifest = {
                **run,
                "scene": scene.stem,
                "fingerprint": fingerprint,
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
                "polygons_per_class": work.state["polygons"],
                "resumed": work.state["runs"] > 1,
                "software": software_versions(),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            write_json(staged["manifest"], manifest)
            work.save(stage="publish")
        for name, path in staged.items():  # the manifest last: it marks the set complete
            if path.exists():  # a run stopped while publishing has moved some already
                os.replace(path, paths[name])
        shutil.rmtree(work.folder)
    return paths


def _inputs(
    scene: Scene, model: ProbabilityModel, metadata: dict[str, Any], label: str
) -> dict[str, Any]:
    """The scene file (path, sha256, size; no checksum for remote files) and the model
    (name, sha256 of its weights when it is a torch module, adapter metadata)."""
    path = scene.info.path
    local = not is_virtual(path)
    return {
        "image": {
            "path": path,
            "sha256": sha256_file(path) if local else None,
            "bytes": os.path.getsize(path) if local else None,
        },
        "model": {"name": label, "weights_sha256": model_digest(model), "metadata": metadata},
    }


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
        bar = tqdm(
            total=len(plan.grid), initial=start * per_row, disable=not progress,
            desc=scene.stem, unit="tile",
        )  # fmt: skip
        last = time.monotonic()
        rows = predict_rows(
            scene, model, band, batch_size=batch_size, device=device, start_row=start,
            progress=bar,
        )  # fmt: skip
        with bar, closing(rows):
            for i, top, probs, valid in rows:
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


def _encode(probs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (255 where invalid) and the winning probability as 1..255 (0 where invalid)."""
    classes = probs.argmax(axis=0).astype(np.uint8)
    score = np.clip(np.rint(probs.max(axis=0) * 255), 1, 255).astype(np.uint8)
    classes[~valid] = CLASS_NODATA
    score[~valid] = SCORE_NODATA
    return classes, score


def _write_cogs(scene: Scene, work: _Work, staged: dict[str, Path]) -> None:
    info = scene.info
    profile = {
        "width": info.width,
        "height": info.height,
        "crs": info.crs,
        "transform": info.affine,
    }
    palette = {**colormap(scene.classes), CLASS_NODATA: (0, 0, 0, 0)}
    raw_to_cog(
        work.folder / "classes.u8", staged["classes"], {**profile, "nodata": CLASS_NODATA},
        resampling="MODE", colormap=palette,
    )  # fmt: skip
    raw_to_cog(
        work.folder / "probability.u8", staged["probability"],
        {**profile, "nodata": SCORE_NODATA}, resampling="AVERAGE",
    )  # fmt: skip
    for name in ("classes.u8", "probability.u8"):
        (work.folder / name).unlink()


class _Work:
    """The resumable state of one scene's prediction: a folder and its state.json."""

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        state = _read_json(self.path)
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
    manifest = _read_json(paths["manifest"])
    return manifest.get("fingerprint") == fingerprint and all(p.exists() for p in paths.values())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _model_label(metadata: dict[str, Any]) -> str:
    if metadata.get("name"):
        return str(metadata["name"])
    config = metadata.get("config", {})
    return f"convlora-{config.get('sam_variant', 'sam')}-{config.get('adapter', 'adapter')}"


def _timestamp(path: str) -> str:
    """The scene file's modification time (UTC, ISO 8601): stored in the GeoPackage, so that
    reruns on the same scene give the same bytes. The epoch for files that are not local."""
    seconds = 0 if is_virtual(path) else os.path.getmtime(path)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
