"""Batches of store chunks for Keras (a PyDataset, so every backend can train from it)."""
from __future__ import annotations

import math

import keras
import numpy as np

from utils.store import Store


class ChunkBatches(keras.utils.PyDataset):
    """(images, targets) batches from selected store rows; reshuffled every epoch when training."""

    def __init__(self, store: Store, shards: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                 batch_size: int, shuffle: bool = False, seed: int = 0, augmenter=None,
                 noise: tuple[np.ndarray, np.ndarray] | None = None, **kwargs):
        """``augmenter`` (utils.augment.Augmenter) changes training batches; ``noise`` is the
        (shards, rows) of the noise chunks it may mix in."""
        super().__init__(**kwargs)
        self.augmenter = augmenter
        self.noise = noise if noise is not None and len(noise[0]) else None
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
        images = self.store.images(self.shards[chosen], self.rows[chosen])[..., None]
        targets = self.targets[chosen]
        if self.augmenter is None:
            return images, targets
        noise = None
        if self.noise is not None and "noise" in self.augmenter.strengths:
            picks = self._rng.integers(0, len(self.noise[0]), min(len(chosen), len(self.noise[0])))
            noise = self.store.images(self.noise[0][picks], self.noise[1][picks])[..., None]
        return self.augmenter(images, targets, noise)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self._rng.permutation(len(self.rows))
