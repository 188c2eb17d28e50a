"""Shared fixtures: settings pointing into a temporary folder and a tiny synthetic dataset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from utils import steps  # noqa: E402
from utils.cli import DEFAULTS_FILE  # noqa: E402
from utils.memory import keep_freed_memory  # noqa: E402
from utils.settings import load_settings  # noqa: E402
from utils.synth import make_dataset  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

keep_freed_memory()  # as every script does at its edge (utils.cli): tests run as they do

# Small, fast settings for pipeline tests: tiny images and model, few epochs, and scoring by Keras
# itself: a LiteRT export costs 2-3 s a model, and test_runtime and the five-step pipeline test
# (SCORING_RUNTIME "auto", the default) test that path.
TINY = [
    "SAMPLE_RATE=16000", "FMIN=200.0", "FMAX=7800.0", "IMAGE_HEIGHT=32", "IMAGE_WIDTH=64",
    "N_FFT=512", "FILTERS=[8, 16]", "WIDTH=1", "EPOCHS=3", "BATCH_SIZE=16", "SPEC_WORKERS=1",
    "SNAPSHOT_EPOCHS=2", "EARLY_STOPPING=0", "SCORING_RUNTIME=keras",
]


def make_settings(tmp_path: Path, *overrides: str, config_file: str | None = None):
    paths = [f"DATASET_DIR={tmp_path / 'dataset'}", f"STORE_DIR={tmp_path / 'store'}",
             f"RUNS_DIR={tmp_path / 'runs'}"]
    return load_settings(DEFAULTS_FILE, config_file, [*paths, *overrides])


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """labels.csv of 3 species x 6 recordings of 4-6 s at 16 kHz (with some secondary labels)."""
    root = tmp_path_factory.mktemp("raw")
    return make_dataset(root, n_species=3, recordings_per_species=6, seconds=(4.0, 6.0),
                        sample_rate=16000, unlabelled=2, seed=1)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_raw):
    """A sorted tiny dataset, its store and one run trained for 3 epochs (best = last, a snapshot)."""
    root = tmp_path_factory.mktemp("trained")
    s = make_settings(root, *TINY, f"RAW_DATA={tiny_raw}", "LEARNING_RATE=0.003", "SEED=3")
    steps.sort_step(s)
    steps.spec_step(s)
    steps.train_step(s)
    return s


def count_fft_calls(monkeypatch, fastest: str | None = None) -> dict[str, int]:
    """Count the calls of each FFT library from now on, in fresh work buffers (they hold the FFT
    chosen when they were made); with ``fastest``, make that the one this process's timing picks."""
    import threading

    from utils import spectrogram
    calls = dict.fromkeys(spectrogram.RFFTS, 0)
    for name, real in list(spectrogram.RFFTS.items()):
        def counted(frames, out, name=name, real=real):
            calls[name] += 1
            return real(frames, out)
        monkeypatch.setitem(spectrogram.RFFTS, name, counted)
    if fastest:
        monkeypatch.setattr(spectrogram, "fastest_rfft", lambda *shape: fastest)
    monkeypatch.setattr(spectrogram, "_thread_scratch", threading.local())
    return calls
