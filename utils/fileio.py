"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


TEMP_MARK = ".tmp"


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_MARK + dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(dest: str | Path, data) -> None:
    atomic_write_text(dest, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files a killed process left under ``folder`` (``atomic_path`` names:
    hidden, with ``.tmp`` before the extension); returns how many. Call it only when no other
    process is writing there."""
    removed = 0
    for path in Path(folder).rglob(f".*{TEMP_MARK}*"):
        if path.is_file() and f"{TEMP_MARK}" in path.name[1:]:
            path.unlink()
            removed += 1
    return removed
