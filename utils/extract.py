"""Step 2 logic: audio files -> spectrogram chunks -> signal/noise gating -> the store."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import multiprocessing
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import librosa
import numpy as np
from tqdm import tqdm

from utils.audio import AudioError, load_audio
from utils.gating import signal_fraction
from utils.spectrogram import SpecParams, chunk_images, split_chunks, to_uint8

if TYPE_CHECKING:
    from utils.store import Store

log = logging.getLogger("bioacoustics")


def file_images(path: str | Path, params: SpecParams, pad_short: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """All chunk images of one file (float32 in [0, 1]) and their start times in seconds."""
    signal = load_audio(path, params.sample_rate, params.channel)
    if params.pre_emphasis:
        signal = librosa.effects.preemphasis(signal, coef=params.pre_emphasis)
    chunks, starts = split_chunks(signal, params, pad_short=pad_short)
    return chunk_images(chunks, params), starts


@dataclass(frozen=True)
class Job:
    recording: str
    path: str
    label: str
    split: str


def _process(job: Job, params: SpecParams) -> dict:
    try:
        images, starts = file_images(job.path, params)
    except AudioError as exc:
        return {"job": job, "status": "error", "detail": exc.reason}
    except MemoryError:
        return {"job": job, "status": "error", "detail": "out of memory"}
    if len(images) == 0:
        return {"job": job, "status": "too_short", "detail": "shorter than MIN_CHUNK_LENGTH"}
    return {"job": job, "status": "ok", "detail": "", "images": to_uint8(images),
            "starts": starts, "s2n": signal_fraction(images)}


def worker_count(requested: int) -> int:
    return requested if requested > 0 else max(1, os.cpu_count() or 1)


def worker_pool(workers: int) -> cf.ProcessPoolExecutor:
    # spawn, not fork: the parent may hold threads (TensorFlow, BLAS) that fork would break
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def map_jobs(func, jobs: list, workers: int, *args, pool: cf.ProcessPoolExecutor | None = None
             ) -> Iterator:
    """Ordered results of ``func(job, *args)``; worker processes when workers > 1 (or in ``pool``)."""
    if pool is None and (workers <= 1 or len(jobs) <= 1):
        for job in jobs:
            yield func(job, *args)
        return
    owned = pool is None
    pool = pool or worker_pool(workers)
    in_flight: collections.deque = collections.deque()
    try:
        # a bounded number of jobs in flight keeps memory flat when the consumer is slower
        for job in jobs:
            in_flight.append(pool.submit(func, job, *args))
            if len(in_flight) >= 4 * max(workers, 1):
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        if owned:
            pool.shutdown(cancel_futures=True)


@dataclass(frozen=True)
class Selection:
    """Which chunks of a file go into the store."""

    signal_threshold: float = 0.0001   # signal-pixel fraction below which a chunk is noise
    noise_fraction: float = 1.0        # share of noise chunks kept (marked noise)
    max_per_file: int = 0              # signal chunks kept per file; 0 = all
    seed: int = 1337

    def to_dict(self) -> dict:
        return asdict(self)


def choose_chunks(recording: str, s2n: np.ndarray, selection: Selection, quota: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(indices of kept chunks in time order, their noise flags).

    Signal chunks over the cap (the smaller of max_per_file and the file's share of a class cap)
    are dropped at random, noise chunks are kept with probability noise_fraction. The random
    generator is seeded by the seed and the recording id, so the choice does not depend on the
    order or the process in which files are handled (and a resumed run chooses the same chunks).
    """
    rng = np.random.default_rng([selection.seed, zlib.crc32(recording.encode("utf-8"))])
    noise = s2n < selection.signal_threshold
    signal = np.flatnonzero(~noise)
    caps = [c for c in (selection.max_per_file, quota) if c > 0]
    if caps and len(signal) > min(caps):
        signal = rng.choice(signal, size=min(caps), replace=False)
    kept_noise = np.flatnonzero(noise)
    kept_noise = kept_noise[rng.random(len(kept_noise)) < selection.noise_fraction]
    keep = np.sort(np.concatenate([signal, kept_noise]).astype(int))
    return keep, noise[keep]


def class_quotas(chunk_counts: dict[str, int], cap: int) -> dict[str, int]:
    """Split a class's chunk cap over its files as evenly as their lengths allow (water filling).

    ``chunk_counts`` maps each file of one class to the chunks it can give. Spreading the cap
    keeps as many recordings (individuals, sites) in the training set as possible; every
    recording keeps at least one chunk, even when the class has more recordings than the cap.
    """
    if cap <= 0:
        return {name: 0 for name in chunk_counts}
    quotas, left = {}, cap
    ordered = sorted(chunk_counts.items(), key=lambda item: (item[1], item[0]))
    for position, (name, available) in enumerate(ordered):
        share = left // (len(ordered) - position)
        quotas[name] = max(1, min(available, share))
        left -= min(available, share)
    return quotas


def extract_to_store(jobs: Iterable[Job], params: SpecParams, store_root: str | Path,
                     selection: Selection = Selection(), workers: int = 0,
                     store_settings: dict | None = None, shard_size: int = 4096,
                     quotas: dict[str, int] | None = None) -> tuple[Store, dict]:
    """Write every job's chunks into the store at ``store_root``; completed recordings are skipped.

    ``quotas`` caps the signal chunks of individual recordings (see :func:`class_quotas`).
    """
    from utils.store import StoreWriter  # pandas: the parent needs it, spawned workers do not

    settings = store_settings or {"spec": params.to_dict(), "selection": selection.to_dict()}
    writer = StoreWriter(Path(store_root), settings, shard_size=shard_size)
    jobs = list(jobs)
    quotas = quotas or {}
    todo = [j for j in jobs if j.recording not in writer.completed]
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d recordings already in the store", len(jobs) - len(todo), len(jobs))
    counts = {"ok": 0, "too_short": 0, "error": 0, "signal_chunks": 0, "noise_chunks": 0}
    problems = []
    results = map_jobs(_process, todo, worker_count(workers), params)
    for result in tqdm(results, total=len(todo), desc="spectrograms", unit="file"):
        job = result["job"]
        counts[result["status"]] += 1
        if result["status"] != "ok":
            problems.append({"recording": job.recording, "path": job.path,
                             "status": result["status"], "detail": result["detail"]})
            writer.add(job.recording, np.zeros((0,)), [], result["status"], result["detail"])
            continue
        keep, noise = choose_chunks(job.recording, result["s2n"], selection,
                                    quotas.get(job.recording, 0))
        rows = [{"recording": job.recording, "label": job.label, "split": job.split,
                 "start": round(float(t), 4), "s2n": round(float(s), 6), "noise": bool(n)}
                for t, s, n in zip(result["starts"][keep], result["s2n"][keep], noise)]
        counts["signal_chunks"] += int((~noise).sum())
        counts["noise_chunks"] += int(noise.sum())
        writer.add(job.recording, result["images"][keep], rows)
    store = writer.close()
    return store, {"counts": counts, "problems": problems}
