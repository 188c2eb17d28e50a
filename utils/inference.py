"""Scoring audio files with a trained model: decode and spectrograms in worker processes, model
calls on batches that span files, chunk scores back per file."""
from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from utils.audio import AudioError, audio_info
from utils.extract import file_images, header_chunk_count, map_jobs, segment_images
from utils.spectrogram import SpecParams, model_input, to_uint8

log = logging.getLogger("bioacoustics")


@dataclass
class FileScores:
    path: str
    starts: np.ndarray          # chunk start times in seconds
    scores: np.ndarray | None   # (n_chunks, n_classes); None when the file could not be used
    error: str = ""


@dataclass(frozen=True)
class Piece:
    """A whole file, or a segment of whole chunks of a long one (bounded decode memory)."""

    path: str
    first: int = 0
    count: int = 0      # 0: the whole file
    last: bool = True   # the file's final piece


def plan_pieces(paths: list[str], params: SpecParams, segment_seconds: float) -> list[Piece]:
    """Files longer than ``segment_seconds`` become consecutive segments; the rest stay whole."""
    per_segment = max(1, int(segment_seconds * params.sample_rate) // params.step_samples)
    pieces = []
    for path in paths:
        try:
            duration, rate, _ = audio_info(path)  # one header read gives both
            long = duration > segment_seconds
            total = header_chunk_count(duration, rate, params) if long else 0
        except AudioError:
            long = False  # the worker reports the error
        if not long:
            pieces.append(Piece(path))
            continue
        firsts = list(range(0, total, per_segment)) or [0]
        pieces += [Piece(path, f, per_segment, f == firsts[-1]) for f in firsts]
    return pieces


@dataclass(frozen=True)
class TestTimeAugmentation:
    """How each file's chunk images are shown to the model: rolled in turn (``roll_cycle``, no extra
    cost), and views scored besides them and pooled with them (``shifts``, ``rolls``)."""

    shifts: tuple[float, ...] = ()  # seconds: the chunk grid moved by each offset (whole files only)
    rolls: tuple[float, ...] = ()   # shares of the image height: every image rolled along frequency
    roll_cycle: tuple[float, ...] = ()  # shares of the height: a file's chunks rolled in turn by 0, then each

    def __post_init__(self) -> None:
        for name, shares in (("TEST_TIME_ROLLS", self.rolls), ("TEST_TIME_ROLL_CYCLE", self.roll_cycle)):
            if any(not -1.0 < share < 1.0 for share in shares):
                raise ValueError(f"{name} are shares of the image height in (-1, 1), got {list(shares)}")

    @classmethod
    def from_settings(cls, s) -> "TestTimeAugmentation":
        return cls(tuple(s["TEST_TIME_SHIFTS"]), tuple(s["TEST_TIME_ROLLS"]),
                   tuple(s["TEST_TIME_ROLL_CYCLE"]))

    def cycled(self, images: np.ndarray, first: int = 0) -> np.ndarray:
        """``images`` (a file's chunks from its chunk number ``first`` on) with chunk i rolled along
        frequency by the (i mod n)th of 0 and the ``roll_cycle`` rolls: the chunks pooled into a
        file's score see its song at several pitches, each chunk still scored once. In place."""
        rows = [0, *_whole_rows(self.roll_cycle, images.shape[1])]
        turn = (first + np.arange(len(images))) % len(rows)
        for k, r in enumerate(rows):
            if r:
                picked = turn == k
                images[picked] = np.roll(images[picked], r, axis=1)
        return images

    def rolled(self, images: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The images followed by each roll of them (wrapping round, as the ``roll_v`` training
        augmentation does), their start times repeated; rolls of the same whole rows count once."""
        rows = [r for r in dict.fromkeys(_whole_rows(self.rolls, images.shape[1])) if r]
        if not rows:
            return images, starts
        return (np.concatenate([images, *(np.roll(images, r, axis=1) for r in rows)]),
                np.tile(starts, 1 + len(rows)))


def _whole_rows(shares: tuple[float, ...], height: int) -> list[int]:
    """Rolls given as shares of the image height, in whole rows (``roll_v`` in training likewise)."""
    return [round(share * height) for share in shares]


def _images_for(piece: Piece, params: SpecParams, tta: TestTimeAugmentation = TestTimeAugmentation()
                ) -> tuple[Piece, np.ndarray | None, np.ndarray, str]:
    try:
        if piece.count:  # test-time shifts apply to whole files only
            images, starts = segment_images(piece.path, params, piece.first, piece.count)
        else:
            images, starts = file_images(piece.path, params, pad_short=True, shifts=tta.shifts)
    except AudioError as exc:
        return piece, None, np.zeros(0), exc.reason
    if len(images) == 0 and piece.first == 0:
        return piece, None, np.zeros(0), "no audio to score"
    # the same uint8 quantisation as the training store, so test inputs match training inputs
    return piece, *tta.rolled(tta.cycled(to_uint8(images), piece.first), starts), ""


def _scores_for(piece: Piece, params: SpecParams, tta: TestTimeAugmentation, runtime_file: str
                ) -> tuple[Piece, np.ndarray | None, np.ndarray, str]:
    """Images and their scores in one worker process (exported runtimes: the model is per process)."""
    from utils.runtime import worker_scorer

    piece, images, starts, error = _images_for(piece, params, tta)
    if images is None:
        return piece, None, starts, error
    scores = worker_scorer(runtime_file).predict_on_batch(model_input(images))
    return piece, scores, starts, ""


def warm_worker(params: SpecParams, runtime_file: str = "") -> int:
    """Load and run once what a worker needs (lazy imports, filterbank, the exported model), so
    that a long-lived pool pays its one-off costs up front."""
    from utils.spectrogram import chunk_images

    images = chunk_images(np.zeros((1, params.chunk_samples), np.float32), params)
    if runtime_file:
        from utils.runtime import worker_scorer

        scorer = worker_scorer(runtime_file)
        scorer.predict_on_batch(np.repeat(images[..., None], sum(scorer.SIZES), axis=0))  # each size once
    return os.getpid()


def score_files(model, params: SpecParams, paths: Iterable[str | Path], batch_size: int = 128,
                workers: int = 1, tta: TestTimeAugmentation = TestTimeAugmentation(),
                segment_seconds: float = 600.0, runtime_file: str = "", pool=None
                ) -> Iterator[FileScores]:
    """Yield one FileScores per path, in order (errors included).

    Worker processes decode and make spectrograms while this process runs the model; chunks of
    several files share a batch, and files longer than ``segment_seconds`` are read segment by
    segment, so decode memory does not grow with file length. ``tta``: test-time augmentation,
    chunks rolled in turn, and shifted chunk grids (files up to ``segment_seconds``) and rolled
    images scored too.
    ``runtime_file``: an exported model (LiteRT) that each worker process runs itself on its own
    pieces, instead of ``model`` in this process. ``pool``: worker processes already started
    (``utils.extract.worker_pool``), kept for the next call.
    """
    paths = [str(p) for p in paths]
    pieces = plan_pieces(paths, params, segment_seconds)
    if runtime_file:
        scored = ((piece, starts, scores, error) for piece, scores, starts, error in
                  map_jobs(_scores_for, pieces, workers, params, tta, runtime_file, pool=pool))
    else:
        scored = _batched(model, batch_size, map_jobs(_images_for, pieces, workers, params, tta,
                                                      pool=pool))
    yield from _files_from_pieces(scored)


def _batched(model, batch_size: int, images_per_piece: Iterable) -> Iterator[tuple]:
    """(piece, starts, scores or None, error) in piece order, the model called on batches of
    ``batch_size`` chunks that span pieces (and files).

    Chunks left over from one batch wait for the next pieces, so only the last batch is shorter:
    JAX compiles the model again for each new batch length (a second or more on a CPU).
    """
    queue: deque[tuple] = deque()  # (piece, starts, chunk count or None, error), not yet yielded
    unscored: list[np.ndarray] = []  # uint8 chunks of queued pieces, in order
    n_unscored = 0
    scores = np.zeros((0, 0), np.float32)  # of queued pieces' scored chunks, in order

    def score(n: int) -> None:
        """Score the first n unscored chunks: whole batches, or all that is left at the end."""
        nonlocal unscored, n_unscored, scores
        chunks = np.concatenate(unscored)
        new = np.concatenate([np.asarray(model.predict_on_batch(model_input(chunks[i:i + batch_size])))
                              for i in range(0, n, batch_size)])
        scores = np.concatenate([scores, new]) if len(scores) else new
        unscored, n_unscored = [chunks[n:]], n_unscored - n

    def ready() -> Iterator[tuple]:
        """The pieces at the head of the queue whose chunks are all scored."""
        nonlocal scores
        while queue and (queue[0][2] is None or queue[0][2] <= len(scores)):
            piece, starts, count, error = queue.popleft()
            if count is None:
                yield piece, starts, None, error
            else:
                yield piece, starts, scores[:count], ""
                scores = scores[count:]

    for piece, images, starts, error in images_per_piece:
        queue.append((piece, starts, None if images is None else len(images), error))
        if images is not None:
            unscored.append(images)
            n_unscored += len(images)
        if n_unscored >= batch_size:
            score(n_unscored - n_unscored % batch_size)
        yield from ready()
    if n_unscored:
        score(n_unscored)
    yield from ready()


def _files_from_pieces(scored: Iterable[tuple]) -> Iterator[FileScores]:
    """One FileScores per file from its pieces' scores, or its first piece's error."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    failed: dict[str, str] = {}
    for piece, starts, scores, error in scored:
        if scores is None or piece.path in failed:
            failed.setdefault(piece.path, error)
        else:
            parts.setdefault(piece.path, []).append((starts, scores))
        if not piece.last:
            continue
        got = parts.pop(piece.path, [])
        if piece.path in failed:
            yield FileScores(piece.path, np.zeros(0), None, failed.pop(piece.path))
        else:
            yield FileScores(piece.path, np.concatenate([g[0] for g in got]),
                             np.concatenate([g[1] for g in got]))


@dataclass
class Member:
    """One model of an ensemble, its columns put in the ensemble's class order."""

    model: object
    meta: dict
    weight: float
    columns: np.ndarray  # ensemble class i is this model's output column columns[i]
    runtime_file: str = ""  # its LiteRT export when scoring runs there (see utils.runtime)

    @property
    def params(self) -> SpecParams:
        return SpecParams.from_dict(self.meta["spec"])


def load_ensemble(paths: list[str | Path], weights: list[float] | None = None, runtime: str = "keras",
                  int8: bool = True) -> tuple[list[Member], list[str]]:
    """Models whose scores are averaged (weights normalised to sum 1); (members, class list).

    Every model must know the same classes (in any order); each keeps its own spectrogram
    settings, so models trained on other chunk lengths or bands can be combined. ``runtime``:
    "keras", "litert", "litert-int8" or "auto" (``utils.runtime.scoring_file``); ``int8=False``
    keeps "auto" on the float export, for scores that are the model's own (evaluation).
    """
    from utils.model_io import load_model
    from utils.runtime import choose_runtime, scoring_file

    chosen = choose_runtime(runtime)

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
        exported = ""
        if chosen == "litert":
            try:
                exported = str(scoring_file(model, path, tuple(model.input_shape[1:]), runtime, int8))
            except Exception as exc:  # noqa: BLE001 - "auto" falls back to Keras, loudly
                if runtime != "auto":
                    raise
                log.warning("scoring %s with Keras: its LiteRT export failed (%s)", path, exc)
        members.append(Member(model, meta, weight / sum(weights), columns, exported))
    return members, classes


def ensemble_scores(members: list[Member], paths: list[str], reduce, batch_size: int = 128,
                    workers: int = 1, tta: TestTimeAugmentation = TestTimeAugmentation(),
                    segment_seconds: float = 600.0, cache=None, overlap: float | None = None, pool=None
                    ) -> dict[str, tuple[np.ndarray | None, int, str]]:
    """path -> (reduced scores weighted over models or None, chunks scored, error).

    ``reduce`` turns one model's chunk scores of a file into what is averaged: ``Pooling.per_file``
    (one vector per file), or any ``f(scores, starts, path, params)`` (e.g. scores per 5-s window). Each
    model scores every file with its own spectrogram settings and is reduced first, so models
    with different chunk grids combine. ``cache`` (a ``ScoreCache``) keeps each finished file's
    reduced scores, and files found in it are not scored again. ``overlap`` (seconds) replaces
    the models' chunk overlap: the chunk grid only, the spectrograms stay the models' own.
    """
    from tqdm import tqdm

    out: dict[str, tuple[np.ndarray | None, int, str]] = {p: (None, 0, "") for p in paths}

    def add(path: str, member: Member, reduced: np.ndarray, chunks: int) -> None:
        total, most, error = out[path]
        if not error:
            weighted = member.weight * reduced
            out[path] = (weighted if total is None else total + weighted, max(most, chunks), "")

    for number, member in enumerate(members, 1):
        todo = []
        for path in paths:
            cached = cache.get(number, path) if cache is not None else None
            if cached is None:
                todo.append(path)
            else:
                add(path, member, *cached)
        desc = "scoring" if len(members) == 1 else f"scoring (model {number}/{len(members)})"
        params = member.params if overlap is None else replace(member.params, chunk_overlap=overlap)
        results = score_files(member.model, params, todo, batch_size, workers, tta,
                              segment_seconds, member.runtime_file, pool)
        for result in tqdm(results, total=len(todo), desc=desc, unit="file"):
            if result.scores is None:
                out[result.path] = (None, out[result.path][1], out[result.path][2] or result.error)
                continue
            reduced = np.asarray(reduce(result.scores[:, member.columns], result.starts, result.path,
                                        params))
            if cache is not None:
                cache.put(number, result.path, reduced, len(result.scores))
            add(result.path, member, reduced, len(result.scores))
    return out
