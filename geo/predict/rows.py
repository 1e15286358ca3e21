"""The model over a scene's grid of windows, blended row by row into final scene rows."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import closing
from typing import Protocol

import numpy as np
import torch

from convlora.devices import autocast
from geo.io.prefetch import prefetch
from geo.io.progress import Progress
from geo.predict.reader import TileReader, WindowSource
from geo.predict.scene import Scene
from geo.predict.stitch import RowBand


class ProbabilityModel(Protocol):
    """Anything that maps normalised tiles (B, C, T, T) to class probabilities (B, K, T, T)."""

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor: ...


def predict_rows(
    scene: Scene,
    model: ProbabilityModel,
    band: RowBand,
    *,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    start_row: int = 0,
    progress: Progress | None = None,
    source: WindowSource | None = None,
) -> Generator[tuple[int, int, np.ndarray, np.ndarray], None, None]:
    """Blend the grid rows from `start_row` on into `band`; after each grid row yield
    (grid row, first scene row, probabilities (K, n, W) float32, valid (n, W)) for the scene rows
    that became final. Batches never span grid rows, so a resumed run batches exactly alike.
    Pixels come from the scene's raster unless another `source` of the same pixels is given.
    Windows without a valid pixel (no data, outside the area, clouds) are not run through the
    model: every pixel they hold is no data, so what they add to the blend is never read."""
    plan, device = scene.plan, torch.device(device)
    rows, cols = plan.grid.rows, plan.grid.cols
    batches = [
        (i, [(rows[i], c) for c in cols[k : k + batch_size]])
        for i in range(start_row, len(rows))
        for k in range(0, len(cols), batch_size)
    ]
    reader = TileReader(scene, source)
    loaded = prefetch(reader, [windows for _, windows in batches], finish=reader.close)
    with closing(loaded):  # stop the reader thread now, also when the caller fails
        for (i, windows), (x, valid) in zip(batches, loaded, strict=True):
            seen = valid.reshape(len(valid), -1).any(axis=1)
            if seen.all():
                probs = probabilities(model, x, device, len(scene.classes))
            else:
                probs = np.zeros((len(x), len(scene.classes), *x.shape[2:]), dtype=np.float32)
                if seen.any():
                    probs[seen] = probabilities(model, x[seen], device, len(scene.classes))
            for (row, col), p, v in zip(windows, probs, valid, strict=True):
                band.add(p, v, row, col)
            if progress is not None:
                progress.update(len(windows))
            if windows[-1][1] == cols[-1]:
                until = rows[i + 1] if i + 1 < len(rows) else plan.height
                yield (i, *band.release(until))


def probabilities(
    model: ProbabilityModel, x: np.ndarray, device: torch.device, classes: int
) -> np.ndarray:
    """Class probabilities (B, K, T, T) as float32 of a normalised batch (bf16 on CUDA)."""
    with torch.inference_mode(), autocast(device):
        out = model.predict_proba(torch.from_numpy(x).to(device))
    if out.ndim != 4 or out.shape[1] != classes or out.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"the model gave probabilities of shape {tuple(out.shape)} for tiles {x.shape}; "
            f"the metadata lists {classes} classes"
        )
    return out.float().cpu().numpy()
