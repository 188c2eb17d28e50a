"""Learning from other models: distillation from teachers, and a pretrained starting point."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from utils.batches import ChunkBatches
from utils.model_io import load_model
from utils.spectrogram import spec_differences

log = logging.getLogger("bioacoustics")


def _same_spec(meta: dict, spec: dict, path: str | Path) -> None:
    changed = spec_differences(spec, meta["spec"])
    if changed:
        raise ValueError(f"{path} was trained on other spectrograms ({', '.join(changed)} differ); "
                         "it cannot teach or start a model for this store")


def teacher_scores(paths: list[str], store, shards: np.ndarray, rows: np.ndarray, classes: list[str],
                   spec: dict, temperature: float = 1.0, batch_size: int = 128) -> np.ndarray:
    """The teachers' averaged scores for the given chunks, in the student's class order.

    Softmax teachers are softened by ``temperature`` (p ** (1/T), renormalised: the same as
    dividing logits by T); classes a teacher does not know get 0 from it.
    """
    if temperature <= 0:
        raise ValueError("TEACHER_TEMPERATURE must be positive")
    total = np.zeros((len(rows), len(classes)), np.float64)
    for path in paths:
        model, meta = load_model(path)
        _same_spec(meta, spec, path)
        batches = ChunkBatches(store, shards, rows, np.zeros((len(rows), 1), np.float32), batch_size)
        scores = np.asarray(model.predict(batches, verbose=0), np.float64)
        if not meta.get("multi_label") and temperature != 1.0:
            scores = np.power(np.clip(scores, 1e-12, 1.0), 1.0 / temperature)
            scores /= scores.sum(axis=1, keepdims=True)
        index = {c: i for i, c in enumerate(meta["classes"])}
        missing = [c for c in classes if c not in index]
        if missing:
            log.warning("teacher %s does not know %d of the classes; it gives them 0", path, len(missing))
        for j, name in enumerate(classes):
            if name in index:
                total[:, j] += scores[:, index[name]]
    return (total / len(paths)).astype(np.float32)


def blend_targets(labels: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * labels + weight * teacher scores: weight 1 replaces the labels."""
    if not 0 <= weight <= 1:
        raise ValueError("TEACHER_WEIGHT must be in [0, 1]")
    return ((1.0 - weight) * labels + weight * teacher).astype(np.float32)


def start_from(model, path: str | Path, spec: dict, keep_layers: int = 0, freeze: bool = False) -> int:
    """Copy weights from a pretrained model into ``model``, layer by layer in order, by name.

    ``keep_layers`` limits it to the first N layers (0: every layer up to the classifier head,
    which is always new because the classes differ). Copied layers are frozen with ``freeze``.
    Returns the number of layers copied.
    """
    pretrained, meta = load_model(path)
    _same_spec(meta, spec, path)
    theirs = {layer.name: layer for layer in pretrained.layers}
    copied = 0
    for position, layer in enumerate(model.layers):
        if keep_layers and position >= keep_layers:
            break
        if layer.name == "scores" or not layer.weights or layer.name not in theirs:
            continue
        source = theirs[layer.name]
        if [w.shape for w in source.weights] != [w.shape for w in layer.weights]:
            continue
        layer.set_weights(source.get_weights())
        layer.trainable = not freeze
        copied += 1
    if not copied:
        raise ValueError(f"{path} shares no layer with this model (other MODEL or FILTERS?)")
    log.info("started from %s: %d layers copied%s", path, copied, " and frozen" if freeze else "")
    return copied
