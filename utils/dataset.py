"""Step 1 logic: raw datasets -> ``train/<class>/``, ``val/<class>/``, ``test/<class>/`` and
``metadata/<id>.json`` (the dataset's source of truth for every later step)."""
from __future__ import annotations

import ast
import hashlib
import logging
import os
import re
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm import tqdm

from utils.audio import AUDIO_EXTENSIONS, AudioError, audio_info
from utils.fileio import atomic_path, atomic_write_json, read_json, remove_stale_temporaries
from utils.names import safe_name, short_hash, unique_names

log = logging.getLogger("bioacoustics")

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
SORT_MODES = ("copy", "symlink", "move")


@dataclass
class RawItem:
    """One recording as found in the raw dataset, before sorting."""

    source: str
    label: str
    background: list[str] = field(default_factory=list)
    split: str | None = None
    group: str = ""  # author, site...: recordings that must stay in one cross-validation fold


@dataclass
class Recording:
    """One sorted recording, as stored in ``metadata/<id>.json``."""

    id: str
    primary: str
    background: list[str]
    split: str
    file: str  # path relative to the dataset folder
    source: str
    duration: float
    sample_rate: int
    channels: int
    group: str = ""  # from CSV_GROUP_COLUMN; "" = the recording is its own group

    def path(self, dataset_dir: str | Path) -> Path:
        return Path(dataset_dir) / self.file


# ---------------------------------------------------------------- reading raw datasets

def scan_folders(root: str | Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[RawItem]:
    """Folder-per-class: ``root/<label>/**/<audio>``; the folder name is the label."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"raw data folder not found: {root}")
    exts = {e.lower() for e in extensions}
    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in exts:
                items.append(RawItem(str(path), class_dir.name))
    return items


def parse_label_list(value) -> list[str]:
    """Secondary labels as written by different datasets: "['a', 'b']", "a;b", "a|b" or "a b"."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).strip()
    if not text or text in ("[]", "nan"):
        return []
    if text.startswith("["):
        try:
            return [str(v).strip() for v in ast.literal_eval(text) if str(v).strip()]
        except (ValueError, SyntaxError):
            text = text.strip("[]")
    return [v.strip().strip("'\"") for v in re.split(r"[;|,]", text) if v.strip().strip("'\"")]


def scan_csv(csv_path: str | Path, path_column: str = "path", label_column: str = "label",
             secondary_column: str = "secondary_labels", split_column: str = "split",
             audio_root: str | Path | None = None, group_column: str = ""
             ) -> tuple[list[RawItem], list[dict]]:
    """Generic CSV: one row per recording; paths relative to ``audio_root`` (default: CSV folder).

    Returns the items and the rows that were skipped (with the reason).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV not found: {csv_path}")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    for column in (path_column, label_column, *([group_column] if group_column else [])):
        if column not in table.columns:
            raise ValueError(f"{csv_path}: no column {column!r} (columns: {', '.join(table.columns)})")
    base = Path(audio_root) if audio_root else csv_path.parent
    items, skipped = [], []
    for line, row in enumerate(table.to_dict("records"), start=2):
        source = base / row[path_column]
        label = row[label_column].strip()
        split = None
        if split_column in table.columns and row[split_column].strip():
            split = SPLIT_ALIASES.get(row[split_column].strip().lower())
            if split is None:
                skipped.append({"source": str(source), "reason": f"split {row[split_column]!r} "
                                "is not train/val/test", "line": line})
                continue
        if not label:
            skipped.append({"source": str(source), "reason": "empty label", "line": line})
            continue
        background = parse_label_list(row.get(secondary_column, ""))
        items.append(RawItem(str(source), label, [b for b in background if b != label], split,
                             row[group_column].strip() if group_column else ""))
    return items, skipped


# ---------------------------------------------------------------- splitting

def assign_splits(items: list[RawItem], val_fraction: float, seed: int) -> list[RawItem]:
    """Stratified split by recording for items without a given split.

    Every class with two or more recordings gets at least one validation recording (and keeps at
    least one for training); a class with one recording keeps it for training.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"VAL_FRACTION must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[RawItem]] = defaultdict(list)
    for item in items:
        if item.split is None:
            by_label[item.label].append(item)
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda i: i.source)
        order = rng.permutation(len(group))
        n_val = 0
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(len(group) - 1, max(1, int(round(val_fraction * len(group)))))
        for rank, index in enumerate(order):
            group[index].split = "val" if rank < n_val else "train"
    return items


# ---------------------------------------------------------------- writing the dataset

def recording_ids(items: list[RawItem], earlier: dict[str, "Recording"] | None = None) -> list[str]:
    """Readable ids from file names; a name used twice gets a hash of its full source path.

    ``earlier`` (source -> recording sorted by an earlier run) keeps ids stable across re-runs:
    a source sorted before keeps its id, names are counted over earlier sources too (a ``move``
    re-run no longer sees the files it moved), and ids taken by other sources are not reused.
    """
    earlier = earlier or {}
    stems = [safe_name(Path(i.source).stem) for i in items]
    seen: dict[str, int] = defaultdict(int)
    sources = {i.source for i in items} | set(earlier)
    for source in sources:
        seen[safe_name(Path(source).stem).casefold()] += 1
    taken = {r.id.casefold() for r in earlier.values()}
    ids = []
    for stem, item in zip(stems, items):
        if item.source in earlier:
            ids.append(earlier[item.source].id)
        elif seen[stem.casefold()] > 1 or stem.casefold() in taken:
            ids.append(f"{stem}_{short_hash(item.source)}")
        else:
            ids.append(stem)
    return ids


def place_file(source: Path, target: Path, mode: str) -> None:
    """Copy or link one file to ``target``; the source is left in place (``move`` deletes it only
    after the metadata is written, see ``sort_dataset``).

    The copy goes to a temporary name and is renamed only when complete; for ``move`` its content
    hash is checked against the source too, since the source will be deleted.
    """
    if mode not in SORT_MODES:
        raise ValueError(f"SORT_MODE must be one of {SORT_MODES}, got {mode!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        if target.is_symlink() or target.exists():
            target.unlink()
        os.symlink(source.resolve(), target)
        return
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        if not same_content(source, tmp, by_hash=mode == "move"):
            raise OSError(f"copy of {source} is incomplete")


def same_content(a: Path, b: Path, by_hash: bool = True) -> bool:
    """Same size (and same BLAKE2 digest with ``by_hash``)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    return not by_hash or file_digest(a) == file_digest(b)


def file_digest(path: Path, block: int = 1 << 22) -> str:
    digest = hashlib.blake2b()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sort_dataset(items: list[RawItem], dataset_dir: str | Path, mode: str = "copy") -> dict:
    """Place every item under ``<dataset>/<split>/<class>/`` and write its metadata JSON.

    Re-running is safe: recordings whose metadata and file already exist are skipped, so an
    interrupted run (including ``move``) completes on the next call. The metadata is written
    first (it fixes the recording's id and split), then the file is copied, and only then does
    ``move`` delete the source: a kill at any point leaves every file in the raw folder, the
    dataset or both, never neither.
    """
    dataset_dir = Path(dataset_dir)
    remove_stale_temporaries(dataset_dir)  # left by a run that was killed
    earlier = {r.source: r for r in load_recordings(dataset_dir)} \
        if (dataset_dir / "metadata").is_dir() else {}
    folders = unique_names(i.label for i in items)
    ids = recording_ids(items, earlier)
    summary = {"sorted": 0, "already_done": 0, "problems": [], "splits": defaultdict(int)}
    first_label: dict[str, str] = {}
    for item, rec_id in tqdm(list(zip(items, ids)), desc="sorting", unit="file"):
        source = Path(item.source)
        if item.source in first_label:  # the same file listed twice (a CSV with a repeated row)
            summary["problems"].append({"source": item.source, "reason": (
                f"listed more than once; kept the first listing (label {first_label[item.source]!r})")})
            continue
        first_label[item.source] = item.label
        record = earlier.get(item.source)
        if record is None:
            if not source.exists():
                summary["problems"].append({"source": item.source, "reason": "file not found"})
                continue
            try:
                duration, rate, channels = audio_info(source)
            except AudioError as exc:
                summary["problems"].append({"source": item.source, "reason": exc.reason})
                continue
            relative = Path(item.split) / folders[item.label] / f"{rec_id}{source.suffix.lower()}"
            record = Recording(rec_id, item.label, sorted(set(item.background)), item.split,
                               relative.as_posix(), str(source), round(duration, 4), rate, channels,
                               item.group)
            atomic_write_json(dataset_dir / "metadata" / f"{rec_id}.json", asdict(record))
        target = record.path(dataset_dir)
        if item.source in earlier and (target.exists() or target.is_symlink()):
            if mode == "move" and source.exists() and same_content(source, target):
                source.unlink()  # a move killed between its copy and the deletion
            summary["already_done"] += 1
        elif not source.exists():
            summary["problems"].append({"source": item.source,
                                        "reason": f"file not found (and no copy at {target})"})
            continue
        else:
            place_file(source, target, mode)
            if mode == "move":  # only now: a kill before this line leaves the source in place
                source.unlink()
            summary["sorted"] += 1
        summary["splits"][record.split] += 1
    summary["splits"] = dict(summary["splits"])
    return summary


def load_recordings(dataset_dir: str | Path, split: str | None = None) -> list[Recording]:
    """All recordings of a sorted dataset (optionally one split), sorted by id."""
    meta_dir = Path(dataset_dir) / "metadata"
    if not meta_dir.is_dir():
        raise FileNotFoundError(f"no sorted dataset at {dataset_dir}: run sort_data.py first")
    records = [Recording(**read_json(p)) for p in sorted(meta_dir.glob("*.json"))]
    return [r for r in records if split is None or r.split == split]
