"""Per-band statistics over all scenes from a bounded, seeded sample of windows (never per tile)."""

from __future__ import annotations

import numpy as np

from geo.contracts.normalization import Normalization
from geo.io.raster import SceneInfo, sample_pixels

TOTAL_PIXELS = 2**20  # pixels kept over all scenes; each scene keeps at least MIN_PIXELS
# (the windows, 64 a scene, decide how well a sample speaks for a scene, not the pixels in each)
MIN_PIXELS = 4096
CLIP_PERCENTILES = (0.1, 99.9)  # band values beyond these are clipped for mean and std


def sample_scene(
    scene: SceneInfo, bands: list[int], budget: int, seed: int, index: int
) -> np.ndarray:
    """Up to `budget` valid pixels of one scene as (n, C) float64, deterministic for a seed."""
    return sample_pixels(scene, bands, budget, np.random.default_rng([seed, index]))


def scene_budget(n_scenes: int) -> int:
    """Pixels to sample per scene so that all scenes together stay near TOTAL_PIXELS."""
    return max(MIN_PIXELS, TOTAL_PIXELS // max(1, n_scenes))


def summarize(samples: list[np.ndarray]) -> Normalization | None:
    """Band statistics of the pooled samples (None when there is no pixel).

    Robust to a few absurd values: each band is clipped to its CLIP_PERCENTILES range before
    the mean and standard deviation are taken (the samples hold finite values only).
    """
    pooled = np.concatenate(samples) if samples else np.empty((0, 0))
    if pooled.shape[0] == 0:
        return None
    bands = np.ascontiguousarray(pooled.T)  # (C, n): each band's values side by side
    low, p2, p98, high = np.percentile(
        bands, [CLIP_PERCENTILES[0], 2, 98, CLIP_PERCENTILES[1]], axis=1
    )
    clipped = np.clip(bands, low[:, None], high[:, None], out=bands)  # ours to change
    return Normalization(
        mean=tuple(clipped.mean(axis=1).tolist()),
        std=tuple(clipped.std(axis=1).tolist()),
        p2=tuple(p2.tolist()),
        p98=tuple(p98.tolist()),
    )
