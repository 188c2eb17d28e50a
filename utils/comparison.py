"""`test.py --compare`: two report folders side by side, and whether their difference is more
than chance (an exact McNemar test on top-1, paired bootstrap intervals on the metrics that
are means over recordings)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from utils.evaluation import METRICS, metric_values, read_per_recording
from utils.fileio import read_json
from utils.metrics import mlrap, row_micro_f1, target_matrix, top_k_accuracy

# Metrics that are a mean over recordings: a resample's value is the mean of its recordings'
# values. The class-averaged ones (cmAP, macro ROC-AUC, macro F1) get no interval: with one or
# two test recordings per class, a resample drops whole classes and changes what is averaged.
RECORDING_MEANS = ("mlrap", "mlrap_primary", "top1_accuracy", "top5_accuracy", "row_micro_f1")


@dataclass(frozen=True)
class ScoredRecordings:
    """What a report folder's metrics were computed from: the scored recordings with known
    labels, their targets and pooled scores."""

    ids: list[str]
    targets: np.ndarray        # primary + background (unless the report left background out)
    only_primary: np.ndarray
    primary: np.ndarray        # class index of each primary label
    scores: np.ndarray
    f1_threshold: float

    def metrics(self) -> dict[str, float]:
        return metric_values(self.targets, self.only_primary, self.primary, self.scores, self.f1_threshold)

    @cached_property  # computed once: the bootstrap and the paired top-1 counts both use it
    def per_recording(self) -> dict[str, np.ndarray]:
        """Each recording's own value of the RECORDING_MEANS metrics (NaN where a recording does
        not count, as one without any target in MLRAP): their mean over the recordings is the
        metric, computed by the same functions."""
        k = min(5, self.scores.shape[1])
        one = [slice(i, i + 1) for i in range(len(self.ids))]
        return {"mlrap": np.array([mlrap(self.targets[r], self.scores[r]) for r in one]),
                "mlrap_primary": np.array([mlrap(self.only_primary[r], self.scores[r]) for r in one]),
                "top1_accuracy": np.array([top_k_accuracy(self.primary[r], self.scores[r], 1) for r in one]),
                "top5_accuracy": np.array([top_k_accuracy(self.primary[r], self.scores[r], k) for r in one]),
                "row_micro_f1": np.array([row_micro_f1(self.targets[r], self.scores[r], self.f1_threshold)
                                          for r in one])}

    def aligned(self, ids: list[str]) -> dict[str, np.ndarray]:
        """per_recording's values for the recordings ``ids``, in that order."""
        where = {r: i for i, r in enumerate(self.ids)}
        rows = np.asarray([where[r] for r in ids])
        return {key: values[rows] for key, values in self.per_recording.items()}


def read_scored_recordings(folder: str | Path) -> ScoredRecordings:
    folder = Path(folder)
    summary = read_json(folder / "summary.json")
    table = read_per_recording(folder).set_index("recording")
    pooled = pd.read_csv(folder / "scores.csv", dtype={"recording": str})
    classes = list(pooled.columns[1:])
    pooled = pooled[pooled["recording"].map(lambda r: r in table.index and table.at[r, "known_label"])]
    ids = pooled["recording"].tolist()
    labels = [[table.at[r, "label"], *filter(None, table.at[r, "background"].split(";"))] for r in ids]
    only_primary = target_matrix([names[:1] for names in labels], classes)
    targets = target_matrix(labels, classes) if summary.get("with_background", True) else only_primary
    primary = np.asarray([classes.index(names[0]) for names in labels], dtype=int)
    return ScoredRecordings(ids, targets, only_primary, primary,
                            pooled[classes].to_numpy(dtype=np.float64), summary.get("f1_threshold", 0.5))


def bootstrap_changes(a: ScoredRecordings, b: ScoredRecordings, resamples: int = 10000,
                      seed: int = 0) -> tuple[int, dict[str, tuple[float, float]]]:
    """95 % interval (2.5th and 97.5th percentiles) of the change from ``a`` to ``b`` of each
    RECORDING_MEANS metric, over bootstrap resamples of the recordings both scored. Paired: each
    resample scores both on the same recordings, so what the two share (the hard recordings)
    cancels out. Returns the number of shared recordings and the intervals."""
    shared = sorted(set(a.ids) & set(b.ids))
    if not shared or resamples < 1:
        return len(shared), {}
    values_a, values_b = a.aligned(shared), b.aligned(shared)
    rng = np.random.default_rng(seed)
    changes = {key: [] for key in RECORDING_MEANS}
    block = max(1, 2_000_000 // len(shared))  # resamples at a time: bounded memory on big test sets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample with no recording that counts: NaN, skipped
        for start in range(0, resamples, block):
            picks = rng.integers(0, len(shared), (min(block, resamples - start), len(shared)))
            for key in RECORDING_MEANS:
                changes[key].append(np.nanmean(values_b[key][picks], axis=1)
                                    - np.nanmean(values_a[key][picks], axis=1))
    intervals = {}
    for key, parts in changes.items():
        change = np.concatenate(parts)
        if not np.isnan(change).all():
            intervals[key] = (float(np.nanpercentile(change, 2.5)), float(np.nanpercentile(change, 97.5)))
    return len(shared), intervals


def paired_top1(a: ScoredRecordings, b: ScoredRecordings) -> list[str]:
    """On the recordings both reports scored: where the top-1 answer was right in one report
    only. Two recipes' means can differ by a few such recordings, and this says how many."""
    shared = sorted(set(a.ids) & set(b.ids))
    if not shared:
        return []
    right_a = a.aligned(shared)["top1_accuracy"] == 1
    right_b = b.aligned(shared)["top1_accuracy"] == 1
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    return [f"top-1 on the {len(shared)} recordings both scored: right in both {(right_a & right_b).sum()}, "
            f"only in the first {only_a}, only in the second {only_b}, "
            f"in neither {(~right_a & ~right_b).sum()}",
            f"  exact McNemar test on the {only_a + only_b} that differ: p = {mcnemar_p(only_a, only_b):.3f} "
            f"(the chance of a split at least this uneven if the two were equally good)"]


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: under "equally good", each recording that one report gets
    right and the other wrong falls either way with chance 1/2 (a binomial test)."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def _scored_pair(a: Path, b: Path) -> tuple[ScoredRecordings, ScoredRecordings] | None:
    needed = ("summary.json", "per_recording.csv", "scores.csv")
    if not all((f / name).exists() for f in (a, b) for name in needed):
        return None
    return read_scored_recordings(a), read_scored_recordings(b)


def compare_reports(a: str | Path, b: str | Path, top: int = 5, resamples: int = 10000) -> str:
    """Side-by-side table of two report folders' metrics with a bootstrap interval of each
    change, the paired top-1 counts, then the classes whose F1 changed most."""
    a, b = Path(a), Path(b)
    left, right = read_json(a / "summary.json"), read_json(b / "summary.json")
    names = [x.parent.name or str(x) for x in (a, b)]
    width = max(*map(len, names), 12)
    pair = _scored_pair(a, b)
    shared, intervals = bootstrap_changes(*pair, resamples) if pair else (0, {})
    lines = [f"{'metric':<22} {names[0]:>{width}} {names[1]:>{width}} {'change':>8}"
             + ("  95% interval of the change" if intervals else "")]
    for key, label in METRICS.items():
        x, y = left.get(key, float("nan")), right.get(key, float("nan"))
        interval = f"  [{intervals[key][0]:+.4f}, {intervals[key][1]:+.4f}]" if key in intervals else ""
        lines.append(f"{label:<22} {x:>{width}.4f} {y:>{width}.4f} {y - x:>+8.4f}{interval}")
    for key in ("scored", "recordings", "models", "pooling"):
        lines.append(f"{key:<22} {str(left.get(key, '')):>{width}} {str(right.get(key, '')):>{width}}")
    if intervals:
        lines += [f"intervals: {resamples} paired bootstrap resamples of the {shared} recordings both scored,",
                  "  for the metrics averaged over recordings; one that holds 0 means the change may be chance"]
    lines += paired_top1(*pair) if pair else []
    per_a, per_b = a / "per_class.csv", b / "per_class.csv"
    if per_a.exists() and per_b.exists():
        joined = pd.read_csv(per_a).merge(pd.read_csv(per_b), on="class", suffixes=("_a", "_b"))
        joined["change"] = joined["f1_b"] - joined["f1_a"]
        joined = joined.reindex(joined["change"].abs().sort_values(ascending=False).index)
        changed = joined[joined["change"] != 0].head(top)
        if len(changed):
            lines.append(f"largest per-class F1 changes (of {len(joined)} classes):")
            name_width = max(len(str(name)) for name in changed["class"])
            lines += [f"  {row['class']:<{name_width}} {row['f1_a']:.3f} -> {row['f1_b']:.3f}"
                      for _, row in changed.iterrows()]
    return "\n".join(lines)
