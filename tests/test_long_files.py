"""Long recordings: processed in segments with bounded memory, with the same chunks as whole."""
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TINY, make_settings
from utils import steps
from utils.audio import write_audio
from utils.extract import Job, _process, file_images, plan_jobs, segment_images
from utils.inference import score_files
from utils.spectrogram import SpecParams
from utils.store import Store


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory):
    rng = np.random.default_rng(5)
    t = np.arange(32000 * 40) / 32000
    signal = 0.1 * rng.normal(size=len(t)) + 0.3 * np.sin(2 * np.pi * (1000 + 300 * np.sin(t)) * t)
    path = tmp_path_factory.mktemp("long") / "forty seconds.flac"
    write_audio(path, signal, 32000)
    return path


@pytest.mark.parametrize("emphasis", [0.0, 0.97])
def test_segments_give_the_whole_file_chunks(long_flac, emphasis):
    p = SpecParams(sample_rate=22050, fmin=200.0, fmax=10000.0, n_fft=512, height=32, width=64,
                   chunk_overlap=0.4, min_chunk_length=0.5, pre_emphasis=emphasis)
    whole, whole_starts = file_images(long_flac, p)
    parts = [segment_images(long_flac, p, first, 17) for first in range(0, len(whole), 17)]
    images = np.concatenate([i for i, _ in parts])
    starts = np.concatenate([s for _, s in parts])
    assert np.array_equal(starts, whole_starts)
    assert np.abs(images - whole).max() < 1e-3


def test_plan_cuts_only_long_recordings(long_flac):
    p = SpecParams(sample_rate=16000, fmin=100.0, fmax=7000.0, n_fft=256, height=16, width=32)
    jobs = [Job("long", str(long_flac), "a", "train"), Job("short", str(long_flac), "a", "train")]
    planned = plan_jobs(jobs, p, {"long": 40.0, "short": 5.0}, segment_seconds=15.0)
    long_parts = [j for j in planned if j.recording == "long"]
    assert [j.first_chunk for j in long_parts] == [0, 15, 30] and long_parts[-1].last
    assert not any(j.last for j in long_parts[:-1]) and long_parts[0].file_chunks == 40
    assert [j for j in planned if j.recording == "short"] == [jobs[1]]


def test_segmented_store_equals_whole_file_store(tmp_path, long_flac):
    raw = tmp_path / "raw"
    for label in ("a", "b"):
        (raw / label).mkdir(parents=True)
        (raw / label / f"{label}.flac").write_bytes(long_flac.read_bytes())
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={raw}", "VAL_FRACTION=0.0")
    steps.sort_step(s)
    whole = Store(steps.spec_step(s)["store"])
    segmented = Store(steps.spec_step(s.replace(SEGMENT_LENGTH=7.0))["store"])
    assert whole.root != segmented.root
    key = ["recording", "start"]
    a, b = whole.index.sort_values(key), segmented.index.sort_values(key)
    assert a[key + ["noise"]].values.tolist() == b[key + ["noise"]].values.tolist()
    difference = whole.images(a["shard"], a["row"]) - segmented.images(b["shard"], b["row"])
    assert np.abs(difference).max() <= 1 / 255 + 1e-6


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory):
    """A 2-hour 8-kHz recording (115 MB of 16-bit WAV; 230 MB decoded as float32), written in blocks."""
    path = tmp_path_factory.mktemp("two_hours") / "two hours.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as fh:
        for _ in range(120):
            fh.write(rng.normal(0, 0.1, 8000 * 60).astype(np.float32))
    return path


SMALL = SpecParams(sample_rate=8000, fmin=100.0, fmax=3900.0, n_fft=256, height=16, width=32)
DECODED_BYTES = 7200 * 8000 * 4  # the whole file as float32


def peak_bytes(work) -> tuple[int, object]:
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_extraction_memory_stays_bounded_by_the_segment(two_hours):
    jobs = plan_jobs([Job("r", str(two_hours), "a", "train")], SMALL, {"r": 7200.0}, segment_seconds=60.0)
    assert len(jobs) == 120
    _process(jobs[0], SMALL)  # warm-up: one-off caches (filterbank, windows) are not the point
    peak, chunks = peak_bytes(lambda: sum(len(_process(job, SMALL)["images"]) for job in jobs))
    assert chunks == 7200
    assert peak < DECODED_BYTES / 20, f"peak {peak / 1e6:.1f} MB for 60-s segments of a 2-hour file"


class MeanScorer:
    """Stands in for a model: scoring memory is about the pipeline around it."""

    def predict_on_batch(self, images):
        return np.repeat(images.mean(axis=(1, 2, 3))[:, None], 4, axis=1)


def test_scoring_memory_stays_bounded_by_the_segment(two_hours):
    list(score_files(MeanScorer(), SMALL, [two_hours], segment_seconds=60.0))  # warm-up
    peak, results = peak_bytes(lambda: list(score_files(MeanScorer(), SMALL, [two_hours], 256,
                                                        segment_seconds=60.0)))
    assert results[0].scores.shape == (7200, 4) and not results[0].error
    assert np.array_equal(results[0].starts, np.arange(7200.0))
    assert peak < DECODED_BYTES / 20, f"peak {peak / 1e6:.1f} MB scoring a 2-hour file in 60-s segments"


class BatchRecorder(MeanScorer):
    def __init__(self):
        self.lengths = []

    def predict_on_batch(self, images):
        self.lengths.append(len(images))
        return super().predict_on_batch(images)


def test_batches_are_full_but_the_last_and_each_file_keeps_its_own_scores(tmp_path):
    """Each file's leftover chunks wait for the next files' instead of making a short batch: JAX
    compiles the model again for each new batch length."""
    rng = np.random.default_rng(7)
    paths = []
    for k, seconds in enumerate([3.2, 7.9, 1.1, 12.5, 5.0, 2.3]):
        paths.append(tmp_path / f"file{k}.wav")
        write_audio(paths[-1], 0.1 * rng.normal(size=int(seconds * 8000)), 8000)
    paths.insert(3, tmp_path / "broken.wav")
    paths[3].write_bytes(b"RIFF0000WAVEnot audio")
    model = BatchRecorder()
    results = list(score_files(model, SMALL, paths, batch_size=4, segment_seconds=4.0))
    assert [r.path for r in results] == [str(p) for p in paths]  # in order, the error included
    assert results[3].scores is None and results[3].error
    scored = [r for r in results if r.scores is not None]
    assert sum(model.lengths) == sum(len(r.scores) for r in scored) > 8
    assert all(n == 4 for n in model.lengths[:-1]) and 0 < model.lengths[-1] <= 4
    for result in scored:  # the files whose chunks shared batches and segments, each alone
        alone = next(score_files(MeanScorer(), SMALL, [result.path]))
        assert np.array_equal(result.starts, alone.starts)
        assert np.allclose(result.scores, alone.scores, atol=1e-6)
