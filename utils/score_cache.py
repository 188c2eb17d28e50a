"""Scores of finished files kept on disk while a long scoring run goes on, so that a run killed
after hours resumes with the files it had not reached (one small .npz per model and file)."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from utils.fileio import atomic_path, atomic_write_json, read_json, remove_stale_temporaries

log = logging.getLogger("bioacoustics")


class ScoreCache:
    """``folder`` holds the scores of one set of settings (``identity``); other settings wipe it."""

    def __init__(self, folder: str | Path, identity: dict):
        self.folder = Path(folder)
        self.identity = json.loads(json.dumps(identity, sort_keys=True, default=str))
        marker = self.folder / "identity.json"
        if marker.exists() and read_json(marker) != self.identity:
            log.info("scores cached in %s are of other settings: scoring afresh", self.folder)
            shutil.rmtree(self.folder)
        if not marker.exists():
            atomic_write_json(marker, self.identity)
        remove_stale_temporaries(self.folder)  # a killed run's half-written file
        found = len(list(self.folder.glob("m*.npz")))
        if found:
            log.info("resuming: %d scored files found in %s", found, self.folder)

    def _file(self, member: int, path: str) -> Path:
        return self.folder / f"m{member}_{hashlib.sha1(path.encode('utf-8', 'surrogatepass')).hexdigest()[:20]}.npz"

    def get(self, member: int, path: str) -> tuple[np.ndarray, int] | None:
        file = self._file(member, path)
        if not file.exists():
            return None
        with np.load(file) as data:
            return data["scores"], int(data["chunks"])

    def put(self, member: int, path: str, scores: np.ndarray, chunks: int) -> None:
        with atomic_path(self._file(member, path)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, scores=scores, chunks=chunks)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def model_identity(paths: list[str | Path]) -> list[dict]:
    """What identifies a saved model without reading it whole: path, size and modification time."""
    out = []
    for path in paths:
        stat = Path(path).stat()
        out.append({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns})
    return out
