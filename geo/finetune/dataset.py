"""A torch Dataset over a tile store: normalised tiles, labels, valid masks, D4 augmentation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.affinity
import torch
import zarr
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from torch.utils.data import Dataset

from geo.contracts.classes import IGNORE
from geo.contracts.normalization import Normalization
from geo.contracts.tile_store import (
    SPLITS,
    TRAIN,
    VAL,
    StoreInfo,
    label_coverage,
    open_arrays,
    read_split,
    read_windows,
)
from geo.io.frame import MapFrame, reproject
from geo.io.normalize import normalize
from geo.io.raster import window_polygon


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
        codes = read_split(self.store_path)
        chosen = np.isin(codes, SPLITS[split])
        if labelled_only:
            chosen &= label_coverage(self.store_path) > 0
        self.indices = np.flatnonzero(chosen)
        self.held_out = held_out_parts(self.store, codes) if split == "train" else {}
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

    def keeps_labels(self) -> bool:
        """Whether any tile keeps a labelled pixel once the parts held out are left out (reads
        only tiles with parts held out, and only where no other tile holds labels)."""
        coverage = label_coverage(self.store_path)
        if any(coverage[i] > 0 and int(i) not in self.held_out for i in self.indices):
            return True
        return any(
            bool((self._label(int(i))[0] != IGNORE).any()) for i in self.indices
            if int(i) in self.held_out
        )  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_pid": -1}

    def _open(self) -> tuple[zarr.Array, zarr.Array, zarr.Array]:
        if self._arrays is None or self._pid != os.getpid():
            self._arrays = open_arrays(self.store_path, mode="r")
            self._pid = os.getpid()
        return self._arrays

    def _label(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The labels of the tile at store `index` as training sees them (255 where invalid or
        held out), and its valid pixels."""
        _, labels, valids = self._open()
        valid = np.asarray(valids[index], dtype=bool)
        label = np.array(labels[index], dtype=np.uint8)
        label[~valid] = IGNORE
        if index in self.held_out:
            label[_burn(self.held_out[index], label.shape)] = IGNORE
        return label, valid

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"tile {i} out of range for {len(self)} tiles")
        index = int(self.indices[i])
        label, valid = self._label(index)
        images = self._open()[0]
        # turned and flipped as stored, before the conversions that copy them anyway
        k, norm = self.transform_of(index), self.normalization
        valid = np.ascontiguousarray(d4(valid, k))
        image = normalize(d4(np.asarray(images[index]), k), norm.mean, norm.std, valid)
        return {
            "image": torch.from_numpy(np.asarray(image)),
            "label": torch.from_numpy(np.array(d4(label, k), dtype=np.int64, order="C")),
            "valid": torch.from_numpy(valid),
            "index": index,
        }


def held_out_parts(store: StoreInfo, codes: np.ndarray) -> dict[int, list[shapely.Geometry]]:
    """For every training tile that overlaps validation tiles (tiles overlap; scenes of one
    place on other dates, or in other CRSs, meet in one map frame: `geo.io.frame`), the
    overlapping parts in the training tile's pixel coordinates: training leaves their labels
    out, so no validation label is learnt."""
    windows = read_windows(store.path)
    scene_of = np.concatenate(
        [np.full(r.tiles[1] - r.tiles[0], i) for i, r in enumerate(store.scenes)]
    )
    frame = MapFrame([r.crs for r in store.scenes])
    grids, groups, outlines = [], [], []
    for i, (col, row, width, height) in enumerate(windows):
        record = store.scenes[int(scene_of[i])]
        grids.append(Affine(*record.transform[:6]) @ Affine.translation(int(col), int(row)))
        outline = window_polygon(grids[i], Window(0, 0, int(width), int(height)))
        group = f"scene:{scene_of[i]}"
        if record.crs is not None:
            group, outline = frame.place(outline, record.crs)
        groups.append(group)
        outlines.append(outline)
    val = np.flatnonzero(codes == VAL)
    if not val.size:
        return {}
    tree = shapely.STRtree([outlines[i] for i in val])
    parts: dict[int, list[shapely.Geometry]] = {}
    for t in np.flatnonzero(codes == TRAIN):
        hits = [int(val[h]) for h in tree.query(outlines[t], predicate="intersects")]
        shared = [outlines[v].intersection(outlines[t]) for v in hits if groups[v] == groups[t]]
        shared = [g for g in shared if g.area > 0]
        if shared:
            own = store.scenes[int(scene_of[t])].crs
            if own is not None:  # from the frame back into the tile's CRS
                shared = [reproject(g, groups[t], frame.canonical[own]) for g in shared]
            inverse = ~grids[t]
            parts[int(t)] = [
                shapely.affinity.affine_transform(
                    g, [inverse.a, inverse.b, inverse.d, inverse.e, inverse.c, inverse.f]
                )
                for g in shared
            ]
    return parts


def _burn(parts: list[shapely.Geometry], shape: tuple[int, ...]) -> np.ndarray:
    """Pixels (of a tile in its own pixel coordinates) whose centre lies in any of `parts`."""
    return features.rasterize(
        [(g, 1) for g in parts], out_shape=shape[-2:], fill=0, dtype="uint8"
    ).astype(bool)
