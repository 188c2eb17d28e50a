"""Training callbacks: recording-level validation, model selection with early stopping, and the
per-epoch state that lets an interrupted run resume exactly where it stopped."""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import keras
import numpy as np

from utils.batches import ChunkBatches
from utils.fileio import atomic_write_json, read_json
from utils.metrics import mlrap, target_matrix, top_k_accuracy
from utils.model_io import save_model
from utils.pooling import pool_groups

log = logging.getLogger("bioacoustics")

HIGHER_IS_BETTER = {"val_rec_mlrap": True, "val_rec_top1": True, "val_loss": False, "loss": False}


class RecordingValidation(keras.callbacks.Callback):
    """Each epoch: score the validation chunks, pool them per recording, log recording metrics.

    The selection metric is then the one users care about (recording-level), not chunk accuracy.
    """

    def __init__(self, batches: ChunkBatches, chunks, classes: list[str], pooling,
                 multi_label: bool):
        super().__init__()
        self.batches, self.chunks, self.pooling = batches, chunks, pooling
        self.loss_fn = (keras.losses.BinaryCrossentropy() if multi_label
                        else keras.losses.CategoricalCrossentropy())
        keys, first = np.unique(chunks.recordings, return_index=True)
        self.rec_targets = target_matrix([chunks.labels[i] for i in first], classes)
        self.rec_primary = np.asarray([classes.index(chunks.labels[i][0]) for i in first])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        scores = self.model.predict(self.batches, verbose=0)
        logs = logs if logs is not None else {}
        logs["val_loss"] = float(keras.ops.convert_to_numpy(self.loss_fn(self.chunks.targets, scores)))
        if np.isfinite(scores).all():
            _, pooled = pool_groups(scores, self.chunks.recordings, self.pooling)
            logs["val_rec_mlrap"] = mlrap(self.rec_targets, pooled)
            logs["val_rec_top1"] = top_k_accuracy(self.rec_primary, pooled, k=1)
        else:  # diverged weights: no metric, so the epoch cannot be chosen (scikit-learn would raise)
            logs["val_rec_mlrap"] = logs["val_rec_top1"] = float("nan")
        log.info("epoch %d: loss %.4f  val_loss %.4f  val_rec_mlrap %.4f  val_rec_top1 %.4f",
                 epoch + 1, logs.get("loss", float("nan")), logs["val_loss"], logs["val_rec_mlrap"],
                 logs["val_rec_top1"])


class ModelSaver(keras.callbacks.Callback):
    """best.keras whenever the monitored metric improves, snapshots every N epochs, and early
    stopping after ``patience`` epochs without improvement. Only epochs from ``first_candidate``
    (1-based) on may become best.keras: early in a schedule the learning rate is high and the
    weights move a lot between epochs, so a peak of a validation curve measured on few recordings
    is often luck. Its state is written to ``state_file`` every epoch so that a resumed run keeps
    comparing against the right best."""

    def __init__(self, run_dir: Path, meta: dict, monitor: str, snapshot_epochs: int,
                 patience: int = 0, state_file: Path | None = None, first_candidate: int = 1,
                 calibration: np.ndarray | None = None):
        super().__init__()
        self.calibration = calibration  # saved in every model file (utils.model_io)
        self.run_dir, self.meta, self.monitor = Path(run_dir), meta, monitor
        self.snapshot_epochs, self.patience, self.state_file = snapshot_epochs, patience, state_file
        self.first_candidate = first_candidate
        self.higher = HIGHER_IS_BETTER[monitor]
        self.best: float | None = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None) -> None:
        if self.state_file is not None and Path(self.state_file).exists():
            state = read_json(self.state_file)
            self.best, self.best_epoch = state["best"], state["best_epoch"]

    def _meta(self, epoch: int, logs: dict) -> dict:
        metrics = {k: float(v) for k, v in logs.items() if np.isscalar(v)}
        return {**self.meta, "epoch": epoch + 1, "metrics": metrics}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and epoch + 1 >= self.first_candidate:
            if self.best is None or (value > self.best if self.higher else value < self.best):
                self.best, self.best_epoch = float(value), epoch + 1
                save_model(self.model, self.run_dir / "best.keras", self._meta(epoch, logs),
                           self.calibration)
        if self.snapshot_epochs and (epoch + 1) % self.snapshot_epochs == 0:
            save_model(self.model, self.run_dir / "snapshots" / f"epoch-{epoch + 1:03d}.keras",
                       self._meta(epoch, logs), self.calibration)
        if self.state_file is not None:
            atomic_write_json(self.state_file, {"best": self.best, "best_epoch": self.best_epoch})
        waited_since = max(self.best_epoch, self.first_candidate - 1)
        if self.patience and epoch + 1 - waited_since >= self.patience:
            log.info("early stopping: no better %s for %d epochs", self.monitor, self.patience)
            self.model.stop_training = True


def completed_epochs(backup_dir: Path) -> int:
    """Epochs a backup (keras.callbacks.BackupAndRestore) holds; 0 when there is none."""
    metadata = Path(backup_dir) / "training_metadata.json"
    return int(read_json(metadata)["epoch"]) if metadata.exists() else 0


def truncate_log(csv_path: Path, epochs: int) -> None:
    """Keep the CSV log rows of the first ``epochs`` epochs (a killed run may have logged more)."""
    if not csv_path.exists():
        return
    with open(csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs] if rows else []
    with open(csv_path, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


class RandomStateBackup(keras.callbacks.Callback):
    """Save and restore the model's random-generator states (dropout masks and the like).

    BackupAndRestore keeps weights and optimizer but not these, so without this a resumed run
    would draw other dropout masks than the lost one. States are kept for the last two epochs
    and the one matching the restored epoch is used (a kill can fall between the two saves).
    """

    def __init__(self, state_file: Path, backup_dir: Path):
        super().__init__()
        self.state_file, self.backup_dir = Path(state_file), Path(backup_dir)

    def _generators(self):
        return [v for v in self.model.variables if "seed_generator_state" in v.path]

    def on_train_begin(self, logs=None) -> None:
        epoch = completed_epochs(self.backup_dir)
        if epoch and self.state_file.exists():
            saved = read_json(self.state_file).get(str(epoch))
            if saved is not None:
                for variable, value in zip(self._generators(), saved):
                    variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        states = read_json(self.state_file) if self.state_file.exists() else {}
        states[str(epoch + 1)] = [keras.ops.convert_to_numpy(v).tolist() for v in self._generators()]
        keep = sorted(states, key=int)[-2:]
        atomic_write_json(self.state_file, {k: states[k] for k in keep})


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop after an epoch whose training loss is NaN or infinite: the weights are then no longer
    finite either, and every later epoch would be wasted. Checked per epoch, not per batch as
    keras.callbacks.TerminateOnNaN does, so that no training step waits for its loss to reach the
    host; the epoch stays in train_log.csv, where ``first_non_finite_epoch`` finds it."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            log.error("epoch %d: the training loss is %s; training stops here", epoch + 1, loss)
            self.model.stop_training = True


def first_non_finite_epoch(log_rows: list[dict]) -> int:
    """The first epoch (1-based) whose logged training loss is not finite; 0 when there is none."""
    return next((i + 1 for i, row in enumerate(log_rows) if not np.isfinite(float(row["loss"]))), 0)


class LearningRateLog(keras.callbacks.Callback):
    """Put the epoch's last learning rate into the logs (and so into train_log.csv)."""

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


class CurvesPlot(keras.callbacks.Callback):
    """Redraw training_curves.png after an epoch, at most once per ``every_seconds``, and at the end.

    A drawing takes about half a second, as long as one or two epochs of the tests' tiny runs,
    which it used to dominate. Epochs longer than ``every_seconds`` are still drawn every time, and
    an interrupted run's curves miss at most its last ``every_seconds``."""

    def __init__(self, csv_log: Path, png: Path, title: str = "", every_seconds: float = 30.0,
                 clock=time.monotonic):
        super().__init__()
        self.csv_log, self.png, self.title = Path(csv_log), Path(png), title
        self.every_seconds, self.clock = every_seconds, clock
        self.drawn_at, self.pending = float("-inf"), False  # never drawn: the first epoch is

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.pending = True
        if self.clock() - self.drawn_at >= self.every_seconds:
            self._draw()

    def on_train_end(self, logs=None) -> None:
        if self.pending:
            self._draw()

    def _draw(self) -> None:
        from utils.plots import plot_training_curves

        plot_training_curves(self.csv_log, self.png, self.title)
        self.drawn_at, self.pending = self.clock(), False
