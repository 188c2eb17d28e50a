"""Challenge metrics, computed with scikit-learn; docs/metrics.md says which challenge uses which.

Every function takes targets as a 0/1 matrix (n_rows, n_classes) (primary + background labels,
or the labels of a soundscape window) or primary class indices, and scores of the same shape.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (average_precision_score, confusion_matrix, f1_score,
                             label_ranking_average_precision_score, precision_recall_fscore_support,
                             roc_auc_score, top_k_accuracy_score)


def mlrap(targets: np.ndarray, scores: np.ndarray) -> float:
    """BirdCLEF 2018 monophone: label ranking average precision over recordings (rows without any
    target are left out: there is nothing to rank)."""
    targets = np.asarray(targets)
    keep = targets.sum(axis=1) > 0
    if not keep.any():
        return float("nan")
    return float(label_ranking_average_precision_score(targets[keep], np.asarray(scores)[keep]))


def top_k_accuracy(primary: np.ndarray, scores: np.ndarray, k: int = 1) -> float:
    """Share of rows whose primary class (index) is among the k highest scores."""
    scores = np.asarray(scores, dtype=np.float64)
    n_classes = scores.shape[1]
    if len(primary) == 0:
        return float("nan")
    if n_classes <= 2 or k >= n_classes:  # sklearn's binary form wants 1-d scores; do it directly
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return float(np.mean([p in row for p, row in zip(primary, top)]))
    return float(top_k_accuracy_score(primary, scores, k=k, labels=np.arange(n_classes)))


def row_micro_f1(targets: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """BirdCLEF 2021: F1 between the predicted set (classes scoring >= threshold) and the true
    set of each row, averaged over rows. An empty set is the label "nocall", so a row with no
    animal predicted as such scores 1."""
    targets = np.asarray(targets) > 0
    predicted = np.asarray(scores) >= threshold
    truth = np.column_stack([targets, ~targets.any(axis=1)])
    guess = np.column_stack([predicted, ~predicted.any(axis=1)])
    return float(f1_score(truth, guess, average="samples", zero_division=0))


def padded_cmap(targets: np.ndarray, scores: np.ndarray, padding: int = 5) -> float:
    """BirdCLEF 2023: macro average precision after appending ``padding`` rows in which every
    class is both present and predicted (so classes absent from the test set still count, and
    score near 1 unless false positives rank above the padding)."""
    targets = np.asarray(targets, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    ones = np.ones((padding, targets.shape[1]))
    return float(average_precision_score(np.vstack([targets, ones]), np.vstack([scores, ones]),
                                         average="macro"))


def macro_roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """BirdCLEF 2024-2025: ROC-AUC per class, averaged over the classes that have at least one
    positive row (classes with none are skipped, as the challenges' metric does). NaN when no class
    has both positive and negative rows."""
    targets = np.asarray(targets)
    scored = targets.sum(axis=0) > 0
    scored &= targets.sum(axis=0) < len(targets)  # AUC needs negatives too
    if not scored.any():
        return float("nan")
    return float(roc_auc_score(targets[:, scored], np.asarray(scores)[:, scored], average="macro"))


def macro_f1(primary: np.ndarray, scores: np.ndarray) -> float:
    """F1 of the top-1 decision, averaged over the classes that are some row's primary label
    (a class no row holds has no recall to speak of)."""
    present = np.unique(primary)
    return float(f1_score(primary, np.argmax(scores, axis=1), labels=present, average="macro",
                          zero_division=0))


def per_class(targets: np.ndarray, scores: np.ndarray, primary: np.ndarray, classes: list[str]
              ) -> dict[str, np.ndarray]:
    """Per class: support, precision/recall/F1 of the top-1 decision, AP and ROC-AUC of the scores
    (NaN where a class has no positive or no negative row)."""
    targets = np.asarray(targets)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.arange(len(classes))
    predicted = np.argmax(scores, axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        primary, predicted, labels=labels, zero_division=0)
    ap = np.full(len(classes), np.nan)
    auc = np.full(len(classes), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in labels:
            positives = targets[:, c].sum()
            if 0 < positives < len(targets):
                ap[c] = average_precision_score(targets[:, c], scores[:, c])
                auc[c] = roc_auc_score(targets[:, c], scores[:, c])
    return {"class": np.asarray(classes), "support": support, "predicted": np.bincount(
        predicted, minlength=len(classes)), "precision": precision, "recall": recall, "f1": f1,
        "average_precision": ap, "roc_auc": auc}


def confusion(primary: np.ndarray, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """(true, predicted) counts of the top-1 decision."""
    return confusion_matrix(primary, np.argmax(scores, axis=1), labels=np.arange(n_classes))


def target_matrix(labels: list[list[str]], classes: list[str]) -> np.ndarray:
    """Multi-hot (n, classes) from label lists; labels the model does not know are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, names in enumerate(labels):
        for name in names:
            if name in index:
                out[row, index[name]] = 1.0
    return out
