"""Pooling chunk scores (n_chunks, n_classes) into one score vector per recording."""
from __future__ import annotations

import numpy as np

POOLINGS = ("median_filtered", "mean", "max")


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


def pool(scores: np.ndarray, method: str = "median_filtered") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError("pooling needs a non-empty (n_chunks, n_classes) array")
    if method == "median_filtered":
        return median_filtered(scores)
    if method == "mean":
        return scores.mean(axis=0)
    if method == "max":
        return scores.max(axis=0)
    raise ValueError(f"unknown POOLING {method!r}; choose from {POOLINGS}")


def pool_groups(scores: np.ndarray, groups: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Pool rows sharing a group key: (sorted unique keys, (n_groups, n_classes) pooled scores)."""
    groups = np.asarray(groups)
    keys, inverse = np.unique(groups, return_inverse=True)
    pooled = np.stack([pool(scores[inverse == k], method) for k in range(len(keys))])
    return keys, pooled
