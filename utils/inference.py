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


def _images_for(path: str, params: SpecParams, shifts: tuple[float, ...] = ()
                ) -> tuple[str, np.ndarray | None, np.ndarray, str]:
    try:
        images, starts = file_images(path, params, pad_short=True, shifts=shifts)
    except AudioError as exc:
        return path, None, np.zeros(0), exc.reason
    if len(images) == 0:
        return path, None, np.zeros(0), "no audio to score"
    # the same uint8 quantisation as the training store, so test inputs match training inputs
    return path, to_uint8(images), starts, ""


def score_files(model, params: SpecParams, paths: Iterable[str | Path], batch_size: int = 128,
                workers: int = 1, shifts: tuple[float, ...] = ()) -> Iterator[FileScores]:
    """Yield one FileScores per path (errors included); files are batched together for the model.

    ``shifts``: test-time augmentation, the chunks of the grid moved by these offsets (seconds)
    are scored too (see :func:`utils.extract.file_images`).
    """
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

    for path, images, starts, error in map_jobs(_images_for, paths, workers, params, tuple(shifts)):
        if images is None:
            yield FileScores(path, starts, None, error)
            continue
        pending.append((path, images, starts))
        if sum(len(p[1]) for p in pending) >= batch_size:
            yield from flush()
    if pending:
        yield from flush()


@dataclass
class Member:
    """One model of an ensemble, its columns put in the ensemble's class order."""

    model: object
    meta: dict
    weight: float
    columns: np.ndarray  # ensemble class i is this model's output column columns[i]

    @property
    def params(self) -> SpecParams:
        return SpecParams.from_dict(self.meta["spec"])


def load_ensemble(paths: list[str | Path], weights: list[float] | None = None
                  ) -> tuple[list[Member], list[str]]:
    """Models whose scores are averaged (weights normalised to sum 1); (members, class list).

    Every model must know the same classes (in any order); each keeps its own spectrogram
    settings, so models trained on other chunk lengths or bands can be combined.
    """
    from utils.model_io import load_model

    if not paths:
        raise ValueError("no model to test")
    weights = list(weights) if weights else [1.0] * len(paths)
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"TEST_MODEL_WEIGHTS needs {len(paths)} non-negative weights, got {weights}")
    members, classes = [], None
    for path, weight in zip(paths, weights):
        model, meta = load_model(path)
        if classes is None:
            classes = list(meta["classes"])
        elif sorted(meta["classes"]) != sorted(classes):
            differ = sorted(set(meta["classes"]) ^ set(classes))
            raise ValueError(f"{path} knows other classes than {paths[0]} (differ in: "
                             f"{', '.join(differ[:5])}); an ensemble needs one class list")
        columns = np.array([list(meta["classes"]).index(c) for c in classes])
        members.append(Member(model, meta, weight / sum(weights), columns))
    return members, classes


def ensemble_scores(members: list[Member], paths: list[str], reduce, batch_size: int = 128,
                    workers: int = 1, shifts: tuple[float, ...] = ()
                    ) -> dict[str, tuple[np.ndarray | None, int, str]]:
    """path -> (reduced scores weighted over models or None, chunks scored, error).

    ``reduce`` turns one model's chunk scores of a file into what is averaged: a Pooling
    (one vector per file), or any ``f(scores, starts, path, params)`` (e.g. scores per 5-s window). Each
    model scores every file with its own spectrogram settings and is reduced first, so models
    with different chunk grids combine.
    """
    from tqdm import tqdm

    out: dict[str, tuple[np.ndarray | None, int, str]] = {p: (None, 0, "") for p in paths}
    for number, member in enumerate(members, 1):
        desc = "scoring" if len(members) == 1 else f"scoring (model {number}/{len(members)})"
        results = score_files(member.model, member.params, paths, batch_size, workers, shifts)
        for result in tqdm(results, total=len(paths), desc=desc, unit="file"):
            total, chunks, error = out[result.path]
            if result.scores is None or error:
                out[result.path] = (None, chunks, error or result.error)
                continue
            reduced = member.weight * np.asarray(
                reduce(result.scores[:, member.columns], result.starts, result.path, member.params))
            out[result.path] = (reduced if total is None else total + reduced,
                                max(chunks, len(result.scores)), "")
    return out
