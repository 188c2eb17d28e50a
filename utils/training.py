"""Step 3 logic: train a Keras model on store chunks, selecting on pooled validation recordings."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np

from utils.augment import Augmenter
from utils.batches import ChunkBatches
from utils.metrics import mlrap, target_matrix, top_k_accuracy
from utils.model_io import save_model
from utils.models import build_model
from utils.losses import make_loss
from utils.pooling import pool_groups
from utils.schedules import EpochSchedule, check_schedule, make_optimizer
from utils.store import Store

log = logging.getLogger("bioacoustics")

HIGHER_IS_BETTER = {"val_rec_mlrap": True, "val_rec_top1": True, "val_loss": False, "loss": False}


@dataclass(frozen=True)
class TrainOptions:
    model: str = "resnet"
    filters: tuple[int, ...] = (16, 32, 64, 128)
    blocks_per_stage: int = 1
    dropout: float = 0.5
    multi_label: bool = False
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    snapshot_epochs: int = 5
    select_metric: str = "val_rec_mlrap"
    early_stopping: int = 10
    pooling: str = "median_filtered"
    seed: int = 1337
    augmentation: tuple[tuple[str, float], ...] = ()
    augmentation_probability: float = 0.5
    augmentation_count: int = 2
    optimizer: str = "adamw"
    lr_schedule: str = "cosine"
    learning_rate_end: float = 0.0
    warmup_epochs: float = 0.0
    gradient_clip: float = 0.0
    l2: float = 0.0
    loss: str = "crossentropy"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_balance: str = "none"

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> "TrainOptions":
        return cls(model=s["MODEL"], filters=tuple(s["FILTERS"]), blocks_per_stage=s["BLOCKS_PER_STAGE"],
                   dropout=s["DROPOUT"], multi_label=s["MULTI_LABEL"], epochs=s["EPOCHS"],
                   batch_size=s["BATCH_SIZE"], learning_rate=s["LEARNING_RATE"],
                   weight_decay=s["WEIGHT_DECAY"], snapshot_epochs=s["SNAPSHOT_EPOCHS"],
                   select_metric=s["SELECT_METRIC"], early_stopping=s["EARLY_STOPPING"],
                   pooling=s["POOLING"], seed=s["SEED"],
                   augmentation=tuple(sorted(s["AUGMENTATION"].items())),
                   augmentation_probability=s["AUGMENTATION_PROBABILITY"],
                   augmentation_count=s["AUGMENTATION_COUNT"], optimizer=s["OPTIMIZER"],
                   lr_schedule=check_schedule(s["LR_SCHEDULE"]),
                   learning_rate_end=s["LEARNING_RATE_END"], warmup_epochs=s["WARMUP_EPOCHS"],
                   gradient_clip=s["GRADIENT_CLIP"], l2=s["L2_WEIGHT"], loss=s["LOSS"],
                   label_smoothing=s["LABEL_SMOOTHING"], focal_gamma=s["FOCAL_GAMMA"],
                   class_balance=s["CLASS_BALANCE"])


@dataclass
class ChunkSet:
    """Selected store rows with their targets and recording ids."""

    shards: np.ndarray
    rows: np.ndarray
    recordings: np.ndarray
    targets: np.ndarray
    labels: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def select_chunks(store: Store, split: str, classes: list[str], background: Mapping[str, list[str]],
                  multi_label: bool) -> ChunkSet:
    """Signal chunks of one split whose primary label the model knows."""
    index = store.index
    chosen = index[(index["split"] == split) & ~index["noise"] & index["label"].isin(classes)]
    labels = [[label] + list(background.get(rec, [])) for rec, label in
              zip(chosen["recording"], chosen["label"])]
    train_labels = labels if multi_label else [[label] for label in chosen["label"]]
    return ChunkSet(chosen["shard"].to_numpy(), chosen["row"].to_numpy(),
                    chosen["recording"].to_numpy(), target_matrix(train_labels, classes), labels)


class RecordingValidation(keras.callbacks.Callback):
    """Each epoch: score the validation chunks, pool them per recording, log recording metrics.

    The selection metric is then the one users care about (recording-level), not chunk accuracy.
    """

    def __init__(self, batches: ChunkBatches, chunks: ChunkSet, classes: list[str], pooling: str,
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
        _, pooled = pool_groups(scores, self.chunks.recordings, self.pooling)
        logs["val_rec_mlrap"] = mlrap(self.rec_targets, pooled)
        logs["val_rec_top1"] = top_k_accuracy(self.rec_primary, pooled, k=1)
        log.info("epoch %d: loss %.4f  val_loss %.4f  val_rec_mlrap %.4f  val_rec_top1 %.4f",
                 epoch + 1, logs.get("loss", float("nan")), logs["val_loss"], logs["val_rec_mlrap"],
                 logs["val_rec_top1"])


class ModelSaver(keras.callbacks.Callback):
    """best.keras whenever the monitored metric improves, and snapshots every N epochs."""

    def __init__(self, run_dir: Path, meta: dict, monitor: str, snapshot_epochs: int):
        super().__init__()
        self.run_dir, self.meta, self.monitor = Path(run_dir), meta, monitor
        self.snapshot_epochs = snapshot_epochs
        self.higher = HIGHER_IS_BETTER[monitor]
        self.best: float | None = None
        self.best_epoch = 0

    def _meta(self, epoch: int, logs: dict) -> dict:
        metrics = {k: float(v) for k, v in logs.items() if np.isscalar(v)}
        return {**self.meta, "epoch": epoch + 1, "metrics": metrics}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value):
            if self.best is None or (value > self.best if self.higher else value < self.best):
                self.best, self.best_epoch = float(value), epoch + 1
                save_model(self.model, self.run_dir / "best.keras", self._meta(epoch, logs))
        if self.snapshot_epochs and (epoch + 1) % self.snapshot_epochs == 0:
            save_model(self.model, self.run_dir / "snapshots" / f"epoch-{epoch + 1:03d}.keras",
                       self._meta(epoch, logs))


def train_model(store: Store, background: Mapping[str, list[str]], run_dir: str | Path,
                options: TrainOptions, extra_meta: dict | None = None) -> dict:
    """Train on the store's train split, select on its val split; write models and logs to run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(options.seed)
    index = store.index
    train_index = index[(index["split"] == "train") & ~index["noise"]]
    classes = sorted(train_index["label"].unique().tolist())
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes with training chunks, found {len(classes)}; "
                         "check SIGNAL_THRESHOLD and the dataset")
    train = select_chunks(store, "train", classes, background, options.multi_label)
    val = select_chunks(store, "val", classes, background, options.multi_label)
    spec = store.settings["spec"]
    log.info("training on %d chunks (%d recordings), validating on %d chunks (%d recordings), "
             "%d classes", len(train), len(set(train.recordings)), len(val), len(set(val.recordings)),
             len(classes))

    model = build_model(options.model, (spec["height"], spec["width"], 1), len(classes),
                        filters=list(options.filters), blocks_per_stage=options.blocks_per_stage,
                        dropout=options.dropout, multi_label=options.multi_label, l2=options.l2)
    augmenter = None
    if options.augmentation:
        augmenter = Augmenter(dict(options.augmentation), options.augmentation_probability,
                              options.augmentation_count, seed=options.seed)
    noise = index[(index["split"] == "train") & index["noise"]]
    primary = np.asarray([classes.index(label[0]) for label in train.labels])
    train_batches = ChunkBatches(store, train.shards, train.rows, train.targets, options.batch_size,
                                 shuffle=True, seed=options.seed, augmenter=augmenter,
                                 noise=(noise["shard"].to_numpy(), noise["row"].to_numpy()),
                                 balance=options.class_balance, classes=primary)
    schedule = EpochSchedule(options.lr_schedule, options.learning_rate, options.learning_rate_end,
                             options.epochs, len(train_batches), options.warmup_epochs)
    model.compile(optimizer=make_optimizer(options.optimizer, schedule, options.weight_decay,
                                           options.gradient_clip),
                  loss=make_loss(options.loss, options.multi_label, options.label_smoothing,
                                 options.focal_gamma),
                  metrics=["binary_accuracy" if options.multi_label else "categorical_accuracy"])

    monitor = options.select_metric if len(val) else "loss"
    if not len(val):
        log.warning("no validation chunks: best.keras is chosen by training loss")
    meta = {"classes": classes, "spec": spec, "multi_label": options.multi_label,
            "pooling": options.pooling, "train_options": asdict(options), **(extra_meta or {})}
    callbacks: list[keras.callbacks.Callback] = []
    if len(val):
        val_batches = ChunkBatches(store, val.shards, val.rows, val.targets, options.batch_size * 4)
        callbacks.append(RecordingValidation(val_batches, val, classes, options.pooling,
                                             options.multi_label))
    saver = ModelSaver(run_dir, meta, monitor, options.snapshot_epochs)
    callbacks += [saver, keras.callbacks.CSVLogger(str(run_dir / "train_log.csv"))]
    if options.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max" if HIGHER_IS_BETTER[monitor] else "min",
            patience=options.early_stopping))

    started = time.time()
    history = model.fit(train_batches, epochs=options.epochs, callbacks=callbacks, verbose=2)
    seconds = time.time() - started
    epochs_run = len(history.history.get("loss", []))
    save_model(model, run_dir / "last.keras", {**meta, "epoch": epochs_run})
    return {"classes": len(classes), "train_chunks": len(train), "val_chunks": len(val),
            "epochs": epochs_run, "best_epoch": saver.best_epoch, "monitor": monitor,
            "best_value": saver.best, "train_seconds": round(seconds, 1),
            "params": int(model.count_params())}
