"""A faster CPU runtime for scoring: the Keras model exported to LiteRT (TFLite, XNNPACK kernels).

On 2 CPU cores the exported default model scores about twice as many chunks per second as Keras
on TensorFlow, and one single-threaded interpreter per worker process lets decoding,
spectrograms and the model share the cores without contention. The export needs the TensorFlow
backend and the ``ai-edge-litert`` package; every export is checked against the Keras model's
scores before it is used, and anything else falls back to Keras.

A model file that carries calibration chunks (utils.model_io) is also exported with int8 weights
and activations. Its scores differ from Keras by quantisation, so it is checked on those chunks
for the same top class, and ``auto`` uses it only where it is also faster on this machine: for
the default WIDTH=2 model int8 kernels are 2.2-2.3x faster, for WIDTH=1 they are slower.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from utils.fileio import atomic_path, atomic_write_json, read_json
from utils.spectrogram import model_input

log = logging.getLogger("bioacoustics")

RUNTIMES = ("auto", "keras", "litert", "litert-int8")
BATCH = 16             # chunks per interpreter call: the fastest on one core here (1-64 tried)
TOLERANCE = 1e-4       # largest score difference to the Keras model accepted at export
INT8_AGREEMENT = 0.9   # share of calibration chunks whose top class the int8 export must keep
INT8_MARGIN = 0.02     # ... or pick a class that the float model scores at most this far below it
INT8_SUFFIX = ".int8.tflite"
INT8_SPEEDUP = 1.1     # auto uses the int8 export only when at least this much faster here


def litert_possible() -> str:
    """"" when LiteRT can be used in this process, else the reason it cannot."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "the ai-edge-litert package is not installed"
    import keras

    if keras.backend.backend() != "tensorflow":
        return f"the export needs the TensorFlow backend (this is {keras.backend.backend()})"
    return ""


def choose_runtime(runtime: str) -> str:
    """"keras" or "litert" for the SCORING_RUNTIME setting ("auto": LiteRT where possible)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"SCORING_RUNTIME must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "keras":
        return "keras"
    reason = litert_possible()
    if reason and runtime != "auto":
        raise ValueError(f"SCORING_RUNTIME = {runtime!r} cannot be used: {reason}")
    return "keras" if reason else "litert"


@functools.cache
def machine_name() -> str:
    """The CPU's model name and core count: what a speed measured here holds for."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next((line.split(":", 1)[1].strip() for line in info
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name or platform.machine()}, {os.cpu_count()} cores"


def exported_path(model_path: str | Path) -> Path:
    """Where a model's LiteRT export lives: beside it, named by the model file's content (in the
    temporary folder when the model's folder is read-only, as Kaggle's inputs are)."""
    model_path = Path(model_path)
    digest = hashlib.blake2b(model_path.read_bytes(), digest_size=8).hexdigest()
    folder = model_path.parent
    if not os.access(folder, os.W_OK):
        user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
        folder = Path(tempfile.gettempdir()) / f"bioacoustics-litert-{user}"  # not shared between users
    return folder / f"{model_path.stem}.{digest}.tflite"


def export_litert(model, model_path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """The model's LiteRT file (exported once, then reused), its scores checked against Keras."""
    target = exported_path(model_path)
    if target.exists():
        return target
    with atomic_path(target) as tmp:  # the temporary name ends in .tflite, as the exporter wants
        model.export(str(tmp), format="litert", verbose=False)
        difference = score_difference(model, tmp, input_shape)
        if difference > TOLERANCE:
            raise ValueError(f"the LiteRT export of {model_path} differs from Keras by {difference:.2g} "
                             f"(more than {TOLERANCE}); set SCORING_RUNTIME = 'keras'")
    log.info("exported %s to LiteRT (%s); its scores match Keras", model_path, target.name)
    return target


def scoring_file(model, model_path: str | Path, input_shape: tuple[int, ...], runtime: str = "auto",
                 int8: bool = True) -> Path:
    """The LiteRT file to score ``model_path`` with: its float export, or its int8 export for
    ``runtime`` "litert-int8", and for "auto" (unless ``int8`` is False) where the int8 export
    keeps the top class and is faster here (measured once per machine; the verdict is kept beside the
    exports, and measured again on a machine with another CPU)."""
    exported = export_litert(model, model_path, input_shape)
    if runtime == "litert" or (runtime == "auto" and not int8):
        return exported
    quantized = int8_path(exported)
    verdict_file = quantized.with_suffix(".json")
    if runtime == "auto" and verdict_file.exists():  # before reading the chunks: the common case
        verdict = read_json(verdict_file)
        if "reason" in verdict or verdict.get("machine") == machine_name():  # a failed export fails anywhere
            return quantized if verdict["use"] else exported
    from utils.model_io import read_calibration

    calibration = read_calibration(model_path)
    if calibration is None:
        if runtime == "litert-int8":
            raise ValueError(f"{model_path} has no calibration chunks for an int8 export (saved before "
                             "they were kept, or not by train.py); set SCORING_RUNTIME = 'litert'")
        return exported
    images = model_input(calibration)
    try:
        export_int8(model, model_path, quantized, images)
    except Exception as exc:  # noqa: BLE001 - a converter error too: auto keeps the float export
        if runtime == "litert-int8":
            raise
        log.warning("%s: scoring with the float export (%s)", model_path, exc)
        atomic_write_json(verdict_file, {"use": False, "reason": str(exc)})
        return exported
    if runtime == "litert-int8":
        return quantized
    speedup = seconds_per_chunk(exported, images) / seconds_per_chunk(quantized, images)
    use = speedup >= INT8_SPEEDUP
    atomic_write_json(verdict_file, {"use": use, "speedup": round(speedup, 2), "machine": machine_name()})
    log.info("%s: int8 export %.2fx the float export's speed here, %s", model_path, speedup,
             "used" if use else "not used")
    return quantized if use else exported


def int8_path(exported: Path) -> Path:
    """The int8 export beside the float one (same folder, same content hash)."""
    return exported.with_name(exported.name.replace(".tflite", INT8_SUFFIX))


def runtime_name(runtime_file: str) -> str:
    """The runtime a model scores on, from its scoring file ("": Keras)."""
    return "keras" if not runtime_file else "litert-int8" if runtime_file.endswith(INT8_SUFFIX) else "litert"


def export_int8(model, model_path: str | Path, target: Path, images: np.ndarray) -> None:
    """Write the model with int8 weights and activations (ranges set on ``images``, float in and
    out) to ``target`` once; it must give the Keras model's top class on INT8_AGREEMENT of
    ``images``."""
    if target.exists():
        return
    import tensorflow as tf

    with atomic_path(target) as tmp:  # Keras passes the options on to TensorFlow's converter
        model.export(str(tmp), format="litert", verbose=False, optimizations=[tf.lite.Optimize.DEFAULT],
                     representative_dataset=lambda: ([image[None]] for image in images),
                     target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]})
        same = top_class_agreement(np.asarray(model.predict_on_batch(images)),
                                   LiteRTScorer(tmp).predict_on_batch(images))
        if same < INT8_AGREEMENT:
            raise ValueError(f"the int8 export of {model_path} keeps the top class of only {same:.0%} "
                             f"of its calibration chunks (needed: {INT8_AGREEMENT:.0%})")
    log.info("exported %s to LiteRT int8 (%s); top class kept on %.0f%% of its calibration chunks",
             model_path, target.name, 100 * same)


def top_class_agreement(reference: np.ndarray, scores: np.ndarray) -> float:
    """Share of chunks whose top class in ``scores`` is, in ``reference``, the top class or within
    INT8_MARGIN of it: where the reference itself hesitates (an untrained model's near-equal
    scores), a swap of near-equals is no disagreement."""
    picked = reference[np.arange(len(reference)), scores.argmax(axis=1)]
    return float(np.mean(picked >= reference.max(axis=1) - INT8_MARGIN))


def seconds_per_chunk(path: str | Path, images: np.ndarray, rounds: int = 3) -> float:
    """The best of a few timed passes over ``images`` with one thread (after a warm-up pass)."""
    scorer = LiteRTScorer(path)
    scorer.predict_on_batch(images)
    best = np.inf
    for _ in range(rounds):
        started = time.perf_counter()
        scorer.predict_on_batch(images)
        best = min(best, time.perf_counter() - started)
    return best / len(images)


def score_difference(model, exported: str | Path, input_shape: tuple[int, ...], n: int = 2 * BATCH + 3
                     ) -> float:
    """Largest absolute score difference between Keras and the export on random spectrograms."""
    images = np.random.default_rng(0).random((n, *input_shape), dtype=np.float32)
    keras_scores = np.asarray(model.predict_on_batch(images))
    return float(np.abs(LiteRTScorer(exported).predict_on_batch(images) - keras_scores).max())


class LiteRTScorer:
    """``predict_on_batch`` over a LiteRT file with one thread.

    Chunks go through interpreters of fixed batch sizes (``BATCH``, then 4 and 1 for the rest):
    resizing an interpreter costs more than a call, and padding a last batch of 3 to 16 would
    waste most of that call.
    """

    SIZES = (BATCH, 4, 1)

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreters: dict[int, tuple] = {}
        for size in self.SIZES:
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            given = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(given["index"], [size, *given["shape"][1:]])
            interpreter.allocate_tensors()
            output = interpreter.get_output_details()[0]
            self.interpreters[size] = (interpreter, given["index"], output["index"])
        self.classes = int(output["shape"][-1])

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        out, start = [], 0
        while start < len(images):
            size = next(s for s in self.SIZES if s <= len(images) - start)
            interpreter, given, output = self.interpreters[size]
            interpreter.set_tensor(given, images[start:start + size])
            interpreter.invoke()
            out.append(interpreter.get_tensor(output).copy())
            start += size
        return np.concatenate(out) if out else np.zeros((0, self.classes), np.float32)


_scorers: dict[str, LiteRTScorer] = {}


def worker_scorer(path: str) -> LiteRTScorer:
    """One interpreter per process and model file (worker processes reuse theirs)."""
    if path not in _scorers:
        _scorers[path] = LiteRTScorer(path)
    return _scorers[path]
