"""Recording-level metrics, computed with scikit-learn.

- MLRAP (BirdCLEF 2018 monophone): label ranking average precision over recordings; with
  background labels counted as relevant when the targets include them.
- top-k accuracy: the primary label among the k highest scores.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score


def mlrap(targets: np.ndarray, scores: np.ndarray) -> float:
    """targets: (n, classes) 0/1 with at least one 1 per row; scores: same shape."""
    targets = np.asarray(targets)
    keep = targets.sum(axis=1) > 0
    if not keep.any():
        return float("nan")
    return float(label_ranking_average_precision_score(targets[keep], np.asarray(scores)[keep]))


def top_k_accuracy(primary: np.ndarray, scores: np.ndarray, k: int = 1) -> float:
    """primary: (n,) class indices; scores: (n, classes)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_classes = scores.shape[1]
    if len(primary) == 0:
        return float("nan")
    if n_classes <= 2 or k >= n_classes:  # sklearn's binary form wants 1-d scores; do it directly
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return float(np.mean([p in row for p, row in zip(primary, top)]))
    return float(top_k_accuracy_score(primary, scores, k=k, labels=np.arange(n_classes)))


def target_matrix(labels: list[list[str]], classes: list[str]) -> np.ndarray:
    """Multi-hot (n, classes) from label lists; labels the model does not know are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, names in enumerate(labels):
        for name in names:
            if name in index:
                out[row, index[name]] = 1.0
    return out
