"""Training losses: cross-entropy or focal loss, softmax or sigmoid, with label smoothing."""
from __future__ import annotations

import keras

LOSSES = ("crossentropy", "focal")


def make_loss(name: str, multi_label: bool, label_smoothing: float = 0.0, gamma: float = 2.0):
    """Categorical (softmax head) or binary (sigmoid head) cross-entropy, or their focal forms,
    which down-weight easy examples (gamma) and help with many easy background chunks."""
    if not 0 <= label_smoothing < 1:
        raise ValueError("LABEL_SMOOTHING must be in [0, 1)")
    if name == "crossentropy":
        kind = keras.losses.BinaryCrossentropy if multi_label else keras.losses.CategoricalCrossentropy
        return kind(label_smoothing=label_smoothing)
    if name == "focal":
        kind = (keras.losses.BinaryFocalCrossentropy if multi_label
                else keras.losses.CategoricalFocalCrossentropy)
        return kind(gamma=gamma, label_smoothing=label_smoothing)
    raise ValueError(f"LOSS must be one of {LOSSES}, got {name!r}")
