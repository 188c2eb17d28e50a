"""Training throughput: train.py's input pipeline against batches already in memory.

Same model, same chunks, same run: (a) the reference, model.fit on numpy arrays in memory
without augmentation; (b) what train.py does, model.fit on ChunkBatches reading the on-disk store
with the default augmentation and background prefetching. Headline: (b) / (a) in samples/s.

    python bench/bench_train.py [--quick]
"""
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from utils.augment import Augmenter  # noqa: E402
from utils.batches import ChunkBatches  # noqa: E402
from utils.cli import DEFAULTS_FILE  # noqa: E402
from utils.extract import Job, Selection, extract_to_store  # noqa: E402
from utils.models import build_model  # noqa: E402
from utils.settings import load_settings  # noqa: E402
from utils.spectrogram import SpecParams, row_frequencies  # noqa: E402
from utils.synth import make_dataset  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "insectset32"


def build_store(workdir: Path, settings):
    """A store from InsectSet32 (or synthetic calls when ../shared is absent)."""
    if SHARED.is_dir():
        files = sorted(SHARED.rglob("*.flac"))[:60]
        jobs = [Job(f"r{i}", str(f), f.parent.name, "train") for i, f in enumerate(files)]
        params = SpecParams.from_settings(settings.replace(SAMPLE_RATE=32000, FMAX=15000.0))
    else:
        csv = make_dataset(workdir / "raw", 8, 8, sample_rate=22050)
        files = sorted((csv.parent / "audio").rglob("*.wav"))
        jobs = [Job(f"r{i}", str(f), f.parent.name, "train") for i, f in enumerate(files)]
        params = SpecParams.from_settings(settings.replace(SAMPLE_RATE=22050, FMAX=10000.0))
    store, _ = extract_to_store(jobs, params, workdir / "store", Selection(), workers=2)
    return store


def fit_seconds(model, data, batch_size: int) -> float:
    started = time.perf_counter()
    if isinstance(data, tuple):
        model.fit(data[0], data[1], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    else:
        model.fit(data, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - started


def fit_rates(model, contenders, steps: int, batch_size: int, repeats: int) -> list[float]:
    """Samples per second of one epoch of ``steps`` batches for each contender: the best of
    ``repeats``, taken in turns so that both see the same load on a shared machine."""
    best = [float("inf")] * len(contenders)
    for _ in range(repeats):
        for k, data in enumerate(contenders):
            best[k] = min(best[k], fit_seconds(model, data, batch_size))
    return [steps * batch_size / seconds for seconds in best]


@click.command()
@click.option("--quick", is_flag=True, help="Fewer steps (under a minute on 2 cores).")
def main(quick):
    settings = load_settings(DEFAULTS_FILE)
    store = build_store(Path(tempfile.mkdtemp()), settings)
    index = store.index[~store.index["noise"]]
    noise = store.index[store.index["noise"]]
    labels = sorted(index["label"].unique())
    batch_size, steps = settings.BATCH_SIZE, (6 if quick else 30)
    chosen = index.iloc[: steps * batch_size]
    targets = np.eye(len(labels), dtype=np.float32)[[labels.index(x) for x in chosen["label"]]]
    shards, rows = chosen["shard"].to_numpy(), chosen["row"].to_numpy()
    in_memory = (store.images(shards, rows)[..., None], targets)
    spec = store.settings["spec"]
    augmenter = Augmenter(dict(settings.AUGMENTATION), settings.AUGMENTATION_PROBABILITY,
                          settings.AUGMENTATION_COUNT, seed=0,
                          row_hz=row_frequencies(SpecParams.from_dict(spec)))
    pipeline = ChunkBatches(store, shards, rows, targets, batch_size, shuffle=True, seed=0,
                            augmenter=augmenter, prefetch=True,
                            noise=(noise["shard"].to_numpy(), noise["row"].to_numpy()))
    model = build_model(settings.MODEL, (spec["height"], spec["width"], 1), len(labels))
    model.compile(optimizer="adamw", loss="categorical_crossentropy")
    # build, compile and trace both input paths outside the timings
    model.fit(in_memory[0][:batch_size * 2], targets[:batch_size * 2], batch_size=batch_size,
              epochs=1, verbose=0)
    model.fit(pipeline, epochs=1, verbose=0, shuffle=False)
    repeats = 2 if quick else 3
    reference, ours = fit_rates(model, [in_memory, pipeline], steps, batch_size, repeats)
    print(f"backend {keras.backend.backend()}, model {settings.MODEL}, batch {batch_size}, "
          f"{steps} steps, input {spec['height']}x{spec['width']}")
    print(f"(a) in memory, no augmentation: {reference:7.1f} samples/s")
    print(f"(b) store + augmentation:       {ours:7.1f} samples/s  ({sorted(augmenter.strengths)})")
    print(f"RESULT train_input_ratio {ours / reference:.2f} target 0.9")


if __name__ == "__main__":
    main()
