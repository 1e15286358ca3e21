"""A torch Dataset over a tile store: normalised tiles, labels, valid masks, D4 augmentation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from geo.contracts.classes import IGNORE
from geo.contracts.normalization import Normalization
from geo.contracts.tile_store import (
    SPLITS,
    StoreInfo,
    label_coverage,
    open_arrays,
    read_split,
)
from geo.io.normalize import normalize


def d4(array: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) element of the dihedral group on the last two axes: k % 4 quarter turns
    counter-clockwise, then a left-right flip when k >= 4 (k = 0 is the identity)."""
    out = np.rot90(array, k % 4, axes=(-2, -1))
    return np.flip(out, axis=-1) if k >= 4 else out


class TileDataset(Dataset):
    """Tiles of one split of a tile store; item i is a dict of torch tensors:

    - image: float32 (C, T, T), `normalize`d with the store's statistics, invalid pixels 0
    - label: int64 (T, T) class ids, 255 where invalid or ignored
    - valid: bool (T, T), True where the scene has data
    - index: int, the tile's index in the store (its row in `tile_index.gpkg`)

    With `augment`, each item gets one of the 8 flips/quarter turns, drawn from (seed, epoch,
    store index): call `set_epoch` before each epoch; the same epoch gives the same tiles, in any
    worker and after a resume. The store is opened lazily in each process, so the dataset pickles
    to DataLoader workers (keep `persistent_workers=False` when calling `set_epoch`).
    `normalization` replaces the store's statistics (e.g. a trained adapter's, for evaluation);
    `labelled_only` leaves out tiles without a labelled pixel (they teach nothing).
    """

    def __init__(
        self,
        store: StoreInfo | str | Path,
        split: str = "train",
        augment: bool = False,
        seed: int = 0,
        normalization: Normalization | None = None,
        labelled_only: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.store = store if isinstance(store, StoreInfo) else StoreInfo.read(store)
        self.store_path = str(self.store.path)
        self.split, self.augment, self.seed, self.epoch = split, augment, seed, 0
        self.normalization = normalization or self.store.normalization
        chosen = np.isin(read_split(self.store_path), SPLITS[split])
        if labelled_only:
            chosen &= label_coverage(self.store_path) > 0
        self.indices = np.flatnonzero(chosen)
        self._arrays: tuple[zarr.Array, zarr.Array, zarr.Array] | None = None
        self._pid = -1

    @property
    def num_classes(self) -> int:
        return self.store.num_classes

    @property
    def in_channels(self) -> int:
        return len(self.store.bands)

    @property
    def tile_size(self) -> int:
        return self.store.tile_size

    def set_epoch(self, epoch: int) -> None:
        """Pick the augmentations of this epoch (deterministic for seed, epoch and tile)."""
        self.epoch = int(epoch)

    def transform_of(self, store_index: int) -> int:
        """The D4 element (0..7) applied to a tile in the current epoch (0 without augment)."""
        if not self.augment:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, int(store_index)]).integers(8))

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_pid": -1}

    def _open(self) -> tuple[zarr.Array, zarr.Array, zarr.Array]:
        if self._arrays is None or self._pid != os.getpid():
            self._arrays = open_arrays(self.store_path, mode="r")
            self._pid = os.getpid()
        return self._arrays

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"tile {i} out of range for {len(self)} tiles")
        index = int(self.indices[i])
        images, labels, valids = self._open()
        valid = np.asarray(valids[index], dtype=bool)
        norm = self.normalization
        image = np.asarray(normalize(np.asarray(images[index]), norm.mean, norm.std, valid))
        label = np.asarray(labels[index]).astype(np.int64)
        label[~valid] = IGNORE
        k = self.transform_of(index)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(d4(image, k))),
            "label": torch.from_numpy(np.ascontiguousarray(d4(label, k))),
            "valid": torch.from_numpy(np.ascontiguousarray(d4(valid, k))),
            "index": index,
        }
