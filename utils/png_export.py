"""PNG copies of stored chunks, for people who want to look at what the model sees."""
from __future__ import annotations

from pathlib import Path

import cv2
from tqdm import tqdm

from utils.fileio import atomic_path
from utils.names import safe_name, unique_names
from utils.store import Store


def png_path(out_dir: Path, folders: dict[str, str], row) -> Path:
    """``<split>/<class>/<recording>_<start>s.png``; noise chunks under ``noise/<class>/``."""
    group = "noise" if row.noise else row.split
    return out_dir / group / folders[row.label] / f"{safe_name(row.recording)}_{row.start:09.3f}s.png"


def export_png(store: Store, out_dir: str | Path) -> dict:
    """Write every chunk of the store as an 8-bit grey PNG (existing files are kept)."""
    out_dir = Path(out_dir)
    index = store.index
    folders = unique_names(index["label"].unique())
    written = 0
    for row in tqdm(index.itertuples(), total=len(index), desc="png", unit="chunk"):
        path = png_path(out_dir, folders, row)
        if path.exists():
            continue
        image = store.images([row.shard], [row.row])[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # the temporary name ends in .png too, for cv2
            if not cv2.imwrite(str(tmp), (image * 255).round().astype("uint8")):
                raise OSError(f"could not write {path}")
        written += 1
    return {"folder": str(out_dir), "written": written, "chunks": len(index)}
