"""Batch augmentation of spectrogram images, written with keras.ops (any backend).

Configured like the 2018 baseline: a mapping of augmentation name -> strength, a probability that
a sample is augmented at all, and the most augmentations one sample gets. Each augmented sample
draws its own subset of the enabled augmentations; per-sample quantities (masks, gains, noise
weights) are drawn per sample, shift, pitch, stretch and crop sizes once per batch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, ClassVar

import keras
import numpy as np
from keras import ops

EQ_POINTS = 5  # control points of the "eq" gain curve, evenly spread from the lowest row to the highest
BATCH_WIDE = ("mixup", "mixstyle")  # mix a sample with others of its batch: computed on the whole batch

# chunks to mix in: an array, or a function of batch positions giving one chunk for each
Chunks = np.ndarray | Callable[[np.ndarray], np.ndarray]

# name -> what the strength means
AUGMENTATIONS = {
    "roll_v": "largest frequency shift, as a share of the image height (wraps around)",
    "roll_h": "largest time shift, as a share of the image width (wraps around)",
    "pitch": "largest relative change of every frequency (0.1 = +-10%: warmer, smaller, other individual)",
    "stretch": "largest relative change of the tempo at the same pitch (0.1 = +-10%: insects' and frogs' "
               "pulse and chirp rates follow temperature)",
    "noise": "largest weight of a random noise-set chunk added to the image",
    "same_class": "largest weight of a chunk of the same class from another recording added to the "
                  "image (two individuals or sites at once: what they share is the species')",
    "gaussian": "standard deviation of added gaussian noise",
    "time_mask": "widest SpecAugment time mask, as a share of the width",
    "freq_mask": "widest SpecAugment frequency mask, as a share of the height",
    "mixup": "Beta(a, a) parameter of the mixing weight (images and targets mixed)",
    "mixstyle": "Beta(a, a) parameter of the weight that mixes each row's mean and spread over time with "
                "another sample's (Freq-MixStyle: another recorder or site, same song)",
    "eq": "largest gain of a random smooth frequency response (image units: 0.1 = 8 dB of an 80-dB range)",
    "brightness": "largest value added or subtracted",
    "multiply": "largest relative gain change",
    "blur": "unused (3x3 box blur)",
    "crop": "largest share cut from each side before zooming back to full size",
}


def _interpolate(x, position: np.ndarray, axis: int, wrap: bool):
    """Linear interpolation along ``axis`` (1 rows, 2 columns): index i of the result lies at
    ``position[i]``; past the last row or column it wraps to the first or stays on the last."""
    size = x.shape[axis]
    low = np.floor(position).astype("int32")
    high = (low + 1) % size if wrap else np.minimum(low + 1, size - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = len(position)
    weight = (position - low).astype("float32").reshape(shape)
    return (1.0 - weight) * ops.take(x, low, axis=axis) + weight * ops.take(x, high, axis=axis)


@dataclass
class Augmenter:
    """Callable (images, targets, noise) -> (images, targets); images are (B, H, W, 1) in [0, 1]."""

    strengths: dict[str, float]
    probability: float = 0.5
    max_count: int = 2
    seed: int = 0
    row_hz: np.ndarray | None = None  # centre frequency of each image row, top row first ("pitch")

    def __post_init__(self):
        unknown = set(self.strengths) - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; choose from {sorted(AUGMENTATIONS)}")
        if not 0 <= self.probability <= 1 or self.max_count < 1:
            raise ValueError("AUGMENTATION_PROBABILITY must be in [0, 1] and AUGMENTATION_COUNT >= 1")
        if "pitch" in self.strengths and (self.row_hz is None or not 0 < self.strengths["pitch"] < 1):
            raise ValueError("the pitch augmentation needs a strength in (0, 1) and the image rows' "
                             "frequencies (row_hz)")
        self.names = sorted(self.strengths)
        self._own_rng = np.random.default_rng(self.seed)
        self._batch_rng = threading.local()  # each batch-building thread's current generator

    @property
    def _rng(self) -> np.random.Generator:
        return getattr(self._batch_rng, "rng", self._own_rng)

    def choose(self, batch: int) -> np.ndarray:
        """(batch, n_augmentations) booleans: which augmentations each sample gets."""
        chosen = np.zeros((batch, len(self.names)), bool)
        augmented = self._rng.random(batch) < self.probability
        for row in np.flatnonzero(augmented):
            count = self._rng.integers(1, min(self.max_count, len(self.names)) + 1)
            chosen[row, self._rng.choice(len(self.names), size=count, replace=False)] = True
        return chosen

    def __call__(self, images: np.ndarray, targets: np.ndarray, noise: Chunks | None = None,
                 rng: np.random.Generator | None = None, same_class: Chunks | None = None):
        """``noise``: chunks of the noise set ("noise" mixes random ones in); ``same_class``: one
        chunk per image, of its class but from another recording ("same_class" mixes each image
        with its own; the targets stay, so a partner's background labels are not added). Either
        may instead be a function of the batch positions drawn for the augmentation that returns
        one chunk for each (random noise chunks, or those positions' partners): it is asked for
        those samples only, so a batcher reads no more chunks than are mixed in. ``rng`` makes
        the batch's randomness come from the caller (per-batch seeds make training reproducible
        and resumable); without it the augmenter's own stream is used.

        Each augmentation is computed on the samples drawn for it alone (about one in seven with
        the defaults), not on the whole batch: building batches is what keeps a GPU waiting."""
        if not self.names or len(images) == 0:
            return images, targets
        self._batch_rng.rng = rng if rng is not None else self._own_rng
        chosen = self.choose(len(images))  # uses self._rng, set above
        # The batch stays on the host; each augmentation's samples go through keras.ops and back
        # into their rows (computing each on the whole batch and keeping the chosen rows, as
        # before, did about seven times the work, and copying rows into a batch tensor copies it).
        x = np.array(images, dtype=np.float32)  # a copy: the caller's images stay as they were
        y = np.asarray(targets, dtype=np.float32)
        sources = {"noise": self._source(noise, random_picks=True),
                   "same_class": self._source(same_class, random_picks=False)}
        for column, name in enumerate(self.names):
            positions = np.flatnonzero(chosen[:, column])
            if not len(positions) or (name in sources and sources[name] is None):
                continue
            strength = float(self.strengths[name])
            if name == "mixup":  # the partners come from the whole batch, and the targets mix too
                mixed, y = self._mixup(ops.convert_to_tensor(x), ops.convert_to_tensor(y),
                                       ops.convert_to_tensor(chosen[:, column]), strength)
                x, y = np.array(ops.convert_to_numpy(mixed)), np.array(ops.convert_to_numpy(y))
                continue
            if name in BATCH_WIDE:  # statistics of the whole batch: computed on all of it
                changed = self._ops[name](self, ops.convert_to_tensor(x), strength, None)
                x[positions] = ops.convert_to_numpy(changed)[positions]
                continue
            chunks = sources[name](positions) if name in sources else None
            x[positions] = ops.convert_to_numpy(
                self._ops[name](self, ops.convert_to_tensor(x[positions]), strength, chunks))
        return x, y

    def _source(self, given: Chunks | None, random_picks: bool) -> Callable | None:
        """Chunks to mix in as a function of batch positions, or None when there are none: a
        function is used as it is; an array gives random chunks of it (``random_picks``, the
        noise set) or the chunk at each position (one per image)."""
        if given is None or callable(given):
            return given
        chunks = np.asarray(given)
        if not len(chunks):
            return None
        if random_picks:
            return lambda positions: chunks[self._rng.integers(0, len(chunks), len(positions))]
        return lambda positions: chunks[positions]

    # --------------------------------------------------------------- the augmentations

    def _key(self) -> int:
        """An integer seed for one keras.random call, drawn from the batch's generator."""
        return int(self._rng.integers(0, 2**31 - 1))

    def _uniform(self, shape, low=0.0, high=1.0):
        """Per-sample parameters: drawn on the host (tiny), the image math stays in keras.ops."""
        return ops.convert_to_tensor(self._rng.uniform(low, high, shape).astype("float32"))

    def _factor(self, share: float) -> float:
        """One factor for the whole batch, within 1 +- share (pitch, tempo)."""
        return float(self._rng.uniform(1.0 - share, 1.0 + share))

    def _roll(self, x, share, axis):
        size = x.shape[axis]
        limit = max(1, int(share * size))
        return ops.roll(x, int(self._rng.integers(-limit, limit + 1)), axis=axis)

    def _add(self, x, strength, chunks):
        """Each image plus its own chunk of ``chunks``, weighted by up to ``strength``, scaled
        back into [0, 1] where the sum went above."""
        chunk = ops.convert_to_tensor(np.asarray(chunks), dtype="float32")
        weight = self._uniform((len(x), 1, 1, 1), 0.0, strength)
        mixed = x + weight * chunk
        return mixed / ops.maximum(ops.max(mixed, axis=(1, 2, 3), keepdims=True), 1.0)

    def _band_mask(self, x, share, axis):
        size = x.shape[axis]
        width = np.floor(self._rng.uniform(0, 1, (len(x), 1)) * share * size)
        start = np.floor(self._rng.uniform(0, 1, (len(x), 1)) * (size - width))
        position = np.arange(size)[None, :]
        inside = ops.convert_to_tensor((position >= start) & (position < start + width))
        shape = (len(x), size, 1, 1) if axis == 1 else (len(x), 1, size, 1)
        return ops.where(ops.reshape(inside, shape), 0.0, x)

    def _partners(self, size: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """For each sample another one of the batch, and the weight of its own part (Beta(a, a))."""
        order = self._rng.permutation(size)
        return order, self._rng.beta(alpha, alpha, size).astype("float32")

    def _mixup(self, x, y, mask, alpha):
        order, lam = self._partners(len(x), alpha)
        lam = ops.where(mask, ops.maximum(lam, 1.0 - lam), 1.0)  # the sample's own image dominates
        x2, y2 = ops.take(x, order, axis=0), ops.take(y, order, axis=0)
        x = lam[:, None, None, None] * x + (1.0 - lam[:, None, None, None]) * x2
        y = lam[:, None] * y + (1.0 - lam[:, None]) * y2
        return x, y

    def _equalise(self, x, strength):
        """Another microphone, distance or habitat: a gain curve through random points spread over
        the band, added to every pixel above the floor, the peak then put back where it was (as
        extraction normalises each chunk to its peak), so the floor stays the floor."""
        rows = x.shape[1]
        points = self._rng.uniform(-strength, strength, (len(x), EQ_POINTS))
        curve = np.stack([np.interp(np.arange(rows), np.linspace(0, rows - 1, EQ_POINTS), p) for p in points])
        shifted = x + ops.convert_to_tensor(curve.astype("float32")[:, :, None, None])
        peak_change = ops.max(shifted, axis=(1, 2, 3), keepdims=True) - ops.max(x, axis=(1, 2, 3), keepdims=True)
        return ops.where(x > 0, ops.clip(shifted - peak_change, 0, 1), x)

    def _mix_style(self, x, alpha):
        """Freq-MixStyle (Kim et al. 2022, DCASE device generalisation): each row is standardised
        over time, then given a mean and spread mixed with those of the same row in another sample
        of the batch. What a recorder, distance or site does to the spectrum moves between samples;
        the song's shape in time stays."""
        mean = ops.mean(x, axis=(2, 3), keepdims=True)
        spread = ops.sqrt(ops.var(x, axis=(2, 3), keepdims=True) + 1e-6)
        order, lam = self._partners(len(x), alpha)
        lam = ops.convert_to_tensor(lam.reshape(-1, 1, 1, 1))
        mixed_mean = lam * mean + (1.0 - lam) * ops.take(mean, order, axis=0)
        mixed_spread = lam * spread + (1.0 - lam) * ops.take(spread, order, axis=0)
        return ops.clip((x - mean) / spread * mixed_spread + mixed_mean, 0, 1)

    def _blur(self, x, strength, noise):
        kernel = ops.ones((3, 3, 1, 1), dtype="float32") / 9.0
        return ops.conv(x, kernel, strides=1, padding="same")

    def _pitch(self, x, factor: float):
        """Every frequency times ``factor``, on any frequency scale: a row shows what the row at
        its frequency / factor showed (interpolated); rows whose source lies outside the band
        become the floor. A roll on a linear scale would move harmonics off their multiples."""
        top_first = np.asarray(self.row_hz, np.float64)
        rows = len(top_first)
        if x.shape[1] != rows:
            raise ValueError(f"pitch: images have {x.shape[1]} rows, row_hz gives {rows}")
        # np.interp wants ascending frequencies: the rows bottom-up, each with its index from the top
        position = np.interp(top_first / factor, top_first[::-1], np.arange(rows - 1, -1, -1.0),
                             left=np.nan, right=np.nan)
        outside = np.isnan(position)
        position[outside] = 0.0
        keep = (~outside).astype("float32")[None, :, None, None]
        return _interpolate(x, position, axis=1, wrap=False) * keep

    def _stretch(self, x, factor: float):
        """Tempo times ``factor``, rows untouched: column c shows what column offset + c * factor
        showed (interpolated). A faster song needs more time than the chunk holds, so its end
        wraps round to the chunk's start, as in a roll; a slower one shows a random stretch of it."""
        width = x.shape[2]
        offset = self._rng.uniform(0.0, max(0.0, (width - 1) * (1.0 - factor)))
        position = (offset + np.arange(width) * factor) % width
        return _interpolate(x, position, axis=2, wrap=True)

    def _crop(self, x, share, noise):
        height, width = x.shape[1], x.shape[2]
        top, left = (int(self._rng.integers(0, max(1, int(share * s)) + 1)) for s in (height, width))
        bottom, right = (int(self._rng.integers(0, max(1, int(share * s)) + 1)) for s in (height, width))
        cropped = x[:, top:height - bottom, left:width - right, :]
        return ops.image.resize(cropped, (height, width), interpolation="bilinear")

    _ops: ClassVar[dict[str, Callable]] = {
        "roll_v": lambda self, x, s, n: self._roll(x, s, 1),
        "roll_h": lambda self, x, s, n: self._roll(x, s, 2),
        "pitch": lambda self, x, s, n: self._pitch(x, self._factor(s)),
        "stretch": lambda self, x, s, n: self._stretch(x, self._factor(s)),
        "noise": lambda self, x, s, n: self._add(x, s, n),
        "same_class": lambda self, x, s, n: self._add(x, s, n),
        "gaussian": lambda self, x, s, n: ops.clip(x + keras.random.normal(x.shape, stddev=s, seed=self._key()), 0, 1),
        "time_mask": lambda self, x, s, n: self._band_mask(x, s, 2),
        "freq_mask": lambda self, x, s, n: self._band_mask(x, s, 1),
        "eq": lambda self, x, s, n: self._equalise(x, s),
        "mixstyle": lambda self, x, s, n: self._mix_style(x, s),
        "brightness": lambda self, x, s, n: ops.clip(x + self._uniform((len(x), 1, 1, 1), -s, s), 0, 1),
        "multiply": lambda self, x, s, n: ops.clip(x * self._uniform((len(x), 1, 1, 1), 1 - s, 1 + s), 0, 1),
        "blur": lambda self, x, s, n: self._blur(x, s, n),
        "crop": lambda self, x, s, n: self._crop(x, s, n),
    }
