"""Cross-validation folds and the experiments table that evaluate.py appends to."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from utils.dataset import Recording
from utils.fileio import atomic_write_text

# settings worth a column of their own in the experiments table (the hash covers all of them)
KEY_SETTINGS = ("MODEL", "FILTERS", "WIDTH", "EPOCHS", "BATCH_SIZE", "LEARNING_RATE", "LR_SCHEDULE",
                "AUGMENTATION", "CHUNK_LENGTH", "SPEC_TYPE", "AMPLITUDE_SCALE", "FMIN", "FMAX",
                "POOLING", "SEED")
METRIC_COLUMNS = ("mlrap", "top1_accuracy", "top5_accuracy", "macro_roc_auc", "padded_cmap",
                  "row_micro_f1")
# settings that name where things go, not what is computed: left out of the config hash
NOT_HASHED = {"RUN_NAME", "RUNS_DIR", "LOG_LEVEL", "SPEC_WORKERS", "BATCH_THREADS", "TENSORBOARD",
              "EXPORT_PNG", "PNG_DIR"}
# settings that name data on disk: a run is the same whichever way the path to it is written
PATH_SETTINGS = {"RAW_DATA", "DATASET_DIR", "STORE_DIR", "PRETRAINED"}
# settings a test report depends on (beside the model and the recordings): a report made with
# other values is not this test's, so it is made again rather than reused
SCORING_SETTINGS = frozenset({"TEST_MODELS", "TEST_MODEL_WEIGHTS", "TEST_TIME_SHIFTS", "TEST_TIME_ROLLS",
                              "TEST_TIME_ROLL_CYCLE",
                              "TEST_WITH_BACKGROUND", "CALL_THRESHOLD", "SCORING_RUNTIME", "POOLING",
                              "POOLING_TOP_K", "POOLING_ALPHA"})
# settings that only decide how a trained model is scored, reported or written into a submission:
# a finished training is the same experiment whatever they say, so a run is tested again with
# them, not refused. POOLING is not one of them: training's validation pools with it, so with
# SELECT_FROM < 1 it can decide which epoch is kept.
TEST_TIME_SETTINGS = (SCORING_SETTINGS - {"POOLING", "POOLING_TOP_K", "POOLING_ALPHA"}) | {
    "TEST_SPLIT", "PREDICT_BATCH_SIZE", "SUBMISSION_AUDIO", "SUBMISSION_FILE", "SUBMISSION_FORMAT",
    "SUBMISSION_TOP_N", "SUBMISSION_WINDOW", "SOUNDSCAPE_OVERLAP", "WINDOW_POOLING", "DETECTION_MIN_SCORE",
    "CLASS_MAP", "CHALLENGE_CLASSES"}
# settings added since runs were first saved, each with the value that does what the code did
# before it existed: a saved run without one ran with that value, so it is the same experiment as
# a run that sets it so. A new setting belongs here only when its addition changed nothing else
# (MIN_SIGNAL_SHARE came with a change to the signal gate, so it is not here).
VALUE_BEFORE = {"CEPSTRUM_FEATURES": False, "STEM_DOWNSAMPLING": [4, 4], "SQUEEZE_EXCITATION": False,
                "MIN_FREQUENCY_ROWS": 0, "SELECT_FROM": 0.0, "DROP_PATH": 0.0, "STEM_KERNEL": [5, 5],
                "BACKGROUND_CHANNEL": False, "TEST_TIME_ROLLS": [], "TEST_TIME_ROLL_CYCLE": []}


def fold_splits(recordings: list[Recording], folds: int, seed: int) -> list[dict[str, str]]:
    """K assignments recording id -> "train"/"val" over the train and val recordings.

    Folds are stratified by primary label and keep each group (``Recording.group``: author,
    site; a recording without one is its own group) inside one fold, so a fold never validates
    on the recordist or place it trained on. Test recordings stay out of every fold.
    """
    pool = sorted((r for r in recordings if r.split in ("train", "val")), key=lambda r: r.id)
    groups = np.array([r.group or f"recording:{r.id}" for r in pool])
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    if len(set(groups)) < folds:
        raise ValueError(f"{folds} folds need at least {folds} groups of recordings; the train and "
                         f"val splits hold {len(set(groups))}")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    labels = np.array([r.primary for r in pool])
    out = []
    for train_idx, val_idx in splitter.split(np.zeros(len(pool)), labels, groups):
        split = {pool[i].id: "train" for i in train_idx}
        split.update({pool[i].id: "val" for i in val_idx})
        out.append(split)
    return out


def fold_summary(results: list[dict]) -> dict:
    """Mean and standard deviation over folds of every metric in METRIC_COLUMNS."""
    out: dict = {"folds": len(results)}
    for key in METRIC_COLUMNS:
        values = np.array([r.get(key, np.nan) for r in results], dtype=float)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        out[f"{key}_std"] = float(np.nanstd(values)) if np.isfinite(values).any() else float("nan")
    return out


def experiment_row(settings, metrics: Mapping, train_seconds: float, split: str) -> dict:
    """One row of the experiments table: when, which run, a hash of every setting that changes
    the result, the key settings, the metrics and the training time."""
    values = settings.to_dict()
    row = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "run": values["RUN_NAME"],
           "config_hash": settings.fingerprint(sorted(set(values) - NOT_HASHED)), "split": split,
           "folds": int(metrics.get("folds", 0))}
    row.update({key.lower(): str(values[key]) for key in KEY_SETTINGS})
    for key in METRIC_COLUMNS:
        row[key] = round(float(metrics.get(key, np.nan)), 4)
        if f"{key}_std" in metrics:
            row[f"{key}_std"] = round(float(metrics[f"{key}_std"]), 4)
    row["train_seconds"] = round(float(train_seconds), 1)
    return row


def append_experiment(table_path: str | Path, row: dict) -> pd.DataFrame:
    """Add one row to the CSV table (created if missing; new columns are added, old rows keep
    empty cells). The file is rewritten atomically, so an interruption never truncates it."""
    table_path = Path(table_path)
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False) if table_path.exists() \
        else pd.DataFrame()
    table = pd.concat([table, pd.DataFrame([{k: str(v) for k, v in row.items()}])], ignore_index=True)
    atomic_write_text(table_path, table.to_csv(index=False))
    return table
