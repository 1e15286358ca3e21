"""Does a scene look like the model's training data? Warnings (never errors) when its band names,
georeferencing, pixel type, pixel size or values are far from what the model was trained on."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from geo.contracts.adapter import AdapterMetadata
from geo.io.raster import SceneInfo, band_key, pixel_size_m, same_scale, sample_pixels

log = logging.getLogger(__name__)

SAMPLE = 2**16  # pixels sampled from the scene
RANGE_TOLERANCE = 2.0  # a band median this many 2-98 % ranges outside training's is far
SPREAD_TOLERANCE = 10.0  # a 2-98 % range this many times wider or narrower is another scale


def unfamiliar(
    scene: SceneInfo, metadata: AdapterMetadata, bands: Sequence[int] | None = None
) -> list[str]:
    """How `scene` differs from the training scenes (empty when it looks like them); `bands`:
    the scene's bands the model reads (default: the training band numbers)."""
    bands = metadata.bands if bands is None else tuple(bands)
    notes = _renamed_bands(scene, metadata, bands)
    count = metadata.scene_band_count
    if not notes and count and scene.count != count and bands == metadata.bands:
        notes.append(
            f"it has {scene.count} bands where training scenes had {count}, and bands "
            f"{', '.join(map(str, bands))} are read by number (do they hold the same bands?)"
        )
    if metadata.georeferenced and scene.crs_wkt is None:
        notes.append("it has no CRS where training scenes had one (areas in pixels)")
    if metadata.dtype and scene.dtype != metadata.dtype:
        notes.append(f"pixels are {scene.dtype} where training scenes were {metadata.dtype}")
    size = pixel_size_m(scene)
    if size and metadata.pixel_size_m and not same_scale(metadata.pixel_size_m, size):
        notes.append(
            f"pixels are {size:.3g} m where training pixels were {metadata.pixel_size_m:.3g} m"
        )
    pixels = sample_pixels(scene, bands, SAMPLE, np.random.default_rng(0))
    if len(pixels):
        norm = metadata.normalization
        p2, median, p98 = np.percentile(pixels, [2, 50, 98], axis=0)
        for i, band in enumerate(bands):
            low, high = norm.p2[i], norm.p98[i]
            spread = max(high - low, 1e-12)
            ratio = max(p98[i] - p2[i], 1e-12) / spread
            outside = (
                not low - RANGE_TOLERANCE * spread <= median[i] <= high + RANGE_TOLERANCE * spread
            )
            if outside or not 1 / SPREAD_TOLERANCE <= ratio <= SPREAD_TOLERANCE:
                notes.append(
                    f"band {band} values ({p2[i]:.4g}..{p98[i]:.4g}) are far from the training "
                    f"range {low:.4g}..{high:.4g} (other units or scaling?)"
                )
    return notes


def _renamed_bands(scene: SceneInfo, metadata: AdapterMetadata, bands: Sequence[int]) -> list[str]:
    """The bands the model reads that hold, by their names (descriptions), another band of
    training (where `geo.predict.scene.bands_by_name` could not take them by name, as when a
    name occurs twice): the model is fed other bands than it learnt. Names of another
    convention (`red` against `B04`) are not compared."""
    names = [band_key(name) for name in scene.band_names]
    notes = []
    for band, trained in zip(bands, metadata.band_names, strict=False):
        wanted = band_key(trained)
        name = names[band - 1] if band <= len(names) else ""
        if wanted and name and name != wanted and wanted in names:
            notes.append(
                f"band {band} is named {scene.band_names[band - 1]!r} where it was {trained!r} "
                f"in training ({trained!r} is band {names.index(wanted) + 1} here)"
            )
    return notes


def warn_if_unfamiliar(
    scene: SceneInfo, metadata: AdapterMetadata, bands: Sequence[int] | None = None
) -> str | None:
    """Log one warning naming the scene and how it differs from the training data; returns
    it (None for a scene like them)."""
    notes = unfamiliar(scene, metadata, bands)
    if not notes:
        return None
    warning = (
        f"{scene.path} does not look like the training data: {'; '.join(notes)}; predictions "
        "may be poor"
    )
    log.warning("%s", warning)
    return warning
