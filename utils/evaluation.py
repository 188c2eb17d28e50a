"""Step 4 logic: score recordings (one model or an ensemble), pool chunk scores per recording,
compute every challenge metric, and write the report folder."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from utils.dataset import Recording
from utils.fileio import atomic_write_json, atomic_write_text
from utils.inference import Member, TestTimeAugmentation, ensemble_scores
from utils.metrics import (confusion, macro_f1, macro_roc_auc, mlrap, padded_cmap, per_class,
                           row_micro_f1, target_matrix, top_k_accuracy)
from utils.pooling import Pooling

log = logging.getLogger("bioacoustics")

# summary key -> label in summary lines and comparison tables
METRICS = {"mlrap": "MLRAP", "mlrap_primary": "MLRAP (primary only)", "top1_accuracy": "top-1 accuracy",
           "top5_accuracy": "top-5 accuracy", "row_micro_f1": "row-wise micro F1",
           "padded_cmap": "padded cmAP", "macro_roc_auc": "macro ROC-AUC", "macro_f1": "macro F1"}


@dataclass(frozen=True)
class TestOptions:
    pooling: Pooling = Pooling()
    with_background: bool = True     # background labels count as targets (MLRAP, F1, cmAP, AUC)
    f1_threshold: float = 0.5        # a class is "predicted" at this score (row-wise F1)
    tta: TestTimeAugmentation = TestTimeAugmentation()
    batch_size: int = 128
    workers: int = 1
    segment_seconds: float = 600.0   # longer files are decoded segment by segment

    @classmethod
    def from_settings(cls, s, workers: int = 1) -> "TestOptions":
        return cls(Pooling.from_settings(s), s["TEST_WITH_BACKGROUND"], s["CALL_THRESHOLD"],
                   TestTimeAugmentation.from_settings(s), s["PREDICT_BATCH_SIZE"], workers,
                   s["SEGMENT_LENGTH"])


@dataclass
class Report:
    table: pd.DataFrame          # one row per recording: labels, top predictions, errors
    scores: pd.DataFrame         # pooled scores: recording + one column per class
    per_class: pd.DataFrame
    confusion: np.ndarray        # (true, predicted) counts over scored recordings
    summary: dict
    classes: list[str]
    # the recordings that count (known labels, scored), in the order of ``scores``' rows
    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    primary: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    scored: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def evaluate_recordings(members: list[Member], classes: list[str], recordings: list[Recording],
                        dataset_dir: str | Path, options: TestOptions = TestOptions()) -> Report:
    """Score every recording and compute the metrics.

    Recordings whose primary label the model does not know are listed but left out of the
    metrics; their labels are counted in the summary (``unknown_labels``).
    """
    by_path = {str(r.path(dataset_dir)): r for r in recordings}
    results = ensemble_scores(members, list(by_path), options.pooling.per_file, options.batch_size,
                              options.workers, options.tta, options.segment_seconds)
    rows, pooled_rows = [], []
    for path, (scores, chunks, error) in results.items():
        rec = by_path[path]
        row = {"recording": rec.id, "label": rec.primary, "background": ";".join(rec.background),
               "known_label": rec.primary in classes, "chunks": chunks, "error": error}
        if scores is not None:
            order = np.argsort(-scores, kind="stable")
            row.update(top1=classes[order[0]], top1_score=round(float(scores[order[0]]), 6),
                       top5=";".join(classes[i] for i in order[:5]),
                       correct=classes[order[0]] == rec.primary)
            pooled_rows.append([rec.id, *scores])
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("recording", ignore_index=True)
    pooled = pd.DataFrame(pooled_rows, columns=["recording", *classes]).sort_values(
        "recording", ignore_index=True)
    report = summarise(table, pooled, classes, {r.id: r for r in recordings}, options)
    report.summary.update(models=len(members), **scoring_summary(options))
    return report


def scoring_summary(options: TestOptions) -> dict:
    """How a report's recordings were scored, for its summary."""
    return {"pooling": options.pooling.method, "time_shifts": list(options.tta.shifts),
            "frequency_rolls": list(options.tta.rolls), "roll_cycle": list(options.tta.roll_cycle)}


def summarise(table: pd.DataFrame, pooled: pd.DataFrame, classes: list[str],
              recordings: dict[str, Recording], options: TestOptions) -> Report:
    scored = pooled[pooled["recording"].map(lambda r: recordings[r].primary in classes)]
    recs = [recordings[r] for r in scored["recording"]]
    scores = scored[classes].to_numpy(dtype=np.float64)
    primary = np.asarray([classes.index(r.primary) for r in recs], dtype=int)
    only_primary = target_matrix([[r.primary] for r in recs], classes)
    targets = target_matrix([[r.primary, *r.background] for r in recs], classes)
    if not options.with_background:
        targets = only_primary
    # from the table, not ``classes``: in a merged report each row's own model decided it
    unknown = Counter(table.loc[~table["known_label"].astype(bool), "label"])
    unknown_background = Counter(b for r in recordings.values() for b in r.background
                                 if b not in classes)
    summary = {"recordings": int(len(table)), "scored": int(len(scored)), "classes": list(classes),
               "unknown_label": int(sum(unknown.values())), "unknown_labels": dict(unknown),
               "unknown_background_labels": dict(unknown_background),
               "errors": int((table["error"] != "").sum()),
               "skipped": [{"recording": r, "reason": e} for r, e in
                           table.loc[table["error"] != "", ["recording", "error"]].itertuples(index=False)],
               "with_background": options.with_background,
               "f1_threshold": options.f1_threshold}
    classes_table = pd.DataFrame(columns=["class", "support", "predicted", "precision", "recall", "f1",
                                          "average_precision", "roc_auc"])
    matrix = np.zeros((len(classes), len(classes)), int)
    if len(scored):
        classes_table = pd.DataFrame(per_class(targets, scores, primary, classes))
        matrix = confusion(primary, scores, len(classes))
    summary.update(metric_values(targets, only_primary, primary, scores, options.f1_threshold))
    if unknown:
        log.warning("%d recordings have a label the model was not trained on (%s); they are left "
                    "out of the metrics", sum(unknown.values()), ", ".join(sorted(unknown)[:5]))
    return Report(table, pooled, classes_table, matrix, summary, classes, targets, primary, scores)


def metric_values(targets: np.ndarray, only_primary: np.ndarray, primary: np.ndarray,
                  scores: np.ndarray, f1_threshold: float) -> dict[str, float]:
    """Every metric of METRICS for one set of recordings (NaN for each when there are none)."""
    metrics = {key: float("nan") for key in METRICS}
    if not len(scores):
        return metrics
    n_classes = scores.shape[1]
    metrics.update(mlrap=mlrap(targets, scores), mlrap_primary=mlrap(only_primary, scores),
                   top1_accuracy=top_k_accuracy(primary, scores, 1),
                   top5_accuracy=top_k_accuracy(primary, scores, min(5, n_classes)),
                   row_micro_f1=row_micro_f1(targets, scores, f1_threshold),
                   padded_cmap=padded_cmap(targets, scores), macro_roc_auc=macro_roc_auc(targets, scores),
                   macro_f1=macro_f1(primary, scores))
    return metrics


def read_per_recording(folder: str | Path) -> pd.DataFrame:
    """A report folder's per_recording.csv as written: recording ids stay text ("007"), empty
    cells stay empty; ``known_label`` as booleans."""
    table = pd.read_csv(Path(folder) / "per_recording.csv", dtype=str, keep_default_na=False)
    table["known_label"] = table["known_label"] == "True"
    return table


def merge_reports(folders: list[Path], recordings: dict[str, Recording],
                  options: TestOptions = TestOptions()) -> Report:
    """One report over the recordings of several report folders, each recording scored by its
    folder's own model(s): cross-validation's out-of-fold report. A class one fold's model lacks
    scores 0 there, and a recording whose label its own fold's model does not know stays out of
    the metrics, as in that fold's report."""
    tables, pooled, classes = [], [], []
    for folder in folders:
        table = read_per_recording(folder)
        scores = pd.read_csv(folder / "scores.csv", dtype={"recording": str})
        classes += [c for c in scores.columns[1:] if c not in classes]
        tables.append(table)
        pooled.append(scores[scores["recording"].isin(table.loc[table["known_label"], "recording"])])
    table = pd.concat(tables, ignore_index=True).sort_values("recording", ignore_index=True)
    scores = pd.concat(pooled, ignore_index=True).reindex(columns=["recording", *classes]).fillna(0.0)
    if table["recording"].duplicated().any():
        raise ValueError("the reports to merge share recordings: "
                         f"{', '.join(table.loc[table['recording'].duplicated(), 'recording'][:5])}")
    return summarise(table, scores.sort_values("recording", ignore_index=True), classes, recordings,
                     options)


def write_report(out_dir: str | Path, report: Report, plots: bool = True) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "per_recording.csv", report.table.to_csv(index=False))
    atomic_write_text(out_dir / "scores.csv", report.scores.to_csv(index=False, float_format="%.6f"))
    atomic_write_text(out_dir / "per_class.csv", report.per_class.to_csv(index=False, float_format="%.4f"))
    confusion_table = pd.DataFrame(report.confusion, index=report.classes, columns=report.classes)
    atomic_write_text(out_dir / "confusion.csv", confusion_table.to_csv(index_label="true \\ predicted"))
    atomic_write_json(out_dir / "summary.json", report.summary)
    atomic_write_text(out_dir / "summary.txt", summary_text(report.summary) + "\n")
    if plots and len(report.primary):
        from utils.report_plots import plot_report

        plot_report(report, out_dir)


def summary_line(summary: dict) -> str:
    return (f"MLRAP: {summary['mlrap']:.4f}  top-1 accuracy: {summary['top1_accuracy']:.4f}  "
            f"top-5 accuracy: {summary['top5_accuracy']:.4f}  "
            f"({summary['scored']} of {summary['recordings']} recordings scored)")


def summary_text(summary: dict) -> str:
    """The summary line, then every metric on its own line (summary.txt)."""
    lines = [summary_line(summary)]
    lines += [f"  {label:<22} {summary.get(key, float('nan')):.4f}" for key, label in METRICS.items()]
    if summary.get("unknown_label"):
        lines.append(f"  {summary['unknown_label']} recordings with labels the model does not know "
                     f"(left out): {', '.join(sorted(summary['unknown_labels']))}")
    if summary.get("errors"):
        lines.append(f"  {summary['errors']} recordings could not be scored (see per_recording.csv):")
        skipped = summary.get("skipped", [])
        lines += [f"    {s['recording']}: {s['reason']}" for s in skipped[:10]]
        if len(skipped) > 10:
            lines.append(f"    ... and {len(skipped) - 10} more")
    return "\n".join(lines)
