"""Batches of store chunks for Keras (a PyDataset, so every backend can train from it)."""
from __future__ import annotations

import math

import keras
import numpy as np

from utils.store import Store


class ChunkBatches(keras.utils.PyDataset):
    """(images, targets) batches from selected store rows; reshuffled every epoch when training."""

    def __init__(self, store: Store, shards: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                 batch_size: int, shuffle: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not len(rows) == len(shards) == len(targets):
            raise ValueError("shards, rows and targets must have one entry per chunk")
        self.store, self.shards, self.rows = store, np.asarray(shards), np.asarray(rows)
        self.targets = np.asarray(targets, np.float32)
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self._rng = np.random.default_rng(seed)
        self.order = self._rng.permutation(len(rows)) if shuffle else np.arange(len(rows))

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.store.images(self.shards[chosen], self.rows[chosen])
        return images[..., None], self.targets[chosen]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self._rng.permutation(len(self.rows))
