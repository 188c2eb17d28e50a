import numpy as np
import pytest

from utils.metrics import mlrap, target_matrix, top_k_accuracy
from utils.pooling import pool, pool_groups


def test_median_filtered_pooling_by_hand():
    # medians 0.1 and 0.2 -> classes under 0.15 / 0.3 are zeroed -> mean((2p)^2) = [0, 2, 0] -> /max
    scores = [[0.1, 0.8, 0.1], [0.2, 0.6, 0.2]]
    assert pool(scores, "median_filtered").tolist() == [0.0, 1.0, 0.0]
    # a single chunk: 0.5 survives (median 0.3 * 1.5 = 0.45), (2 * 0.5)^2 = 1 is not rescaled
    assert pool([[0.5, 0.3, 0.2]], "median_filtered").tolist() == [1.0, 0.0, 0.0]
    # mixed: second class scores in one chunk only, so it ranks below the steady first class
    pooled = pool([[0.6, 0.1, 0.1, 0.1], [0.5, 0.4, 0.05, 0.05]], "median_filtered")
    assert np.argsort(-pooled).tolist()[:2] == [0, 1]


def test_mean_and_max_pooling():
    scores = [[0.1, 0.9], [0.3, 0.5]]
    assert np.allclose(pool(scores, "mean"), [0.2, 0.7])
    assert np.allclose(pool(scores, "max"), [0.3, 0.9])
    with pytest.raises(ValueError, match="POOLING"):
        pool(scores, "median")
    with pytest.raises(ValueError):
        pool(np.zeros((0, 2)), "mean")


def test_pool_groups_keeps_recordings_apart():
    keys, pooled = pool_groups(np.array([[1.0, 0], [0, 1.0], [0.5, 0.5]]), np.array(["b", "a", "b"]), "mean")
    assert keys.tolist() == ["a", "b"] and np.allclose(pooled, [[0, 1], [0.75, 0.25]])


def test_mlrap_by_hand():
    targets = [[1, 0, 0], [0, 1, 1]]
    scores = [[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]]
    # row 1: rank 1 -> 1; row 2: relevant at ranks 2 and 3 -> (1/2 + 2/3) / 2
    assert mlrap(np.array(targets), np.array(scores)) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)
    # a recording with no known label is left out instead of counting as zero
    assert mlrap(np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.1], [0.5, 0.5]])) == 1.0


def test_top_k_accuracy_by_hand():
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.7, 0.2]])
    assert top_k_accuracy(np.array([0, 2]), scores, 1) == 0.5
    assert top_k_accuracy(np.array([0, 2]), scores, 2) == 0.5
    assert top_k_accuracy(np.array([0, 2]), scores, 3) == 1.0
    assert top_k_accuracy(np.array([1]), np.array([[0.4, 0.6]]), 1) == 1.0  # two classes


def test_target_matrix_ignores_unknown_labels():
    assert target_matrix([["a", "zz"], ["b"]], ["a", "b"]).tolist() == [[1, 0], [0, 1]]
