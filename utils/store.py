"""The training store: append-only shards of uint8 chunk images plus an index table.

Layout of one store (a folder named after its settings fingerprint)::

    settings.json          spectrogram + gating settings the store was written with
    pinned.json            choices made once for the store's life, such as the FFT library
    shards/00000.npy       (n, height, width) uint8 images
    shards/00000.csv       one row per image: recording, label, split, start, s2n, noise
    shards/00000.done.json recordings completed in this shard (the commit marker, written last)
    index.csv              all committed rows, rebuilt after each run (for people and tools)

A shard counts only once its ``.done.json`` exists, so a killed run leaves no half-written data
in the index: on restart the orphans are deleted and the missing recordings are processed again.
A long recording may span several shards; its rows count only once it is complete, and only from
the shard where its completed attempt began (rows of an attempt cut short are ignored).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from utils.fileio import atomic_path, atomic_write_json, atomic_write_text, read_json

INDEX_COLUMNS = ["recording", "label", "split", "start", "s2n", "noise"]


class StoreError(ValueError):
    pass


def store_path(root: str | Path, fingerprint: str) -> Path:
    return Path(root) / f"store-{fingerprint}"


@dataclass
class StoreWriter:
    root: Path
    settings: dict[str, Any]
    shard_size: int = 4096
    _images: list[np.ndarray] = field(default_factory=list)
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _done: dict[str, dict[str, Any]] = field(default_factory=dict)
    _open: dict[str, dict[str, Any]] = field(default_factory=dict)  # recordings still receiving parts

    def __post_init__(self):
        self.root = Path(self.root)
        (self.root / "shards").mkdir(parents=True, exist_ok=True)
        settings_file = self.root / "settings.json"
        if settings_file.exists():
            if read_json(settings_file) != json.loads(json.dumps(self.settings)):
                raise StoreError(f"{self.root} was written with other settings; "
                                 "use a new store folder instead of mixing")
        else:
            atomic_write_json(settings_file, self.settings)
        self.completed = committed_recordings(self.root)
        self._next_shard = _remove_uncommitted(self.root)

    def pinned(self, name: str, choose: Callable[[], Any]) -> Any:
        """The value recorded under ``name`` for this store, or ``choose()``, recorded now: a
        choice that must not change when a killed run resumes, perhaps on another machine."""
        path = self.root / "pinned.json"
        pinned = read_json(path) if path.exists() else {}
        if name not in pinned:
            pinned[name] = choose()
            atomic_write_json(path, pinned)
        return pinned[name]

    @property
    def buffered(self) -> int:
        return sum(len(i) for i in self._images)

    def add(self, recording: str, images: np.ndarray, rows: list[dict[str, Any]],
            status: str = "ok", detail: str = "", final: bool = True) -> None:
        """Queue chunks of a recording (possibly none); with ``final`` the recording is complete
        and ``status`` is its outcome. Flushes a shard whenever one is full."""
        if len(images) != len(rows):
            raise ValueError("one index row per image")
        entry = self._open.setdefault(recording, {"chunks": 0, "first_shard": self._next_shard})
        entry["chunks"] += len(rows)
        if len(images):
            self._images.append(np.asarray(images, np.uint8))
            self._rows.extend(rows)
        if final:
            self._done[recording] = {"status": status, "detail": detail, **self._open.pop(recording)}
        if self.buffered >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._done and not self._rows:
            return
        name = f"{self._next_shard:05d}"
        shards = self.root / "shards"
        if self._images:
            with atomic_path(shards / f"{name}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.concatenate(self._images))
        frame = pd.DataFrame(self._rows, columns=INDEX_COLUMNS)
        atomic_write_text(shards / f"{name}.csv", frame.to_csv(index=False))
        atomic_write_json(shards / f"{name}.done.json", self._done)  # commit marker, always last
        self.completed.update(self._done)
        self._images, self._rows, self._done = [], [], {}
        self._next_shard += 1

    def close(self) -> "Store":
        self.flush()
        store = Store(self.root)
        atomic_write_text(self.root / "index.csv", store.index.to_csv(index=False))
        return store


def committed_recordings(root: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    for marker in sorted((Path(root) / "shards").glob("*.done.json")):
        done.update(read_json(marker))
    return done


def _remove_uncommitted(root: Path) -> int:
    """Delete shard files a killed run left without a commit marker; return the next shard number."""
    shards = Path(root) / "shards"
    committed = {p.name.split(".")[0] for p in shards.glob("*.done.json")}
    for path in shards.iterdir():
        if path.name.startswith(".") or path.name.split(".")[0] not in committed:
            path.unlink()
    return max((int(n) for n in committed), default=-1) + 1


class Store:
    """Read side: the index of committed chunks and fast gathering of their images."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "settings.json").exists():
            raise StoreError(f"no spectrogram store at {self.root}: run spec.py first")
        self.settings = read_json(self.root / "settings.json")
        self.recordings = committed_recordings(self.root)
        frames, self._arrays = [], {}
        for marker in sorted((self.root / "shards").glob("*.done.json")):
            shard = int(marker.name.split(".")[0])
            frame = pd.read_csv(marker.with_name(f"{shard:05d}.csv"), keep_default_na=False,
                                dtype={"recording": str, "label": str, "split": str})
            if len(frame):
                frame.insert(0, "row", np.arange(len(frame)))
                frame.insert(0, "shard", shard)
                first = frame["recording"].map(  # incomplete recordings: never valid
                    lambda r: self.recordings[r].get("first_shard", 0) if r in self.recordings else np.inf)
                frames.append(frame[first.astype(float) <= shard])
        columns = ["shard", "row", *INDEX_COLUMNS]
        self.index = (pd.concat(frames, ignore_index=True) if frames
                      else pd.DataFrame(columns=columns))
        self.index["noise"] = self.index["noise"].astype(bool)

    def _array(self, shard: int) -> np.ndarray:
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.root / "shards" / f"{shard:05d}.npy", mmap_mode="r")
        return self._arrays[shard]

    def images(self, shards: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Gather images by (shard, row) pairs, in the given order, as float32 in [0, 1]."""
        shards, rows = np.asarray(shards), np.asarray(rows)
        height, width = self.settings["spec"]["height"], self.settings["spec"]["width"]
        out = np.empty((len(rows), height, width), np.float32)
        for shard in np.unique(shards):
            where = np.flatnonzero(shards == shard)
            order = np.argsort(rows[where])  # ascending reads are kinder to the page cache
            out[where[order]] = self._array(int(shard))[rows[where][order]]
        out *= 1.0 / 255.0
        return out
