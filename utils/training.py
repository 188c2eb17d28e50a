"""Step 3 logic: train a Keras model on store chunks, selecting on pooled validation recordings."""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import keras
import numpy as np
import pandas as pd

from utils.augment import Augmenter
from utils.batches import SAMPLE_BALANCE, ChunkBatches, batch_threads
from utils.callbacks import (CurvesPlot, LearningRateLog, ModelSaver, RandomStateBackup,
                             RecordingValidation, StopOnNonFiniteLoss, completed_epochs,
                             first_non_finite_epoch, truncate_log)
from utils.fileio import atomic_write_json, read_json
from utils.losses import check_logit_adjustment, class_log_prior, make_loss
from utils.metrics import target_matrix
from utils.model_io import save_model
from utils.models import ModelOptions, build_model
from utils.pooling import Pooling
from utils.schedules import EpochSchedule, check_schedule, make_optimizer
from utils.spectrogram import SpecParams, row_frequencies, to_uint8
from utils.store import Store
from utils.transfer import blend_targets, start_from, teacher_scores

CALIBRATION_CHUNKS = 32  # training chunks saved with each model for its int8 export (on two
                         # InsectSet32 models, 32 got the same recordings right as 300)

log = logging.getLogger("bioacoustics")



@dataclass(frozen=True)
class TrainOptions:
    model: str = "resnet"
    # everything build_model needs besides the family: kept whole, not copied field by field
    architecture: ModelOptions = ModelOptions()
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    snapshot_epochs: int = 5
    select_metric: str = "val_rec_mlrap"
    select_from: float = 1.0
    early_stopping: int = 0
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
    weight_ema: float = 0.0
    loss: str = "crossentropy"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_balance: str = "none"
    tensorboard: bool = False
    teachers: tuple[str, ...] = ()
    teacher_weight: float = 1.0
    teacher_temperature: float = 1.0
    pretrained: str = ""
    pretrained_layers: int = 0
    freeze_pretrained: bool = False
    mixed_precision: str = "off"
    data_parallel: bool = True
    batch_threads: int = 0
    pooling_top_k: int = 3
    pooling_alpha: float = 5.0

    def __post_init__(self):
        if not 0 <= self.select_from <= 1:
            raise ValueError(f"SELECT_FROM must be in [0, 1], got {self.select_from}")
        if self.batch_threads < 0:
            raise ValueError(f"BATCH_THREADS must be 0 (automatic) or more, got {self.batch_threads}")
        if self.class_balance == "logit_adjustment":  # told before any data is read
            check_logit_adjustment(self.loss, self.multi_label)
        if self.early_stopping and self.select_from == 1:
            raise ValueError("EARLY_STOPPING has nothing to stop when SELECT_FROM = 1 keeps the last "
                             "epoch; set SELECT_FROM below 1 (0 = any epoch may be best)")

    @property
    def first_candidate_epoch(self) -> int:
        """The first epoch (1-based) that may become best.keras: SELECT_FROM is a share of the
        schedule, 0 = any epoch, 1 = only the last."""
        return max(1, math.ceil(self.select_from * self.epochs))

    @property
    def multi_label(self) -> bool:
        """The head's kind decides the targets, the loss and the metric as well."""
        return self.architecture.multi_label

    def pooler(self) -> Pooling:
        return Pooling(self.pooling, self.pooling_top_k, self.pooling_alpha)

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> "TrainOptions":
        architecture = ModelOptions(
            filters=tuple(s["FILTERS"]), kernel_sizes=tuple(s["KERNEL_SIZES"]),
            blocks_per_stage=s["BLOCKS_PER_STAGE"], width=s["WIDTH"], downsampling=s["DOWNSAMPLING"],
            stem_downsampling=tuple(s["STEM_DOWNSAMPLING"]), stem_kernel=tuple(s["STEM_KERNEL"]),
            dropout=s["DROPOUT"],
            dropout_type=s["DROPOUT_TYPE"], head=s["HEAD"], multi_label=s["MULTI_LABEL"],
            l2=s["L2_WEIGHT"], dense_units=s["DENSE_UNITS"], frequency_channel=s["FREQUENCY_CHANNEL"],
            background_channel=s["BACKGROUND_CHANNEL"],
            cepstrum_features=s["CEPSTRUM_FEATURES"], squeeze_excitation=s["SQUEEZE_EXCITATION"],
            min_frequency_rows=s["MIN_FREQUENCY_ROWS"], drop_path=s["DROP_PATH"])
        return cls(model=s["MODEL"], architecture=architecture, epochs=s["EPOCHS"],
                   batch_size=s["BATCH_SIZE"], learning_rate=s["LEARNING_RATE"],
                   weight_decay=s["WEIGHT_DECAY"], snapshot_epochs=s["SNAPSHOT_EPOCHS"],
                   select_metric=s["SELECT_METRIC"], select_from=s["SELECT_FROM"],
                   early_stopping=s["EARLY_STOPPING"],
                   pooling=s["POOLING"], pooling_top_k=s["POOLING_TOP_K"],
                   pooling_alpha=s["POOLING_ALPHA"], seed=s["SEED"],
                   augmentation=tuple(sorted(s["AUGMENTATION"].items())),
                   augmentation_probability=s["AUGMENTATION_PROBABILITY"],
                   augmentation_count=s["AUGMENTATION_COUNT"], optimizer=s["OPTIMIZER"],
                   lr_schedule=check_schedule(s["LR_SCHEDULE"]),
                   learning_rate_end=s["LEARNING_RATE_END"], warmup_epochs=s["WARMUP_EPOCHS"],
                   gradient_clip=s["GRADIENT_CLIP"], weight_ema=s["WEIGHT_EMA"], loss=s["LOSS"],
                   label_smoothing=s["LABEL_SMOOTHING"], focal_gamma=s["FOCAL_GAMMA"],
                   class_balance=s["CLASS_BALANCE"], tensorboard=s["TENSORBOARD"],
                   teachers=tuple(s["TEACHER"]), teacher_weight=s["TEACHER_WEIGHT"],
                   teacher_temperature=s["TEACHER_TEMPERATURE"], pretrained=s["PRETRAINED"],
                   pretrained_layers=s["PRETRAINED_LAYERS"], freeze_pretrained=s["FREEZE_PRETRAINED"],
                   mixed_precision=s["MIXED_PRECISION"], data_parallel=s["DATA_PARALLEL"],
                   batch_threads=s["BATCH_THREADS"])


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


def select_chunks(index, split: str, classes: list[str], background: Mapping[str, list[str]],
                  multi_label: bool) -> ChunkSet:
    """Signal chunks of one split (of a store's index) whose primary label the model knows."""
    chosen = index[(index["split"] == split) & ~index["noise"] & index["label"].isin(classes)]
    labels = [[label] + list(background.get(rec, [])) for rec, label in
              zip(chosen["recording"], chosen["label"])]
    train_labels = labels if multi_label else [[label] for label in chosen["label"]]
    return ChunkSet(chosen["shard"].to_numpy(), chosen["row"].to_numpy(),
                    chosen["recording"].to_numpy(), target_matrix(train_labels, classes), labels)


def train_model(store: Store, background: Mapping[str, list[str]], run_dir: str | Path,
                options: TrainOptions, extra_meta: dict | None = None,
                splits: Mapping[str, str] | None = None) -> dict:
    """Train on the store's train split, select on its val split; write models and logs to run_dir.

    ``splits`` (recording id -> "train"/"val"/other) replaces the store's own splits, as
    cross-validation folds do; recordings it leaves out are not used. MIXED_PRECISION and data
    parallelism apply to this run only (Keras keeps them globally).
    """
    previous_policy = keras.config.dtype_policy()
    previous_distribution = keras.distribution.distribution() if _has_distribution() else None
    try:
        keras.config.set_dtype_policy(precision_policy(options.mixed_precision))
        if options.data_parallel:
            use_data_parallel()
        return _train(store, background, run_dir, options, extra_meta, splits)
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if _has_distribution():
            keras.distribution.set_distribution(previous_distribution)


def calibration_chunks(store: Store, train: ChunkSet, seed: int, n: int = CALIBRATION_CHUNKS
                       ) -> np.ndarray:
    """A seeded sample of training chunks (uint8), saved in every model file: an int8 export sets
    its activation ranges on them (ranges set on random inputs cost a trained model a sixth of its
    right recordings). Its own generator, so that training draws the same numbers as without."""
    rng = np.random.default_rng([seed, CALIBRATION_CHUNKS])
    pick = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
    return to_uint8(store.images(train.shards[pick], train.rows[pick]))


def precision_policy(mixed_precision: str) -> str:
    """The Keras dtype policy of a MIXED_PRECISION setting ("off", "float16" or "bfloat16")."""
    return "float32" if mixed_precision == "off" else f"mixed_{mixed_precision}"


def training_batches(store: Store, train: ChunkSet, classes: np.ndarray, index: pd.DataFrame,
                     options: TrainOptions, epoch: int = 0) -> ChunkBatches:
    """The training batches ``options`` ask for, from ``epoch`` on: ``train``'s chunks with their
    primary class indices (``classes``), augmented, balanced and prefetched. ``index`` is the
    store's index with this run's splits: the noise mixed in comes from its training recordings
    only (a fold never hears its held-out recordings). train.py and bench_train.py both build
    their batches here."""
    noise = index[(index["split"] == "train") & index["noise"]]
    augmenter = None
    if options.augmentation:  # pitch changes need the frequency of each image row
        augmenter = Augmenter(dict(options.augmentation), options.augmentation_probability,
                              options.augmentation_count, seed=options.seed,
                              row_hz=row_frequencies(SpecParams.from_dict(store.settings["spec"])))
    return ChunkBatches(store, train.shards, train.rows, train.targets, options.batch_size,
                        shuffle=True, seed=options.seed, augmenter=augmenter,
                        noise=(noise["shard"].to_numpy(), noise["row"].to_numpy()),
                        balance=options.class_balance if options.class_balance in SAMPLE_BALANCE
                        else "none", classes=classes, epoch=epoch,
                        prefetch=batch_threads(options.batch_threads), recordings=train.recordings)


def _has_distribution() -> bool:
    return keras.backend.backend() == "jax"  # keras.distribution is JAX-only today


def use_data_parallel() -> int:
    """Data-parallel training over every accelerator (JAX backend); returns the device count."""
    if not _has_distribution():
        return 1
    devices = keras.distribution.list_devices()
    accelerators = [d for d in devices if not d.lower().startswith("cpu")]
    if len(accelerators) > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=accelerators))
        log.info("data-parallel training on %d devices", len(accelerators))
    return max(1, len(accelerators))


def _train(store: Store, background: Mapping[str, list[str]], run_dir: str | Path,
           options: TrainOptions, extra_meta: dict | None = None,
           splits: Mapping[str, str] | None = None) -> dict:
    if options.weight_ema and keras.backend.backend() == "jax":
        raise ValueError("WEIGHT_EMA does not work on the JAX backend (Keras' weight swap touches "
                         "buffers JAX has donated); use TensorFlow or PyTorch, or WEIGHT_EMA = 0")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(options.seed)
    index = store.index
    if splits is not None:
        index = index.assign(split=index["recording"].map(splits).fillna("unused"))
    train_index = index[(index["split"] == "train") & ~index["noise"]]
    classes = sorted(train_index["label"].unique().tolist())
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes with training chunks, found {len(classes)}; "
                         "check SIGNAL_THRESHOLD and the dataset")
    train = select_chunks(index, "train", classes, background, options.multi_label)
    val = select_chunks(index, "val", classes, background, options.multi_label)
    spec = store.settings["spec"]
    log.info("training on %d chunks (%d recordings), validating on %d chunks (%d recordings), "
             "%d classes", len(train), len(set(train.recordings)), len(val), len(set(val.recordings)),
             len(classes))

    model = build_model(options.model, (spec["height"], spec["width"], 1), len(classes),
                        options.architecture)
    if options.pretrained:
        start_from(model, options.pretrained, spec, options.pretrained_layers, options.freeze_pretrained)
    if options.teachers:
        scores = teacher_scores(list(options.teachers), store, train.shards, train.rows, classes, spec,
                                options.teacher_temperature)
        train.targets = blend_targets(train.targets, scores, options.teacher_weight)
        log.info("distilling from %d teacher(s), weight %.2f", len(options.teachers),
                 options.teacher_weight)
    meta = {"classes": classes, "spec": spec, "multi_label": options.multi_label,
            "pooling": options.pooling, "train_options": asdict(options), **(extra_meta or {})}
    backup = run_dir / "backup"
    resumed_at = prepare_resume(backup, run_dir / "train_log.csv", {**meta, "store": str(store.root)})
    primary = np.asarray([classes.index(label[0]) for label in train.labels])
    train_batches = training_batches(store, train, primary, index, options, epoch=resumed_at)
    log_prior = (class_log_prior(primary, len(classes))
                 if options.class_balance == "logit_adjustment" else None)
    schedule = EpochSchedule(options.lr_schedule, options.learning_rate, options.learning_rate_end,
                             options.epochs, len(train_batches), options.warmup_epochs)
    model.compile(optimizer=make_optimizer(options.optimizer, schedule, options.weight_decay,
                                           options.gradient_clip, options.weight_ema),
                  loss=make_loss(options.loss, options.multi_label, options.label_smoothing,
                                 options.focal_gamma, log_prior),
                  metrics=["binary_accuracy" if options.multi_label else "categorical_accuracy"])

    monitor = options.select_metric if len(val) else "loss"
    if not len(val):
        log.warning("no validation chunks: best.keras is chosen by training loss")
    calibration = calibration_chunks(store, train, options.seed)
    saver = ModelSaver(run_dir, meta, monitor, options.snapshot_epochs, options.early_stopping,
                       state_file=backup / "selection.json",
                       first_candidate=options.first_candidate_epoch, calibration=calibration)
    callbacks = run_callbacks(store, val, classes, options, run_dir, saver,
                              title=str(meta.get("run", run_dir.name)))
    started = time.time()
    # shuffle=False: ChunkBatches orders chunks itself, from (seed, epoch); Keras' own shuffling
    # of batch indices would draw from a generator that a resumed run cannot restore
    try:
        model.fit(train_batches, epochs=options.epochs, callbacks=callbacks, verbose=2, shuffle=False)
    finally:
        train_batches.close()
    seconds = time.time() - started
    log_rows = read_log(run_dir / "train_log.csv")
    epochs_run = len(log_rows)
    save_model(model, run_dir / "last.keras", {**meta, "epoch": epochs_run}, calibration)
    bad_epoch = first_non_finite_epoch(log_rows)
    diverged = (f"the training loss stopped being finite in epoch {bad_epoch}, where training "
                "stopped" if bad_epoch else "")
    if not saver.best_epoch:
        raise RuntimeError(f"no epoch from {options.first_candidate_epoch} on had a finite {monitor} "
                           f"({diverged or 'did the training diverge?'}), so there is no best.keras; "
                           f"{run_dir}/last.keras holds the final weights. Try a lower LEARNING_RATE, "
                           "GRADIENT_CLIP, or a lower SELECT_FROM")
    if diverged:
        log.warning("%s; best.keras is epoch %d, and last.keras holds weights that are not finite",
                    diverged, saver.best_epoch)
    return {"classes": len(classes), "train_chunks": len(train), "val_chunks": len(val),
            "epochs": epochs_run, "best_epoch": saver.best_epoch, "monitor": monitor,
            "best_value": saver.best, "train_seconds": round(seconds, 1),
            "resumed_at_epoch": resumed_at, "params": int(model.count_params())}


def run_callbacks(store: Store, val: ChunkSet, classes: list[str], options: TrainOptions,
                  run_dir: Path, saver: ModelSaver, title: str) -> list[keras.callbacks.Callback]:
    """Backup and random state first (they restore before the others start), then validation,
    learning rate, model selection, the stop on a non-finite loss, the CSV log, the curves, and
    TensorBoard if asked."""
    backup = run_dir / "backup"
    callbacks: list[keras.callbacks.Callback] = [
        RandomStateBackup(backup / "random_state.json", backup),
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True)]
    if options.weight_ema:  # after the backup (raw weights), before validation and selection
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if len(val):
        val_batches = ChunkBatches(store, val.shards, val.rows, val.targets, options.batch_size * 4)
        callbacks.append(RecordingValidation(val_batches, val, classes, options.pooler(),
                                             options.multi_label))
    callbacks += [LearningRateLog(), saver, StopOnNonFiniteLoss(),
                  keras.callbacks.CSVLogger(str(run_dir / "train_log.csv"), append=True),
                  CurvesPlot(run_dir / "train_log.csv", run_dir / "training_curves.png", title)]
    if options.tensorboard:
        if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorboard"):
            callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
        else:
            log.warning("TENSORBOARD needs the TensorFlow backend and the tensorboard package "
                        "(pip install tensorboard); no TensorBoard logs this run")
    return callbacks


def prepare_resume(backup: Path, csv_log: Path, run_identity: dict) -> int:
    """Resume an interrupted run of the same settings, or start afresh; return the epoch resumed at.

    A run folder whose backup was written with other settings is an error rather than a silent
    mix of two experiments.
    """
    identity = json.loads(json.dumps(run_identity, sort_keys=True, default=str))
    marker = backup / "run.json"
    if marker.exists():
        if read_json(marker) != identity:
            raise ValueError(f"{backup.parent} holds an interrupted run with other settings; use "
                             f"another RUN_NAME, or delete {backup} to start this one afresh")
        epoch = completed_epochs(backup)
        truncate_log(csv_log, epoch)
        log.info("resuming the interrupted run after epoch %d", epoch)
        return epoch
    if backup.exists():
        shutil.rmtree(backup)
    backup.mkdir(parents=True)
    csv_log.unlink(missing_ok=True)
    # an earlier run's best.keras must not pass for this one's if this one chooses no epoch
    (backup.parent / "best.keras").unlink(missing_ok=True)
    atomic_write_json(marker, identity)
    return 0


def read_log(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))
