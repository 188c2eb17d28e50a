"""Submission and detection file writers. Every file is written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from utils.fileio import atomic_write_text

TOPN_COLUMNS = ["recording", "class", "score", "rank"]


def topn_table(recordings: list[str], scores: np.ndarray, classes: list[str], top_n: int) -> pd.DataFrame:
    """Per recording, its ``top_n`` classes by pooled score, rank 1 first."""
    if top_n < 1:
        raise ValueError("SUBMISSION_TOP_N must be at least 1")
    rows = []
    for rec, row in zip(recordings, np.asarray(scores)):
        order = np.argsort(-row, kind="stable")[:top_n]
        rows += [(rec, classes[i], round(float(row[i]), 6), rank) for rank, i in enumerate(order, 1)]
    return pd.DataFrame(rows, columns=TOPN_COLUMNS)


def write_topn_csv(path: str | Path, table: pd.DataFrame) -> None:
    atomic_write_text(path, table.to_csv(index=False))


def check_topn_csv(path: str | Path, classes: list[str], top_n: int) -> list[str]:
    """Problems found in a top-N CSV (empty list = valid)."""
    problems = []
    table = pd.read_csv(path, keep_default_na=False, dtype={"recording": str, "class": str})
    if list(table.columns) != TOPN_COLUMNS:
        return [f"columns are {list(table.columns)}, expected {TOPN_COLUMNS}"]
    unknown = set(table["class"]) - set(classes)
    if unknown:
        problems.append(f"unknown classes: {sorted(unknown)[:5]}")
    for rec, group in table.groupby("recording"):
        if list(group["rank"]) != list(range(1, min(top_n, len(classes)) + 1)):
            problems.append(f"{rec}: ranks are {list(group['rank'])}")
        if not group["score"].is_monotonic_decreasing:
            problems.append(f"{rec}: scores not in descending order")
        if group["class"].duplicated().any():
            problems.append(f"{rec}: a class is listed twice")
    return problems
