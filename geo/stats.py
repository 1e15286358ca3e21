"""Per-band statistics over all scenes from a bounded, seeded sample of windows (never per tile)."""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window

from geo.errors import InputError
from geo.raster import SceneInfo, open_raster, read_window

SAMPLE_WINDOW = 256
WINDOWS_PER_SCENE = 64
TOTAL_PIXELS = 2**21  # pixels kept over all scenes; each scene keeps at least MIN_PIXELS
MIN_PIXELS = 4096


def sample_windows(scene: SceneInfo, rng: np.random.Generator) -> list[Window]:
    """Up to WINDOWS_PER_SCENE windows: all of a small scene (no pixel twice), else random ones."""
    w, h = min(SAMPLE_WINDOW, scene.width), min(SAMPLE_WINDOW, scene.height)
    cols, rows = math.ceil(scene.width / w), math.ceil(scene.height / h)
    if cols * rows <= WINDOWS_PER_SCENE:
        return [
            Window(c * w, r * h, min(w, scene.width - c * w), min(h, scene.height - r * h))
            for r in range(rows)
            for c in range(cols)
        ]
    xs = rng.integers(0, scene.width - w + 1, WINDOWS_PER_SCENE)
    ys = rng.integers(0, scene.height - h + 1, WINDOWS_PER_SCENE)
    return [Window(int(x), int(y), w, h) for x, y in zip(xs, ys, strict=True)]


def sample_scene(
    scene: SceneInfo, bands: list[int], budget: int, seed: int, index: int
) -> np.ndarray:
    """Up to `budget` valid pixels of one scene as (n, C) float64, deterministic for a seed."""
    rng = np.random.default_rng([seed, index])
    windows = sample_windows(scene, rng)
    per_window = max(1, budget // len(windows))
    parts = []
    with open_raster(scene.path) as src:
        for window in windows:
            data, valid = read_window(src, window, bands, scene.dtype, 0)
            pixels = data[:, valid].T
            if len(pixels) > per_window:
                pixels = pixels[np.sort(rng.choice(len(pixels), per_window, replace=False))]
            parts.append(pixels.astype(np.float64))
    return np.concatenate(parts) if parts else np.empty((0, len(bands)))


def check_has_data(scene: SceneInfo, bands: list[int]) -> None:
    """InputError when a scene has no valid pixel: the sample windows are read until one has
    data; when they do not cover a large scene, a decimated read of all of it decides."""
    windows = sample_windows(scene, np.random.default_rng(0))
    with open_raster(scene.path) as src:
        for window in windows:
            if read_window(src, window, bands, scene.dtype, 0)[1].any():
                return
        covered = sum(int(w.width) * int(w.height) for w in windows)
        if covered < scene.width * scene.height:
            scale = max(1.0, max(scene.width, scene.height) / 1024)
            shape = (len(bands), int(scene.height / scale), int(scene.width / scale))
            data = src.read(bands, out_shape=shape, masked=True)
            ok = ~np.ma.getmaskarray(data).any(axis=0)
            if np.issubdtype(data.dtype, np.floating):
                ok &= ~np.isnan(data.filled(0)).any(axis=0)
            if ok.any():
                return
    raise InputError(
        f"{scene.path}: no valid pixel in bands {bands} (all nodata?); check the scene and "
        "its nodata value"
    )


def scene_budget(n_scenes: int) -> int:
    """Pixels to sample per scene so that all scenes together stay near TOTAL_PIXELS."""
    return max(MIN_PIXELS, TOTAL_PIXELS // max(1, n_scenes))


def summarize(samples: list[np.ndarray]) -> tuple[dict[str, list[float]], int]:
    """({"mean", "std", "p2", "p98"} per band, pixel count) of the pooled samples ({} if none)."""
    pooled = np.concatenate(samples) if samples else np.empty((0, 0))
    if pooled.shape[0] == 0:
        return {}, 0
    p2, p98 = np.percentile(pooled, [2, 98], axis=0)
    stats = {
        "mean": pooled.mean(axis=0).tolist(),
        "std": pooled.std(axis=0).tolist(),
        "p2": p2.tolist(),
        "p98": p98.tolist(),
    }
    return stats, int(pooled.shape[0])
