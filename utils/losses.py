"""Training losses: cross-entropy or focal loss, softmax or sigmoid, with label smoothing, and the
logit-adjusted cross-entropy for uneven classes."""
from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOSSES = ("crossentropy", "focal")


@keras.saving.register_keras_serializable(package="bioacoustics")
class LogitAdjustedCrossentropy(keras.losses.Loss):
    """Softmax cross-entropy on the model's log scores plus the log of the training prior (Menon et
    al. 2021, "Long-tail learning via logit adjustment", tau = 1). A frequent class must then beat a
    rare one by the ratio of their priors in training, so the model's own scores, used unchanged at
    test time, stop leaning towards what was common in training. ``y_pred`` are softmax scores,
    whose logs are the logits up to a constant the softmax ignores."""

    def __init__(self, log_prior, label_smoothing: float = 0.0,
                 name: str = "logit_adjusted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.log_prior = [float(v) for v in log_prior]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        log_scores = ops.log(ops.clip(y_pred, keras.backend.epsilon(), 1.0))
        logits = log_scores + ops.convert_to_tensor(self.log_prior, dtype=log_scores.dtype)
        return keras.losses.categorical_crossentropy(y_true, logits, from_logits=True,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "log_prior": self.log_prior,
                "label_smoothing": self.label_smoothing}


def class_log_prior(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Log of each class's share of the training chunks (``classes``: each chunk's class index)."""
    counts = np.bincount(np.asarray(classes), minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError("every class needs training chunks for its prior")
    return np.log(counts / counts.sum())


def check_logit_adjustment(name: str, multi_label: bool) -> None:
    """Logit adjustment shifts softmax logits: it needs the plain softmax cross-entropy."""
    if multi_label or name != "crossentropy":
        raise ValueError('CLASS_BALANCE = "logit_adjustment" needs LOSS = "crossentropy" and a '
                         "softmax head (MULTI_LABEL = False)")


def make_loss(name: str, multi_label: bool, label_smoothing: float = 0.0, gamma: float = 2.0,
              log_prior: np.ndarray | None = None):
    """Categorical (softmax head) or binary (sigmoid head) cross-entropy, or their focal forms,
    which down-weight easy examples (gamma) and help with many easy background chunks. With
    ``log_prior`` (CLASS_BALANCE = "logit_adjustment"): the logit-adjusted softmax cross-entropy."""
    if not 0 <= label_smoothing < 1:
        raise ValueError("LABEL_SMOOTHING must be in [0, 1)")
    if log_prior is not None:
        check_logit_adjustment(name, multi_label)
        return LogitAdjustedCrossentropy(log_prior, label_smoothing)
    if name == "crossentropy":
        kind = keras.losses.BinaryCrossentropy if multi_label else keras.losses.CategoricalCrossentropy
        return kind(label_smoothing=label_smoothing)
    if name == "focal":
        kind = (keras.losses.BinaryFocalCrossentropy if multi_label
                else keras.losses.CategoricalFocalCrossentropy)
        return kind(gamma=gamma, label_smoothing=label_smoothing)
    raise ValueError(f"LOSS must be one of {LOSSES}, got {name!r}")
