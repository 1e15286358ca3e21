"""The one place band statistics are applied: training tiles and prediction windows alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def normalize(
    array: Array, normalization: Mapping[str, Sequence[float]], valid: Array | None = None
) -> Array:
    """Per-band z-scores `(x - mean) / std` as float32, with invalid and NaN pixels set to 0.

    `array` is (C, H, W) or (B, C, H, W), numpy or torch (the result has the same kind and device);
    `normalization` holds one "mean" and one "std" per band (a zero std counts as 1); `valid` is a
    boolean (H, W) or (B, H, W) mask, True where the pixel holds data.
    """
    if isinstance(array, torch.Tensor):
        mean = torch.as_tensor(normalization["mean"], dtype=torch.float32, device=array.device)
        std = torch.as_tensor(normalization["std"], dtype=torch.float32, device=array.device)
        std = torch.where(std > 0, std, torch.ones_like(std))
        _check(array.shape, mean.shape[0])
        out = (array.to(torch.float32) - mean[:, None, None]) / std[:, None, None]
        out = torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        if valid is not None:
            out = out * torch.as_tensor(valid, device=array.device).unsqueeze(-3).to(out.dtype)
        return out
    mean = np.asarray(normalization["mean"], dtype=np.float32)
    std = np.asarray(normalization["std"], dtype=np.float32)
    std = np.where(std > 0, std, np.float32(1))
    _check(array.shape, mean.shape[0])
    out = (np.asarray(array, dtype=np.float32) - mean[:, None, None]) / std[:, None, None]
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    if valid is not None:
        out *= np.expand_dims(np.asarray(valid, dtype=bool), -3)
    return out


def _check(shape: Sequence[int], bands: int) -> None:
    if len(shape) not in (3, 4) or shape[-3] != bands:
        raise ValueError(
            f"expected (C, H, W) or (B, C, H, W) with C = {bands} bands, got {tuple(shape)}"
        )
