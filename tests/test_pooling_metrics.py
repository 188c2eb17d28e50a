import numpy as np
import pytest

from utils.metrics import (confusion, macro_f1, macro_roc_auc, mlrap, padded_cmap, per_class,
                           row_micro_f1, target_matrix, top_k_accuracy)
from utils.pooling import pool, pool_groups, window_scores


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


def test_top_k_mean_exp_and_log_mean_pooling_by_hand():
    scores = [[0.1, 0.9], [0.3, 0.5], [0.2, 0.7]]
    assert np.allclose(pool(scores, "top_k_mean", k=2), [0.25, 0.8])
    assert np.allclose(pool(scores, "top_k_mean", k=10), pool(scores, "mean"))  # k clipped
    # class 0: log((e^0 + e^(ln 3)) / 2) / ln 3 = log 2 / log 3
    assert np.allclose(pool([[0.0, 1.0], [1.0, 1.0]], "mean_exp", alpha=np.log(3)),
                       [np.log(2) / np.log(3), 1.0])
    assert np.allclose(pool(scores, "mean_exp", alpha=1e-6), pool(scores, "mean"), atol=1e-6)
    assert np.allclose(pool(scores, "mean_exp", alpha=1e4), pool(scores, "max"), atol=1e-3)
    assert np.allclose(pool([[0.25, 0.5], [1.0, 0.5]], "log_mean"), [0.5, 0.5])
    with pytest.raises(ValueError, match="POOLING_ALPHA"):
        pool(scores, "mean_exp", alpha=0)


def test_window_scores_pool_the_chunks_each_window_overlaps():
    starts = np.arange(0, 6.01, 0.75)  # 1-s chunks every 0.75 s of a 7-s file
    scores = np.column_stack([starts, 10 - starts])
    ends, windows = window_scores(starts, scores, 1.0, 7.0, window=5.0, method="max")
    assert ends.tolist() == [5.0, 10.0]
    # [0, 5): chunks up to the one at 4.5 (0.5 s inside); [5, 10): from 4.5 to the last at 6.0
    assert np.allclose(windows, [[4.5, 10.0], [6.0, 5.5]])
    # a window after the last chunk gets the nearest chunk's scores
    ends, windows = window_scores(starts, scores, 1.0, 12.0, window=5.0, method="max")
    assert ends.tolist() == [5.0, 10.0, 15.0] and np.allclose(windows[2], [6.0, 4.0])


def test_row_micro_f1_by_hand():
    targets = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    scores = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.3]])
    # rows: {0,1} vs {0} -> 2/3; {1} vs {1,2} -> 2/3; nothing vs nothing ("nocall") -> 1
    assert row_micro_f1(targets, scores, 0.5) == pytest.approx(7 / 9)
    assert row_micro_f1(targets, scores, 0.05) == pytest.approx((2 / 4 + 2 * 2 / 5 + 0) / 3)


def test_padded_cmap_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 0]])
    scores = np.array([[0.9, 0.2], [0.8, 0.6], [0.3, 0.1]])
    # class 0 with one padding row: positives at ranks 1, 2, 4 -> (1 + 1 + 3/4) / 3; class 1: 1
    assert padded_cmap(targets, scores, padding=1) == pytest.approx(((1 + 1 + 0.75) / 3 + 1) / 2)
    # 5 padding rows tie at the top: recall 5/7 at precision 1, then +1/7 at 1, +1/7 at 7/8
    assert padded_cmap(targets, scores) == pytest.approx(((6 / 7 + 1 / 8) + 1) / 2)


def test_macro_roc_auc_skips_classes_without_positives():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.1, 0.9], [0.4, 0.8, 0.1], [0.3, 0.2, 0.5], [0.5, 0.3, 0.2]])
    # class 0: positives 0.9, 0.3 vs negatives 0.4, 0.5 -> 2 of 4 pairs; class 1: 1; class 2 skipped
    assert macro_roc_auc(targets, scores) == pytest.approx(0.75)
    assert np.isnan(macro_roc_auc(np.zeros((2, 2)), scores[:2, :2]))


def test_macro_f1_averages_over_the_classes_the_rows_hold():
    primary = np.array([0, 1, 0, 2])
    scores = np.eye(4)[[0, 0, 1, 3]]  # top-1 decisions 0, 0, 1, 3; no row holds class 3
    # class 0: one right of two predicted and of two true -> F1 1/2; classes 1 and 2: F1 0.
    # Class 3 (predicted once, held by no row) is left out: 1/2 over 3 classes, not over 4
    assert macro_f1(primary, scores) == pytest.approx(0.5 / 3)


def test_per_class_metrics_and_confusion_by_hand():
    primary = np.array([0, 1, 0, 2])
    scores = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    table = per_class(np.eye(3)[primary], scores, primary, ["a", "b", "c"])
    assert table["support"].tolist() == [2, 1, 1] and table["predicted"].tolist() == [2, 1, 1]
    assert np.allclose(table["precision"], [0.5, 0, 1]) and np.allclose(table["recall"], [0.5, 0, 1])
    assert np.allclose(table["f1"], [0.5, 0, 1])
    # class a: positives 0.9 and 0.2 among 0.6 and 0.1 -> AP (1 + 2/3) / 2, AUC 3/4
    assert table["average_precision"][0] == pytest.approx((1 + 2 / 3) / 2)
    assert table["roc_auc"][0] == pytest.approx(0.75)
    assert confusion(primary, scores, 3).tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]


def test_window_scores_match_the_overlap_definition_on_shuffled_grids():
    """The binary-search windows equal a scan of every chunk, also with test-time-shift grids
    appended out of order."""
    rng = np.random.default_rng(0)
    grid = np.arange(0, 58, 0.75)
    starts = np.concatenate([grid, grid[:-1] + 0.3])  # a shifted grid after the plain one
    scores = rng.random((len(starts), 4))
    ends, windows = window_scores(starts, scores, 1.0, 59.0, window=5.0, method="mean")
    for end, row in zip(ends, windows):
        overlap = np.minimum(starts + 1.0, end) - np.maximum(starts, end - 5.0)
        assert np.allclose(row, scores[overlap > 0.25].mean(axis=0))
