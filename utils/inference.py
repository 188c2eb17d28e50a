"""Scoring audio files with a trained model: decode and spectrograms in worker processes, model
calls on batches that span files, chunk scores back per file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from utils.audio import AudioError
from utils.extract import file_images, map_jobs
from utils.spectrogram import SpecParams, to_uint8


@dataclass
class FileScores:
    path: str
    starts: np.ndarray          # chunk start times in seconds
    scores: np.ndarray | None   # (n_chunks, n_classes); None when the file could not be used
    error: str = ""


def _images_for(path: str, params: SpecParams) -> tuple[str, np.ndarray | None, np.ndarray, str]:
    try:
        images, starts = file_images(path, params, pad_short=True)
    except AudioError as exc:
        return path, None, np.zeros(0), exc.reason
    if len(images) == 0:
        return path, None, np.zeros(0), "no audio to score"
    # the same uint8 quantisation as the training store, so test inputs match training inputs
    return path, to_uint8(images), starts, ""


def score_files(model, params: SpecParams, paths: Iterable[str | Path], batch_size: int = 128,
                workers: int = 1) -> Iterator[FileScores]:
    """Yield one FileScores per path (errors included); files are batched together for the model."""
    paths = [str(p) for p in paths]
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush() -> Iterator[FileScores]:
        images = np.concatenate([p[1] for p in pending]).astype(np.float32) / 255.0
        scores = np.concatenate([np.asarray(model.predict_on_batch(images[i:i + batch_size, ..., None]))
                                 for i in range(0, len(images), batch_size)])
        offset = 0
        for path, imgs, starts in pending:
            yield FileScores(path, starts, scores[offset:offset + len(imgs)])
            offset += len(imgs)
        pending.clear()

    for path, images, starts, error in map_jobs(_images_for, paths, workers, params):
        if images is None:
            yield FileScores(path, starts, None, error)
            continue
        pending.append((path, images, starts))
        if sum(len(p[1]) for p in pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()
