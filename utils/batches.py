"""Batches of store chunks for Keras (a PyDataset, so every backend can train from it)."""
from __future__ import annotations

import concurrent.futures as cf
import math
import os
import threading

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from utils.store import Store


def batch_threads(asked: int = 0) -> int:
    """Threads that build training batches: ``asked`` (BATCH_THREADS), or for 0 half this
    machine's cores, 1 to 4. On a 2-core machine the model needs the other core; on a GPU host one
    thread fed an H200 a quarter of what it trains on, four threads 0.39 and eight no more
    (BENCHMARKS.md, training input)."""
    return asked or max(1, min(4, (os.cpu_count() or 2) // 2))


class SameClassPartners:
    """Draws, for chunks, another chunk of the same class from another recording (any chunk of
    the class when it has one recording only) for the "same_class" augmentation."""

    def __init__(self, classes: np.ndarray, recordings: np.ndarray):
        _, recording_ids = np.unique(np.asarray(recordings, dtype=str), return_inverse=True)
        classes = np.asarray(classes, np.int64)
        key = classes * (recording_ids.max() + 1) + recording_ids  # class first, then recording
        self.order = np.argsort(key, kind="stable")  # each class a block, each recording within it
        classes_sorted, key_sorted = classes[self.order], key[self.order]
        self.class_start = np.searchsorted(classes_sorted, classes, "left")
        self.class_size = np.searchsorted(classes_sorted, classes, "right") - self.class_start
        self.own_start = np.searchsorted(key_sorted, key, "left")
        self.own_size = np.searchsorted(key_sorted, key, "right") - self.own_start

    def draw(self, chunks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A partner for each of ``chunks`` (indices into the arrays given at construction)."""
        others = self.class_size[chunks] - self.own_size[chunks]
        alone = others == 0  # the class has this recording only
        pick = np.floor(rng.random(len(chunks)) * np.where(alone, self.class_size[chunks], others))
        position = self.class_start[chunks] + pick.astype(np.int64)
        skip = ~alone & (position >= self.own_start[chunks])  # step over the chunk's own recording
        return self.order[np.where(skip, position + self.own_size[chunks], position)]


SAMPLE_BALANCE = ("weights", "sampling")  # the balancing done by the batches (the loss does the rest)


class ChunkBatches(keras.utils.PyDataset):
    """(images, targets) batches from selected store rows; reshuffled every epoch when training."""

    def __init__(self, store: Store, shards: np.ndarray, rows: np.ndarray, targets: np.ndarray,
                 batch_size: int, shuffle: bool = False, seed: int = 0, augmenter=None,
                 noise: tuple[np.ndarray, np.ndarray] | None = None, balance: str = "none",
                 classes: np.ndarray | None = None, epoch: int = 0, prefetch: int = 0,
                 recordings: np.ndarray | None = None, **kwargs):
        """``augmenter`` (utils.augment.Augmenter) changes training batches; ``noise`` is the
        (shards, rows) of the noise chunks it may mix in. ``balance`` with each chunk's class index
        in ``classes``: "weights" adds per-sample weights (sklearn's balanced class weights),
        "sampling" draws each epoch's chunks with replacement so classes come up equally often.
        ``prefetch``: background threads that build the batches asked for next while the model
        trains (0: each batch is built when asked for). Batches depend on (seed, epoch, index)
        only, so the thread count never changes them. The "same_class" augmentation needs each
        chunk's class (``classes``) and ``recordings``."""
        super().__init__(**kwargs)
        if balance not in ("none", *SAMPLE_BALANCE):
            raise ValueError(f"balance must be none, weights or sampling, got {balance!r}")
        self.balance = balance
        self.weights = self.draw_probability = None
        if balance != "none":
            if classes is None:
                raise ValueError("class balancing needs each chunk's class")
            present = np.unique(classes)
            per_class = compute_class_weight("balanced", classes=present, y=classes)
            self.weights = per_class[np.searchsorted(present, classes)].astype(np.float32)
            self.draw_probability = self.weights / self.weights.sum()
        self.augmenter = augmenter
        self.noise = noise if noise is not None and len(noise[0]) else None
        self.partners = None
        if augmenter is not None and "same_class" in augmenter.strengths:
            if classes is None or recordings is None:
                raise ValueError("the same_class augmentation needs each chunk's class and recording")
            self.partners = SameClassPartners(classes, recordings)
        if not len(rows) == len(shards) == len(targets):
            raise ValueError("shards, rows and targets must have one entry per chunk")
        self.store, self.shards, self.rows = store, np.asarray(shards), np.asarray(rows)
        self.targets = np.asarray(targets, np.float32)
        self.batch_size, self.shuffle = int(batch_size), shuffle
        # Epochs advance when batch 0 is asked for right after the last batch, not on Keras'
        # epoch callbacks: tf.data may prefetch the next epoch's first batches before those run,
        # and Keras peeks at batch 0 before training. The first epoch is given (resume).
        self.seed, self.epoch, self._last_index = seed, epoch, -1
        self.prefetch, self._pool, self._pending = prefetch, None, {}
        self._orders: dict[int, np.ndarray] = {}
        self._orders_lock = threading.Lock()

    def _new_order(self, epoch: int | None = None) -> np.ndarray:
        """An epoch's chunk order: a function of (seed, epoch) only, so a resumed run repeats it."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        if self.balance == "sampling":
            return rng.choice(len(self.rows), size=len(self.rows), p=self.draw_probability)
        return rng.permutation(len(self.rows))

    @property
    def order(self) -> np.ndarray:
        return self._order_of(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        if self.shuffle and index == 0 and self._last_index == len(self) - 1:
            self.set_epoch(self.epoch + 1)
        self._last_index = index
        if not self.prefetch:
            return self._make_batch(self.epoch, index)
        # The threads build this batch and the next ``prefetch`` ones while the model trains: an
        # accelerator consumes batches faster than one thread augments them (BENCHMARKS.md).
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=self.prefetch, thread_name_prefix="batches")
        key = (self.epoch, index)
        future = self._pending.pop(key, None) or self._pool.submit(self._make_batch, *key)
        ahead = {}
        for _ in range(self.prefetch):
            key = key[0], key[1] + 1
            if key[1] == len(self):
                key = key[0] + 1, 0
            ahead[key] = self._pending.pop(key, None) or self._pool.submit(self._make_batch, *key)
        self._pending = ahead
        return future.result()

    def _order_of(self, epoch: int) -> np.ndarray:
        """The order of ``epoch``, computed once and kept for it and the next (the prefetch
        threads ask for the next epoch while the main thread is still in this one)."""
        if not self.shuffle:
            epoch = 0
        with self._orders_lock:
            if epoch not in self._orders:
                order = self._new_order(epoch) if self.shuffle else np.arange(len(self.rows))
                self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
                self._orders[epoch] = order
            return self._orders[epoch]

    def _make_batch(self, epoch: int, index: int):
        """The batch for (epoch, index): a function of the seed, the epoch and the index only."""
        chosen = self._order_of(epoch)[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.store.images(self.shards[chosen], self.rows[chosen])[..., None]
        targets = self.targets[chosen]
        if self.augmenter is not None:
            rng = np.random.default_rng([self.seed, epoch, index])  # batch-local randomness
            # the augmenter asks for the chunks it mixes in, for the samples drawn for it only
            noise = partners = None
            if self.noise is not None and "noise" in self.augmenter.strengths:
                def noise(positions):
                    picks = rng.integers(0, len(self.noise[0]), len(positions))
                    return self.store.images(self.noise[0][picks], self.noise[1][picks])[..., None]
            if self.partners is not None:
                def partners(positions):
                    drawn = self.partners.draw(chosen[positions], rng)
                    return self.store.images(self.shards[drawn], self.rows[drawn])[..., None]
            images, targets = self.augmenter(images, targets, noise, rng=rng, same_class=partners)
        if self.balance == "weights":
            return images, targets, self.weights[chosen]
        return images, targets

    def close(self) -> None:
        """Stop the prefetch threads once training is over: the batches they were building ahead
        are dropped, and a process that trains several models does not keep each one's threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._pending = None, {}

    def on_epoch_end(self) -> None:
        """Nothing: the next epoch starts when its first batch is asked for (see __init__)."""
