"""Step 4 logic: score recordings, pool chunk scores, compute recording-level metrics, write reports."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from utils.dataset import Recording
from utils.fileio import atomic_write_json, atomic_write_text
from utils.inference import score_files
from utils.metrics import mlrap, target_matrix, top_k_accuracy
from utils.pooling import pool
from utils.spectrogram import SpecParams

log = logging.getLogger("bioacoustics")


def evaluate_recordings(model, meta: dict, recordings: list[Recording], dataset_dir: str | Path,
                        pooling: str, with_background: bool, batch_size: int = 128,
                        workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score every recording with the model's own spectrogram settings.

    Returns (per-recording table, pooled scores table, summary). Recordings whose primary label the
    model does not know are listed but left out of the metrics, and counted in the summary.
    """
    classes = list(meta["classes"])
    params = SpecParams.from_dict(meta["spec"])
    by_path = {str(r.path(dataset_dir)): r for r in recordings}
    rows, pooled_rows = [], []
    results = score_files(model, params, by_path, batch_size=batch_size, workers=workers)
    for result in tqdm(results, total=len(by_path), desc="scoring", unit="file"):
        rec = by_path[result.path]
        row = {"recording": rec.id, "label": rec.primary, "background": ";".join(rec.background),
               "known_label": rec.primary in classes, "chunks": 0, "error": result.error}
        if result.scores is not None:
            scores = pool(result.scores, pooling)
            order = np.argsort(-scores, kind="stable")
            row.update(chunks=len(result.scores), top1=classes[order[0]],
                       top1_score=round(float(scores[order[0]]), 6),
                       top5=";".join(classes[i] for i in order[:5]),
                       correct=classes[order[0]] == rec.primary)
            pooled_rows.append([rec.id, *scores])
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("recording", ignore_index=True)
    pooled = pd.DataFrame(pooled_rows, columns=["recording", *classes]).sort_values(
        "recording", ignore_index=True)
    summary = summarise(table, pooled, classes, with_background, {r.id: r for r in recordings})
    summary["pooling"] = pooling
    return table, pooled, summary


def summarise(table: pd.DataFrame, pooled: pd.DataFrame, classes: list[str], with_background: bool,
              recordings: dict[str, Recording]) -> dict:
    scored = pooled[pooled["recording"].map(lambda r: recordings[r].primary in classes)]
    labels = [[recordings[r].primary] + (recordings[r].background if with_background else [])
              for r in scored["recording"]]
    scores = scored[classes].to_numpy()
    primary = np.asarray([classes.index(recordings[r].primary) for r in scored["recording"]])
    summary = {
        "recordings": int(len(table)),
        "scored": int(len(scored)),
        "unknown_label": int((~table["known_label"]).sum()),
        "errors": int((table["error"] != "").sum()),
        "mlrap": mlrap(target_matrix(labels, classes), scores) if len(scored) else float("nan"),
        "top1_accuracy": top_k_accuracy(primary, scores, 1) if len(scored) else float("nan"),
        "top5_accuracy": top_k_accuracy(primary, scores, min(5, len(classes))) if len(scored)
        else float("nan"),
        "with_background": with_background,
    }
    if summary["unknown_label"]:
        log.warning("%d recordings have a label the model was not trained on; they are left out "
                    "of the metrics", summary["unknown_label"])
    return summary


def write_report(out_dir: str | Path, table: pd.DataFrame, pooled: pd.DataFrame, summary: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "per_recording.csv", table.to_csv(index=False))
    atomic_write_text(out_dir / "scores.csv", pooled.to_csv(index=False, float_format="%.6f"))
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "summary.txt", summary_line(summary) + "\n")


def summary_line(summary: dict) -> str:
    return (f"MLRAP: {summary['mlrap']:.4f}  top-1 accuracy: {summary['top1_accuracy']:.4f}  "
            f"top-5 accuracy: {summary['top5_accuracy']:.4f}  "
            f"({summary['scored']} of {summary['recordings']} recordings scored)")
