"""Training throughput: train.py's input pipeline against batches already in memory.

Same model, same chunks, same run: (a) the reference, model.fit on numpy arrays in memory
without augmentation; (b) what train.py does, model.fit on the batches utils.training's
training_batches builds (ChunkBatches reading the on-disk store, with the settings' augmentation,
balance and background prefetching). Headline: (b) / (a) in samples/s. Also printed: (c) the
time one thread takes to build one of (b)'s batches, which bounds a GPU that trains faster.
On an NVIDIA GPU (with nvidia-ml-py installed) each contender's mean GPU utilisation is printed.

    python bench/bench_train.py [--quick] [--steps N] [--set MODEL=efficientnet_b0 --set
                                          MIXED_PRECISION=bfloat16 ...]
"""
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from utils.cli import settings_from_cli  # noqa: E402
from utils.extract import Job, Selection, extract_to_store  # noqa: E402
from utils.memory import keep_freed_memory  # noqa: E402
from utils.models import build_model  # noqa: E402
from utils.spectrogram import SpecParams  # noqa: E402
from utils.synth import make_dataset  # noqa: E402
from utils.training import ChunkSet, TrainOptions, precision_policy, training_batches  # noqa: E402

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


class GpuBusy:
    """Mean utilisation of GPU 0 (percent of time a kernel ran, as nvidia-smi shows it) while a
    block runs, sampled by NVML every 50 ms in a thread; None without nvidia-ml-py or a GPU."""

    def __init__(self):
        self.handle, self.samples = None, []
        try:
            import pynvml
        except ImportError:
            return
        try:
            pynvml.nvmlInit()
            self.handle, self.nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except pynvml.NVMLError:  # no NVIDIA driver or GPU
            pass

    def __enter__(self):
        self._stop = threading.Event()
        if self.handle is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def __exit__(self, *exc):
        self._stop.set()
        if self.handle is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def fit_seconds(model, data, batch_size: int, busy: GpuBusy) -> float:
    with busy:
        started = time.perf_counter()
        if isinstance(data, tuple):
            model.fit(data[0], data[1], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        else:
            model.fit(data, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - started


def fit_rates(model, contenders, steps: int, batch_size: int, repeats: int):
    """Samples per second of one epoch of ``steps`` batches for each contender: the best of
    ``repeats``, taken in turns so that both see the same load on a shared machine; and each
    contender's mean GPU utilisation over all its epochs (None without a GPU)."""
    best = [float("inf")] * len(contenders)
    busy = [GpuBusy() for _ in contenders]
    for _ in range(repeats):
        for k, data in enumerate(contenders):
            best[k] = min(best[k], fit_seconds(model, data, batch_size, busy[k]))
    return [steps * batch_size / seconds for seconds in best], [b.mean for b in busy]


def build_milliseconds(pipeline, batches: int, repeats: int) -> float:
    """Milliseconds one thread takes to build one training batch (read the chunks, draw and read
    what is mixed in, augment), the best of ``repeats`` passes over ``batches`` batches."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for index in range(batches):
            pipeline._make_batch(0, index % len(pipeline))
        best = min(best, time.perf_counter() - started)
    return best / batches * 1000


def busy_text(percent: float | None) -> str:
    return "" if percent is None else f", GPU busy {percent:.0f}%"


@click.command()
@click.option("--quick", is_flag=True, help="Fewer steps (under a minute on 2 cores).")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Batches per timed epoch [30; 6 with --quick]; a GPU needs a few hundred.")
@click.option("--config", "config_file", default=None, help="Settings override file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting (MODEL, MIXED_PRECISION, BATCH_SIZE, AUGMENTATION...).")
def main(quick, steps, config_file, overrides):
    settings = settings_from_cli(config_file, overrides)
    keep_freed_memory()  # as train.py does
    store = build_store(Path(tempfile.mkdtemp()), settings)
    index = store.index[~store.index["noise"]]  # every recording is a training one here
    labels = sorted(index["label"].unique())
    batch_size, steps = settings.BATCH_SIZE, steps or (6 if quick else 30)
    # chunks repeat when the store holds fewer than the epoch needs (long GPU epochs)
    chosen = index.iloc[np.resize(np.arange(len(index)), steps * batch_size)]
    classes = np.array([labels.index(x) for x in chosen["label"]])
    targets = np.eye(len(labels), dtype=np.float32)[classes]
    chunks = ChunkSet(chosen["shard"].to_numpy(), chosen["row"].to_numpy(),
                      chosen["recording"].to_numpy(), targets)
    in_memory = (store.images(chunks.shards, chunks.rows)[..., None], targets)
    spec = store.settings["spec"]
    options = TrainOptions.from_settings(settings)  # what train.py builds the run from
    pipeline = training_batches(store, chunks, classes, store.index, options)
    augmenter = pipeline.augmenter
    keras.config.set_dtype_policy(precision_policy(options.mixed_precision))
    model = build_model(options.model, (spec["height"], spec["width"], 1), len(labels),
                        options.architecture)
    model.compile(optimizer="adamw", loss="categorical_crossentropy")
    # build, compile and trace both input paths outside the timings
    model.fit(in_memory[0][:batch_size * 2], targets[:batch_size * 2], batch_size=batch_size,
              epochs=1, verbose=0)
    model.fit(pipeline, epochs=1, verbose=0, shuffle=False)
    repeats = 2 if quick else 3
    (reference, ours), busy = fit_rates(model, [in_memory, pipeline], steps, batch_size, repeats)
    print(f"backend {keras.backend.backend()}, model {options.model}, precision "
          f"{options.mixed_precision}, batch {batch_size}, {steps} steps, "
          f"input {spec['height']}x{spec['width']}")
    print(f"(a) in memory, no augmentation: {reference:7.1f} samples/s{busy_text(busy[0])}")
    print(f"(b) store + augmentation:       {ours:7.1f} samples/s{busy_text(busy[1])}  "
          f"({sorted(augmenter.strengths) if augmenter else 'no augmentation'})")
    print(f"(c) one (b) batch built by one thread: {build_milliseconds(pipeline, steps, repeats):.1f} ms")
    print(f"RESULT train_input_ratio {ours / reference:.2f} target 0.9")


if __name__ == "__main__":
    main()
