"""Pooling chunk scores (n_chunks, n_classes) into one score vector per recording, or per window.

Monophone recordings (one focal animal) get one vector per file; soundscapes get one per fixed
window (BirdCLEF: 5 s) from the chunks that overlap it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POOLINGS = ("median_filtered", "mean", "max", "top_k_mean", "mean_exp", "log_mean")


def median_filtered(scores: np.ndarray) -> np.ndarray:
    """BirdCLEF 2018 baseline pooling for monophone recordings.

    In each chunk, classes scoring under 1.5x that chunk's median across classes are zeroed (they
    are background level); the rest are averaged as (2p)^2 over chunks, which favours classes that
    score high in several chunks, then shifted to start at 0 and scaled into [0, 1] if above 1.
    """
    p = np.array(scores, dtype=np.float64)
    p[p < np.median(p, axis=1, keepdims=True) * 1.5] = 0.0
    pooled = np.mean((p * 2.0) ** 2, axis=0)
    pooled -= pooled.min()
    if pooled.max() > 1.0:
        pooled /= pooled.max()
    return pooled


def top_k_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Per class, the mean of its k highest chunk scores: a call heard in a few chunks of a long
    file counts fully, one stray chunk less than with max."""
    k = max(1, min(int(k), len(scores)))
    return np.sort(scores, axis=0)[-k:].mean(axis=0)


def mean_exp(scores: np.ndarray, alpha: float) -> np.ndarray:
    """log(mean(exp(alpha * p))) / alpha: the mean at alpha -> 0, the max as alpha grows."""
    a = float(alpha)
    if a <= 0:
        raise ValueError(f"POOLING_ALPHA must be positive, got {alpha}")
    peak = scores.max(axis=0)  # subtracted for numerical safety
    return peak + np.log(np.mean(np.exp(a * (scores - peak)), axis=0)) / a


def log_mean(scores: np.ndarray) -> np.ndarray:
    """Geometric mean of the chunk scores: every chunk votes, a confident 'no' weighs heavily."""
    return np.exp(np.mean(np.log(np.clip(scores, 1e-7, None)), axis=0))


def pool(scores: np.ndarray, method: str = "median_filtered", k: int = 3, alpha: float = 5.0
         ) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError("pooling needs a non-empty (n_chunks, n_classes) array")
    if method == "median_filtered":
        return median_filtered(scores)
    if method == "mean":
        return scores.mean(axis=0)
    if method == "max":
        return scores.max(axis=0)
    if method == "top_k_mean":
        return top_k_mean(scores, k)
    if method == "mean_exp":
        return mean_exp(scores, alpha)
    if method == "log_mean":
        return log_mean(scores)
    raise ValueError(f"unknown POOLING {method!r}; choose from {POOLINGS}")


@dataclass(frozen=True)
class Pooling:
    """A pooling method with its parameters (POOLING, POOLING_TOP_K, POOLING_ALPHA)."""

    method: str = "median_filtered"
    top_k: int = 3
    alpha: float = 5.0

    def __post_init__(self):
        if self.method not in POOLINGS:
            raise ValueError(f"unknown POOLING {self.method!r}; choose from {POOLINGS}")
        if self.top_k < 1 or self.alpha <= 0:
            raise ValueError("POOLING_TOP_K must be >= 1 and POOLING_ALPHA > 0")

    @classmethod
    def from_settings(cls, s) -> "Pooling":
        return cls(s["POOLING"], s["POOLING_TOP_K"], s["POOLING_ALPHA"])

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return pool(scores, self.method, k=self.top_k, alpha=self.alpha)

    def per_file(self, scores: np.ndarray, *_) -> np.ndarray:
        """One vector per file: a ``reduce`` for :func:`utils.inference.ensemble_scores`."""
        return self(scores)


def pool_groups(scores: np.ndarray, groups: np.ndarray, pooling: Pooling | str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows sharing a group key: (sorted unique keys, (n_groups, n_classes) pooled scores)."""
    pooling = Pooling(pooling) if isinstance(pooling, str) else pooling
    groups = np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    pooled = np.stack([pooling(scores[inverse == k]) for k in range(len(keys))])
    return keys, pooled


def window_scores(starts: np.ndarray, scores: np.ndarray, chunk_length: float, duration: float,
                  window: float = 5.0, method: str = "max", **options
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scores per fixed window [w, w + window) of a soundscape: (window ends, (n, classes)).

    A window pools every chunk that overlaps it by more than a quarter of a chunk, so a call at a
    window's edge counts in both windows it touches; a window no chunk reaches (after the last
    chunk of a short file) gets the nearest chunk's scores. Windows are numbered by their end time
    in seconds, as BirdCLEF row ids are (``<file>_5``, ``<file>_10``...).
    """
    if window <= 0:
        raise ValueError(f"SUBMISSION_WINDOW must be positive, got {window}")
    order = np.argsort(starts, kind="stable")  # test-time shifts append grids out of order
    starts = np.asarray(starts, dtype=np.float64)[order]
    scores = np.asarray(scores, dtype=np.float64)[order]
    n_windows = max(1, int(np.ceil(round(duration / window, 6))))
    ends = window * np.arange(1, n_windows + 1)
    # a chunk [s, s + L) overlaps [end - W, end) by more than q exactly when
    # end - W - L + q < s < end - q: two binary searches per window instead of a scan of the file
    q = min(chunk_length, window) / 4
    first = np.searchsorted(starts, ends - window - chunk_length + q, side="right")
    stop = np.searchsorted(starts, ends - q, side="left")
    centres = starts + chunk_length / 2
    out = np.empty((n_windows, scores.shape[1]))
    for i, (lo, hi) in enumerate(zip(first, stop)):
        if hi > lo:
            out[i] = pool(scores[lo:hi], method, **options)
        else:
            distance = np.abs(centres - (ends[i] - window / 2))
            out[i] = pool(scores[distance == distance.min()], method, **options)
    return ends, out
