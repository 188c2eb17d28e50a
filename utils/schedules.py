"""Learning-rate schedules of the 2018 baseline (constant, linear, cosine, root, step-N), cosine
with warm restarts (cosine-N), and a linear warm-up, as one serialisable Keras schedule written with
keras.ops."""
from __future__ import annotations

import math
import re

import keras
from keras import ops

SCHEDULE_PATTERN = re.compile(r"^(constant|linear|cosine|root|(step|cosine)-[1-9][0-9]*)$")


def check_schedule(name: str) -> str:
    if not SCHEDULE_PATTERN.match(name):
        raise ValueError(f"LR_SCHEDULE {name!r} is not one of constant, linear, cosine, root, step-N, "
                         "cosine-N")
    return name


@keras.saving.register_keras_serializable(package="bioacoustics")
class EpochSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate as a function of the (fractional) epoch.

    - constant: ``start`` throughout
    - linear: ``start`` to ``end`` in a straight line
    - cosine: half a cosine from ``start`` to ``end``
    - root: ``start / sqrt(epoch)``, epochs counted from 1
    - step-N: a drop every N epochs, in equal steps from ``start`` to ``end``
    - cosine-N: the cosine over each cycle of N epochs, back to ``start`` at each new cycle
      (SGDR, Loshchilov & Hutter 2017): every cycle ends in a minimum worth a snapshot, so
      snapshots every N epochs make an ensemble from one run (Huang et al. 2017)
    The first ``warmup_epochs`` rise linearly from 0 to the schedule's value.
    """

    def __init__(self, kind: str, start: float, end: float, epochs: int, steps_per_epoch: int,
                 warmup_epochs: float = 0.0):
        self.kind, self.start, self.end = check_schedule(kind), float(start), float(end)
        self.epochs, self.steps_per_epoch = int(epochs), max(1, int(steps_per_epoch))
        self.warmup_epochs = float(warmup_epochs)
        self.every = int(kind.split("-")[1]) if "-" in kind else 0  # the N of step-N and cosine-N

    def __call__(self, step):
        epoch = ops.cast(step, "float32") / self.steps_per_epoch  # 0 at the first step
        progress = ops.clip(epoch / max(1, self.epochs - 1), 0.0, 1.0)
        if self.kind.startswith("cosine-"):  # warm restarts: the same cosine over each cycle
            cycle = self.every
            progress = ops.clip((epoch - cycle * ops.floor(epoch / cycle)) / max(1, cycle - 1), 0.0, 1.0)
        if self.kind == "constant":
            rate = ops.ones_like(epoch) * self.start
        elif self.kind == "linear":
            rate = self.start + (self.end - self.start) * progress
        elif self.kind.startswith("cosine"):
            rate = self.end + (self.start - self.end) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "root":
            rate = self.start / ops.sqrt(ops.floor(epoch) + 1.0)
        else:
            drops = max(1, self.epochs // self.every - 1)
            done = ops.minimum(ops.floor(epoch / self.every), drops)
            rate = self.start - done * (self.start - self.end) / drops
        if self.warmup_epochs > 0:
            rate = rate * ops.minimum(1.0, (epoch + 1.0 / self.steps_per_epoch) / self.warmup_epochs)
        return rate

    def get_config(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "warmup_epochs": self.warmup_epochs}


OPTIMIZERS = ("adam", "adamw", "sgd", "nesterov")


def make_optimizer(name: str, schedule, weight_decay: float = 0.0, clip_norm: float = 0.0,
                   ema: float = 0.0):
    """Adam, AdamW, SGD with momentum, or Nesterov SGD; decoupled weight decay, gradient
    clipping by global norm and a moving average of the weights (``ema``: its momentum) when asked."""
    if not 0 <= ema < 1:
        raise ValueError(f"WEIGHT_EMA must be in [0, 1), got {ema}")
    options = {"learning_rate": schedule}
    if ema:
        options.update(use_ema=True, ema_momentum=ema)
    if clip_norm > 0:
        options["global_clipnorm"] = clip_norm
    if weight_decay > 0:
        options["weight_decay"] = weight_decay
    if name == "adam":
        return keras.optimizers.Adam(**options)
    if name == "adamw":
        return keras.optimizers.AdamW(**{"weight_decay": 0.0, **options})
    if name in ("sgd", "nesterov"):
        return keras.optimizers.SGD(momentum=0.9, nesterov=name == "nesterov", **options)
    raise ValueError(f"OPTIMIZER must be one of {OPTIMIZERS}, got {name!r}")
