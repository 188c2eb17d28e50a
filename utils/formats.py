"""Submission and detection formats: one writer and one checker per format.

Writers take scores per file (one row for monophone formats, one row per window for soundscape
formats) and return the file's text; checkers take that text back and list what is wrong (an
empty list means valid). The tests run every writer's output through its checker.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

FORMATS = ("topn_csv", "birdclef2018_mono", "birdclef2018_soundscape", "kaggle2021",
           "kaggle_probabilities", "raven", "audacity", "detections_csv")
# formats with one file per audio file (users' tools open one recording at a time)
PER_FILE_FORMATS = ("raven", "audacity")


@dataclass
class FileScores:
    """Scores of one audio file: one row per window (soundscapes) or a single row (monophone)."""

    recording: str
    starts: np.ndarray   # seconds
    ends: np.ndarray     # seconds; the last window of a file ends with the file
    scores: np.ndarray   # (n_windows, n_classes)

    @property
    def row_ends(self) -> np.ndarray:
        """Nominal window ends in whole seconds, as challenge row ids use (5, 10, ...)."""
        full = self.starts + np.max(self.ends - self.starts, initial=0)
        return np.ceil(np.round(full, 6)).astype(int)


def _file_row(f: FileScores) -> np.ndarray:
    """One score per class for a per-file format (the highest window if there are several)."""
    return f.scores.max(axis=0) if len(f.scores) > 1 else f.scores[0]


def _check_ranked(table: pd.DataFrame, key: str, name: str, score: str, n: int) -> list[str]:
    """Per ``key`` group: ranks 1..n in order, each ``name`` once, ``score`` not increasing."""
    problems = []
    for item, group in table.groupby(key, sort=False):
        if group["rank"].astype(int).tolist() != list(range(1, n + 1)):
            problems.append(f"{item}: ranks are not 1..{n}")
        if group[name].duplicated().any():
            problems.append(f"{item}: a class is listed twice")
        if not group[score].astype(float).is_monotonic_decreasing:
            problems.append(f"{item}: scores not in descending order")
    return problems


def _read_csv(text: str, sep: str = ",", header="infer") -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, header=header)


def hms(seconds: float) -> str:
    seconds = int(math.ceil(round(seconds, 6)))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _seconds(text: str) -> int:
    h, m, s = (int(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


# ------------------------------------------------------------------ top-N CSV (the default)

TOPN_COLUMNS = ["recording", "class", "score", "rank"]


def topn_csv(files: list[FileScores], classes: list[str], top_n: int) -> str:
    """``recording,class,score,rank``: per file its ``top_n`` classes, rank 1 first."""
    rows = []
    for f in files:
        row = _file_row(f)
        order = np.argsort(-row, kind="stable")[:top_n]
        rows += [(f.recording, classes[i], round(float(row[i]), 6), rank) for rank, i in enumerate(order, 1)]
    return pd.DataFrame(rows, columns=TOPN_COLUMNS).to_csv(index=False)


def check_topn_csv(text: str, classes: list[str], top_n: int) -> list[str]:
    table = _read_csv(text)
    if list(table.columns) != TOPN_COLUMNS:
        return [f"columns are {list(table.columns)}, expected {TOPN_COLUMNS}"]
    return _unknown_codes(table["class"], classes) + _check_ranked(
        table, "recording", "class", "score", min(top_n, len(classes)))


# ------------------------------------------------------------------ BirdCLEF 2018 monophone

def birdclef2018_mono(files: list[FileScores], codes: list[str], top: int = 100) -> str:
    """``MediaId;ClassId;Probability;Rank``: the ``top`` classes of each file, rank 1 first."""
    lines = []
    for f in files:
        row = _file_row(f)
        order = np.argsort(-row, kind="stable")[:top]
        lines += [f"{f.recording};{codes[i]};{row[i]:.6f};{rank}" for rank, i in enumerate(order, 1)]
    return "\n".join(lines) + "\n"


def check_birdclef2018_mono(text: str, codes: list[str], top: int = 100) -> list[str]:
    table = _read_csv(text, ";", None)
    if table.shape[1] != 4:
        return [f"expected 4 fields per line (MediaId;ClassId;Probability;Rank), got {table.shape[1]}"]
    table.columns = ["media", "code", "p", "rank"]
    return _unknown_codes(table["code"], codes) + _probabilities(table["p"]) + _check_ranked(
        table, "media", "code", "p", min(top, len(codes)))


# ------------------------------------------------------------------ BirdCLEF 2018 soundscape

def birdclef2018_soundscape(files: list[FileScores], codes: list[str], top: int = 10) -> str:
    """``MediaId;HH:MM:SS-HH:MM:SS;ClassId;Probability``: per window its ``top`` classes. The last
    partial window of a file is kept (ending at the file's end, rounded up to the second)."""
    lines = []
    for f in files:
        for start, end, row in zip(f.starts, f.ends, f.scores):
            span = f"{hms(start)}-{hms(end)}"
            lines += [f"{f.recording};{span};{codes[i]};{row[i]:.6f}"
                      for i in np.argsort(-row, kind="stable")[:top]]
    return "\n".join(lines) + "\n"


def check_birdclef2018_soundscape(text: str, codes: list[str], durations: dict[str, float] | None = None,
                                  window: float = 5.0) -> list[str]:
    table = _read_csv(text, ";", None)
    if table.shape[1] != 4:
        return [f"expected 4 fields per line (MediaId;HH:MM:SS-HH:MM:SS;ClassId;Probability), "
                f"got {table.shape[1]}"]
    table.columns = ["media", "span", "code", "p"]
    problems = _unknown_codes(table["code"], codes) + _probabilities(table["p"])
    bad = ~table["span"].str.fullmatch(r"\d\d:\d\d:\d\d-\d\d:\d\d:\d\d")
    if bad.any():
        return problems + [f"time spans not HH:MM:SS-HH:MM:SS: {table['span'][bad].iloc[0]!r}"]
    starts = table["span"].str[:8].map(_seconds)
    ends = table["span"].str[9:].map(_seconds)
    if ((ends - starts) > window + 1e-9).any() or (ends <= starts).any():
        problems.append(f"a window is empty or longer than {window:g} s")
    for media, group in table.assign(start=starts, end=ends).groupby("media", sort=False):
        windows = group.drop_duplicates("span")
        if windows["start"].tolist() != [window * i for i in range(len(windows))]:
            problems.append(f"{media}: windows do not follow each other from 0 s in {window:g}-s steps")
        if durations and media in durations and windows["end"].iloc[-1] < math.floor(durations[media]):
            problems.append(f"{media}: the windows stop at {windows['end'].iloc[-1]} s of "
                            f"{durations[media]:.1f} s (the last partial window is missing)")
        if group.duplicated(["span", "code"]).any():
            problems.append(f"{media}: a class is listed twice in one window")
    return problems


# ------------------------------------------------------------------ Kaggle BirdCLEF 2021

def kaggle2021_row_prefix(recording: str) -> str:
    """``<audio_id>_<site>`` from a 2021 test file name ``<audio_id>_<site>_<date>``."""
    parts = recording.split("_")
    return "_".join(parts[:2]) if len(parts) >= 3 else recording


def kaggle2021(files: list[FileScores], codes: list[str], threshold: float) -> str:
    """``row_id,birds``: per window the space-separated codes scoring >= threshold, or nocall."""
    rows = []
    for f in files:
        prefix = kaggle2021_row_prefix(f.recording)
        for end, row in zip(f.row_ends, f.scores):
            chosen = [codes[i] for i in np.flatnonzero(row >= threshold)]
            rows.append((f"{prefix}_{end}", " ".join(chosen) or "nocall"))
    return pd.DataFrame(rows, columns=["row_id", "birds"]).to_csv(index=False)


def check_kaggle2021(text: str, codes: list[str], row_ids: list[str] | None = None) -> list[str]:
    table = _read_csv(text)
    if list(table.columns) != ["row_id", "birds"]:
        return [f"columns are {list(table.columns)}, expected ['row_id', 'birds']"]
    problems = _row_ids(table["row_id"], row_ids)
    words = {w for cell in table["birds"] for w in cell.split()}
    problems += _unknown_codes(pd.Series(sorted(words - {"nocall"})), codes)
    if (table["birds"].str.strip() == "").any():
        problems.append("empty birds cell (write nocall)")
    if table["birds"].map(lambda c: "nocall" in c.split() and len(c.split()) > 1).any():
        problems.append("nocall together with a bird in one row")
    return problems


# ------------------------------------------------------------------ Kaggle BirdCLEF 2023-2025

def kaggle_probabilities(files: list[FileScores], classes: list[str], columns: list[str]
                         ) -> tuple[str, list[str]]:
    """``row_id,<class 1>,...``: ``row_id`` = ``<soundscape>_<end second>``, one probability
    column per class in the challenge's order (``columns``, codes). Challenge classes the model
    does not know get 0; returns (csv text, those classes)."""
    index = {c: i for i, c in enumerate(classes)}
    missing = [c for c in columns if c not in index]
    take = np.array([index.get(c, -1) for c in columns])
    blocks, row_ids = [], []
    for f in files:
        scores = np.asarray(f.scores, dtype=np.float64)
        block = np.where(take >= 0, scores[:, np.maximum(take, 0)], 0.0)
        blocks.append(block)
        row_ids += [f"{f.recording}_{end}" for end in f.row_ends]
    values = np.vstack(blocks) if blocks else np.zeros((0, len(columns)))
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "row_id", row_ids)
    return table.to_csv(index=False, float_format="%.6f"), missing


def check_kaggle_probabilities(text: str, columns: list[str], row_ids: list[str] | None = None
                               ) -> list[str]:
    table = _read_csv(text)
    if list(table.columns) != ["row_id", *columns]:
        return ["columns differ from row_id + the challenge's class list (order matters)"]
    problems = _row_ids(table["row_id"], row_ids)
    if len(columns):
        problems += _probabilities(table[columns].stack())
    return problems


# ------------------------------------------------------------------ users' formats

def detections(files: list[FileScores], classes: list[str], min_score: float) -> pd.DataFrame:
    """file, start, end, class, score: every (window, class) scoring at least ``min_score``."""
    parts = []
    for f in files:
        window, cls = np.nonzero(np.asarray(f.scores) >= min_score)
        parts.append(pd.DataFrame({"file": f.recording, "start": np.round(f.starts[window], 3),
                                   "end": np.round(f.ends[window], 3),
                                   "class": np.asarray(classes, dtype=object)[cls],
                                   "score": np.round(np.asarray(f.scores)[window, cls], 6)}))
    rows = pd.concat(parts, ignore_index=True) if parts else []
    table = pd.DataFrame(rows, columns=["file", "start", "end", "class", "score"])
    return table.sort_values(["file", "start", "score"], ascending=[True, True, False],
                             ignore_index=True)


def detections_csv(files: list[FileScores], classes: list[str], min_score: float) -> str:
    return detections(files, classes, min_score).to_csv(index=False)


def check_detections_csv(text: str, classes: list[str], min_score: float = 0.0) -> list[str]:
    table = _read_csv(text)
    expected = ["file", "start", "end", "class", "score"]
    if list(table.columns) != expected:
        return [f"columns are {list(table.columns)}, expected {expected}"]
    return _intervals(table["start"], table["end"]) + _unknown_codes(table["class"], classes) + \
        _probabilities(table["score"], min_score)


RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Species", "Score"]


def raven_table(file: FileScores, classes: list[str], min_score: float, fmin: float, fmax: float) -> str:
    """A Raven Pro selection table (tab-separated) of one audio file's detections."""
    table = detections([file], classes, min_score)
    out = pd.DataFrame({"Selection": np.arange(1, len(table) + 1), "View": "Spectrogram 1",
                        "Channel": 1, "Begin Time (s)": table["start"], "End Time (s)": table["end"],
                        "Low Freq (Hz)": fmin, "High Freq (Hz)": fmax, "Species": table["class"],
                        "Score": table["score"]}, columns=RAVEN_COLUMNS)
    return out.to_csv(sep="\t", index=False)


def check_raven_table(text: str, classes: list[str], min_score: float = 0.0) -> list[str]:
    table = _read_csv(text, "\t")
    if list(table.columns) != RAVEN_COLUMNS:
        return [f"columns are {list(table.columns)}, expected {RAVEN_COLUMNS}"]
    problems = _intervals(table["Begin Time (s)"], table["End Time (s)"])
    if table["Selection"].astype(int).tolist() != list(range(1, len(table) + 1)):
        problems.append("Selection numbers are not 1..n")
    return problems + _unknown_codes(table["Species"], classes) + _probabilities(table["Score"], min_score)


def audacity_labels(file: FileScores, classes: list[str], min_score: float) -> str:
    """Audacity label track: ``start<TAB>end<TAB>class (score)`` per detection."""
    table = detections([file], classes, min_score)
    return "".join(f"{start:.3f}\t{end:.3f}\t{name} ({score:.3f})\n"
                   for start, end, name, score in zip(table["start"], table["end"], table["class"],
                                                      table["score"]))


def check_audacity_labels(text: str, classes: list[str]) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\t(\d+(?:\.\d+)?)\t(.+) \((\d\.\d+)\)", line)
        if not match:
            return [f"line {number} is not start<TAB>end<TAB>label (score): {line!r}"]
        if float(match[2]) < float(match[1]):
            problems.append(f"line {number}: ends before it starts")
        if match[3] not in classes:
            problems.append(f"line {number}: unknown class {match[3]!r}")
    return problems


# ------------------------------------------------------------------ shared checks

def _unknown_codes(values: pd.Series, codes: list[str]) -> list[str]:
    unknown = sorted(set(values) - set(codes))
    return [f"unknown classes: {unknown[:5]}"] if unknown else []


def _probabilities(values: pd.Series, low: float = 0.0) -> list[str]:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        return ["a probability is not a number"]
    if ((numbers < low - 1e-6) | (numbers > 1 + 1e-6)).any():
        return [f"a probability is outside [{low:g}, 1]"]
    return []


def _intervals(starts: pd.Series, ends: pd.Series) -> list[str]:
    starts, ends = pd.to_numeric(starts, errors="coerce"), pd.to_numeric(ends, errors="coerce")
    if starts.isna().any() or ends.isna().any():
        return ["a start or end time is not a number"]
    if (starts < 0).any() or (ends < starts).any():
        return ["an interval starts before 0 or ends before it starts"]
    return []


def _row_ids(values: pd.Series, expected: list[str] | None) -> list[str]:
    problems = []
    if values.duplicated().any():
        problems.append(f"duplicate row_id {values[values.duplicated()].iloc[0]!r}")
    if expected is not None and set(values) != set(expected):
        missing, extra = set(expected) - set(values), set(values) - set(expected)
        problems.append(f"row_ids differ from the expected ones ({len(missing)} missing, "
                        f"{len(extra)} unexpected)")
    return problems
