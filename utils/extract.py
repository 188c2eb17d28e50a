"""Step 2 logic: audio files -> spectrogram chunks -> signal/noise gating -> the store."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import cv2
import librosa
import numpy as np
from tqdm import tqdm

from utils.audio import AudioError, audio_info, load_audio, load_span, resampled_length
from utils.gating import signal_fraction
from utils.spectrogram import (SpecParams, chunk_images, chunk_starts, fastest_fft_for, split_chunks,
                               to_uint8)

if TYPE_CHECKING:
    from utils.store import Store

log = logging.getLogger("bioacoustics")


def file_images(path: str | Path, params: SpecParams, pad_short: bool = False,
                shifts: tuple[float, ...] = (), fft: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """All chunk images of one file (float32 in [0, 1]) and their start times in seconds.

    ``shifts`` (seconds) add the chunks of the grid moved by each offset (test-time augmentation);
    an offset that leaves less than one chunk of audio adds nothing. ``fft``: see
    :func:`chunk_images`.
    """
    signal = _emphasise(load_audio(path, params.sample_rate, params.channel), params)
    chunks, starts = split_chunks(signal, params, pad_short=pad_short)
    images, all_starts = [chunk_images(chunks, params, fft)], [starts]
    for shift in shifts:
        offset = int(round(shift * params.sample_rate))
        if offset <= 0 or len(signal) - offset < params.chunk_samples:
            continue
        chunks, starts = split_chunks(signal[offset:], params)
        images.append(chunk_images(chunks, params, fft))
        all_starts.append(starts + offset / params.sample_rate)
    if len(images) == 1:  # no shifts: the arrays as they are, without a copy of every image
        return images[0], all_starts[0]
    return np.concatenate(images), np.concatenate(all_starts)


def _emphasise(signal: np.ndarray, params: SpecParams) -> np.ndarray:
    if not params.pre_emphasis:
        return signal
    return librosa.effects.preemphasis(signal, coef=params.pre_emphasis).astype(np.float32)


def file_chunk_count(path: str | Path, params: SpecParams) -> int:
    """Chunks of the whole file, from its header (nothing is decoded)."""
    duration, rate, _ = audio_info(path)
    return header_chunk_count(duration, rate, params)


def header_chunk_count(duration: float, rate: int, params: SpecParams) -> int:
    """Chunks of a file of ``duration`` seconds at ``rate`` Hz once resampled to the params' rate."""
    return len(chunk_starts(resampled_length(int(round(duration * rate)), rate, params.sample_rate),
                            params))


def resampled_samples(path: str | Path, sample_rate: int) -> int:
    """Length of the whole file at ``sample_rate``, from one header read."""
    duration, rate, _ = audio_info(path)
    return resampled_length(int(round(duration * rate)), rate, sample_rate)


def segment_images(path: str | Path, params: SpecParams, first: int, count: int,
                   fft: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images of chunks ``first .. first+count-1`` of a file, decoding only the audio they cover.

    The same images as :func:`file_images` gives for those chunks (to float rounding), with memory
    bounded by the segment instead of the file.
    """
    starts = np.asarray(chunk_starts(resampled_samples(path, params.sample_rate), params)
                        [first:first + count])
    if len(starts) == 0:
        return np.zeros((0, params.height, params.width), np.float32), np.zeros(0)
    context = 1 if params.pre_emphasis and starts[0] > 0 else 0  # pre-emphasis needs one sample back
    begin, end = int(starts[0]) - context, int(starts[-1]) + params.chunk_samples
    signal = _emphasise(load_span(path, params.sample_rate, begin, end, params.channel), params)[context:]
    signal = np.pad(signal, (0, max(0, end - begin - context - len(signal))))
    windows = np.lib.stride_tricks.sliding_window_view(signal, params.chunk_samples)
    chunks = windows[starts - starts[0]]
    return chunk_images(chunks, params, fft), starts / params.sample_rate


@dataclass(frozen=True)
class Job:
    """One unit of extraction work: a whole recording, or a segment of a long one."""

    recording: str
    path: str
    label: str
    split: str
    first_chunk: int = 0
    chunk_count: int = 0   # 0: the whole file
    file_chunks: int = 0   # chunks of the whole file (segments only)
    last: bool = True      # the recording's final segment

    def cap(self, cap: int) -> int:
        """A segment's share of a per-recording cap (0 stays 0: no cap)."""
        if not cap or not self.chunk_count:
            return cap
        return max(1, -(-cap * min(self.chunk_count, self.file_chunks - self.first_chunk)
                        // self.file_chunks))


def plan_jobs(jobs: Iterable[Job], params: SpecParams, durations: dict[str, float],
              segment_seconds: float) -> list[Job]:
    """Cut recordings longer than ``segment_seconds`` into segments of whole chunks.

    Memory per job is then bounded by the segment length, and a long recording's segments run
    in parallel. ``durations`` (seconds, from the metadata) decides which files need a look at
    their header.
    """
    planned = []
    per_segment = max(1, int(segment_seconds * params.sample_rate) // params.step_samples)
    for job in jobs:
        if durations.get(job.recording, 0.0) <= segment_seconds:
            planned.append(job)
            continue
        try:
            total = file_chunk_count(job.path, params)
        except AudioError:
            planned.append(job)  # the worker reports the error
            continue
        firsts = list(range(0, total, per_segment)) or [0]
        planned += [dataclasses.replace(job, first_chunk=f, chunk_count=per_segment,
                                        file_chunks=total, last=f == firsts[-1]) for f in firsts]
    return planned


def _process(job: Job, params: SpecParams, fft: str | None = None) -> dict:
    cv2.setNumThreads(1)  # parallelism comes from worker processes; OpenCV threads would compete
    try:
        if job.chunk_count:
            images, starts = segment_images(job.path, params, job.first_chunk, job.chunk_count, fft)
        else:
            images, starts = file_images(job.path, params, fft=fft)
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


class DaskPool:
    """Runs jobs on a Dask cluster through the same submit/result interface as a process pool.

    Dask was chosen over Ray: pure Python from PyPI, no daemon beyond the scheduler the user
    already runs, a LocalCluster for one machine and tests, and deployment helpers for SLURM/PBS
    (dask-jobqueue) and Kubernetes that users of HPC clusters already have. Workers must see the
    audio at the same paths (a shared file system); results come back here and only this process
    writes the store, so resume works exactly as with local workers.
    """

    def __init__(self, address: str = "", workers: int = 2):
        from distributed import Client, LocalCluster

        self.cluster = None
        if address:
            self.client = Client(address)
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)

    @property
    def workers(self) -> int:
        return max(1, sum(w["nthreads"] for w in self.client.scheduler_info()["workers"].values()))

    def submit(self, func, *args):
        return self.client.submit(func, *args, pure=False)  # pure=False: never merge equal jobs

    def shutdown(self, cancel_futures: bool = True) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "DaskPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


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
            if len(in_flight) >= 4 * max(getattr(pool, "workers", workers), 1):
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
    min_signal_share: float = 0.0      # share of a file's chunks that stay signal whatever the gate says

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def random(self) -> bool:
        """Whether the seed decides anything (a per-file cap or a share of noise chunks)."""
        return self.max_per_file > 0 or self.noise_fraction < 1.0


def choose_chunks(recording: str, s2n: np.ndarray, selection: Selection, quota: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(indices of kept chunks in time order, their noise flags).

    The gate's verdict (signal below signal_threshold is noise) is overruled for the best-scoring
    noise chunks where fewer than min_signal_share of the file's chunks are signal: a song that
    never stops has no pixel above its own band's median, so the gate alone takes all of it for
    noise. Signal chunks over the cap (the smaller of max_per_file and the file's share of a class
    cap) are dropped at random, noise chunks are kept with probability noise_fraction. The random
    generator is seeded by the seed and the recording id, so the choice does not depend on the
    order or the process in which files are handled (and a resumed run chooses the same chunks).
    """
    rng = np.random.default_rng([selection.seed, zlib.crc32(recording.encode("utf-8"))])
    noise = s2n < selection.signal_threshold
    missing = int(np.ceil(selection.min_signal_share * len(s2n) - 1e-9)) - int((~noise).sum())
    if missing > 0:  # the gate's best-scoring noise chunks (the earliest of equals) become signal
        candidates = np.flatnonzero(noise)
        noise[candidates[np.argsort(-s2n[candidates], kind="stable")[:missing]]] = False
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
                     quotas: dict[str, int] | None = None, pool=None) -> tuple[Store, dict]:
    """Write every job's chunks into the store at ``store_root``; completed recordings are skipped.

    ``quotas`` caps the signal chunks of individual recordings (see :func:`class_quotas`); a
    segment of a long recording gets its share of a cap. ``pool`` runs the jobs elsewhere (a
    :class:`DaskPool`); by default ``workers`` local processes do.
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
    problems, failed = [], set()
    # One FFT library for the whole store, whichever process or machine computes a chunk, and
    # again when a killed run resumes: the libraries differ by float rounding, which can move a
    # pixel by one step of 255, and a store should not depend on which process was faster.
    fft = writer.pinned("fft", lambda: fastest_fft_for(params))
    results = map_jobs(_process, todo, worker_count(workers), params, fft, pool=pool)
    for result in tqdm(results, total=len(todo), desc="spectrograms", unit="job"):
        job = result["job"]
        if job.recording in failed:  # an earlier segment failed: the recording is closed
            continue
        if result["status"] != "ok":
            counts[result["status"]] += 1
            failed.add(job.recording)
            problems.append({"recording": job.recording, "path": job.path,
                             "status": result["status"], "detail": result["detail"]})
            writer.add(job.recording, np.zeros((0,)), [], result["status"], result["detail"])
            continue
        counts["ok"] += job.last
        selection_job = dataclasses.replace(selection, max_per_file=job.cap(selection.max_per_file))
        keep, noise = choose_chunks(f"{job.recording}#{job.first_chunk}" if job.first_chunk
                                    else job.recording, result["s2n"], selection_job,
                                    job.cap(quotas.get(job.recording, 0)))
        rows = [{"recording": job.recording, "label": job.label, "split": job.split,
                 "start": round(float(t), 4), "s2n": round(float(s), 6), "noise": bool(n)}
                for t, s, n in zip(result["starts"][keep], result["s2n"][keep], noise)]
        counts["signal_chunks"] += int((~noise).sum())
        counts["noise_chunks"] += int(noise.sum())
        writer.add(job.recording, result["images"][keep], rows, final=job.last)
    store = writer.close()
    return store, {"counts": counts, "problems": problems}
