"""A faster CPU runtime for scoring: the Keras model exported to LiteRT (TFLite, XNNPACK kernels).

On 2 CPU cores the exported default model scores about twice as many chunks per second as Keras
on TensorFlow, and one single-threaded interpreter per worker process lets decoding,
spectrograms and the model share the cores without contention. The export needs the TensorFlow
backend and the ``ai-edge-litert`` package; every export is checked against the Keras model's
scores before it is used, and anything else falls back to Keras.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from utils.fileio import atomic_path

log = logging.getLogger("bioacoustics")

RUNTIMES = ("auto", "keras", "litert")
BATCH = 16             # chunks per interpreter call: the fastest on one core here (1-64 tried)
TOLERANCE = 1e-4       # largest score difference to the Keras model accepted at export


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
    if reason and runtime == "litert":
        raise ValueError(f"SCORING_RUNTIME = 'litert' cannot be used: {reason}")
    return "keras" if reason else "litert"


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
