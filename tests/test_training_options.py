import keras
import numpy as np
import pytest

from tests.conftest import TINY, make_settings
from utils import steps
from utils.batches import ChunkBatches, batch_threads
from utils.losses import LogitAdjustedCrossentropy, class_log_prior, make_loss
from utils.model_io import load_model
from utils.models import build_model
from utils.schedules import EpochSchedule, make_optimizer
from utils.store import StoreWriter

pytestmark = pytest.mark.backend  # also run on JAX by `make test`


def rate(schedule, epoch, steps_per_epoch=10):
    return float(keras.ops.convert_to_numpy(schedule(epoch * steps_per_epoch)))


@pytest.mark.parametrize("kind, expected", [
    ("constant", [1e-3, 1e-3, 1e-3]),
    ("linear", [1e-3, 1e-3 - 5 * (1e-3 - 1e-5) / 9, 1e-5]),
    ("cosine", [1e-3, 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 5 / 9)), 1e-5]),
    ("root", [1e-3, 1e-3 / np.sqrt(6), 1e-3 / np.sqrt(10)]),
    ("step-3", [1e-3, 1e-3 - (1e-3 - 1e-5) / 2, 1e-5]),  # 10 epochs: drops after epochs 3 and 6
])
def test_schedules_by_hand(kind, expected):
    schedule = EpochSchedule(kind, 1e-3, 1e-5, epochs=10, steps_per_epoch=10)
    assert [rate(schedule, e) for e in (0, 5, 9)] == pytest.approx(expected, rel=1e-4)


def test_cosine_restarts_end_each_cycle_low_and_start_again_high():
    schedule = EpochSchedule("cosine-4", 1e-3, 1e-5, epochs=12, steps_per_epoch=10)
    halfway = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * 2 / 3))
    for first in (0, 4, 8):  # three cycles of four epochs: 0-3, 4-7, 8-11
        assert [rate(schedule, first + e) for e in (0, 2, 3)] == pytest.approx([1e-3, halfway, 1e-5], rel=1e-4)
    assert rate(schedule, 3.5) == pytest.approx(1e-5)  # the whole last epoch of a cycle stays low
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        EpochSchedule("cosine-0", 1e-3, 0.0, 10, 10)


def test_warmup_rises_linearly_then_hands_over():
    schedule = EpochSchedule("constant", 1e-3, 0.0, epochs=10, steps_per_epoch=10, warmup_epochs=2)
    assert float(keras.ops.convert_to_numpy(schedule(0))) == pytest.approx(1e-3 / 20)
    assert rate(schedule, 1) == pytest.approx(1e-3 * 11 / 20) and rate(schedule, 3) == pytest.approx(1e-3)
    again = EpochSchedule.from_config(schedule.get_config())
    assert rate(again, 1) == rate(schedule, 1)
    with pytest.raises(ValueError, match="LR_SCHEDULE"):
        EpochSchedule("exponential", 1e-3, 0.0, 10, 10)


@pytest.mark.parametrize("name, kind", [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
                                        ("sgd", keras.optimizers.SGD), ("nesterov", keras.optimizers.SGD)])
def test_optimizers(name, kind):
    optimizer = make_optimizer(name, 0.01, weight_decay=1e-4, clip_norm=1.0)
    assert type(optimizer) is kind and optimizer.global_clipnorm == 1.0
    assert optimizer.weight_decay == pytest.approx(1e-4)
    if kind is keras.optimizers.SGD:
        assert optimizer.nesterov == (name == "nesterov") and optimizer.momentum == 0.9


def test_losses():
    y, easy = np.array([[1.0, 0.0]]), np.array([[0.9, 0.1]])
    ce, focal = make_loss("crossentropy", False), make_loss("focal", False, gamma=2.0)
    assert float(focal(y, easy)) < 0.1 * float(ce(y, easy))  # easy examples count far less
    perfect = np.array([[1.0, 0.0]]) * (1 - 1e-7) + 1e-7
    assert float(make_loss("crossentropy", False, 0.2)(y, perfect)) > 0.5
    assert isinstance(make_loss("focal", True), keras.losses.BinaryFocalCrossentropy)
    with pytest.raises(ValueError, match="LOSS"):
        make_loss("hinge", False)


def test_logit_adjusted_loss_by_hand():
    scores, truth = np.array([[0.7, 0.2, 0.1]]), np.array([[0.0, 1.0, 0.0]])
    prior = np.array([0.5, 0.3, 0.2])
    loss = make_loss("crossentropy", False, log_prior=np.log(prior))
    # softmax(log scores + log prior) = scores x prior, normalised: 0.06 / (0.35 + 0.06 + 0.02)
    assert float(loss(truth, scores)) == pytest.approx(-np.log(0.06 / 0.43), rel=1e-5)
    uniform = make_loss("crossentropy", False, log_prior=np.log(np.full(3, 1 / 3)))
    assert float(uniform(truth, scores)) == pytest.approx(-np.log(0.2), rel=1e-5)  # plain CE
    # the frequent class must now beat the rare one by their prior ratio: a tie costs the rare class
    tie = np.array([[0.5, 0.5]])
    skewed = make_loss("crossentropy", False, log_prior=np.log([0.9, 0.1]))
    assert float(skewed(np.array([[0.0, 1.0]]), tie)) == pytest.approx(-np.log(0.1), rel=1e-5)
    again = LogitAdjustedCrossentropy.from_config(skewed.get_config())
    assert float(again(np.array([[0.0, 1.0]]), tie)) == pytest.approx(-np.log(0.1), rel=1e-5)
    assert class_log_prior(np.array([0, 0, 0, 1]), 2) == pytest.approx(np.log([0.75, 0.25]))
    with pytest.raises(ValueError, match="every class"):
        class_log_prior(np.array([0, 0]), 2)
    for other in ({"name": "focal", "multi_label": False}, {"name": "crossentropy", "multi_label": True}):
        with pytest.raises(ValueError, match="logit_adjustment"):
            make_loss(**other, log_prior=np.log(prior))
    from utils.models import ModelOptions
    from utils.training import TrainOptions

    with pytest.raises(ValueError, match="logit_adjustment"):  # told before any data is read
        TrainOptions(class_balance="logit_adjustment", loss="focal")
    with pytest.raises(ValueError, match="logit_adjustment"):
        TrainOptions(class_balance="logit_adjustment", architecture=ModelOptions(multi_label=True))


def test_l2_adds_kernel_penalties():
    assert not build_model("resnet", (16, 32, 1), 2, filters=[4]).losses
    for extra in ({}, {"squeeze_excitation": True}):  # every kernel: the SE gates' too
        model = build_model("resnet", (16, 32, 1), 2, filters=[4, 4], l2=1e-4, **extra)
        kernels = [layer for layer in model.layers if hasattr(layer, "kernel_regularizer")]
        assert len(kernels) > 3 and all(layer.kernel_regularizer is not None for layer in kernels)
        assert len(model.losses) == len(kernels)


def test_class_balance_by_weights_and_by_sampling(tmp_path):
    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 4, "width": 4}})
    rows = [{"recording": "all", "label": "a" if i < 90 else "b", "split": "train",
             "start": 0.0, "s2n": 0.1, "noise": False} for i in range(100)]
    writer.add("all", np.zeros((100, 4, 4), np.uint8), rows)
    store = writer.close()
    classes = (np.arange(100) >= 90).astype(int)
    targets = np.eye(2, dtype=np.float32)[classes]
    args = (store, store.index["shard"], store.index["row"], targets, 100)
    x, y, w = ChunkBatches(*args, balance="weights", classes=classes)[0]
    assert w[classes == 1][0] == pytest.approx(9 * w[classes == 0][0])
    sampled = ChunkBatches(*args, shuffle=True, seed=0, balance="sampling", classes=classes)
    drawn = []
    for epoch in range(20):
        sampled.set_epoch(epoch)
        drawn.append(classes[sampled.order].mean())
    assert 0.4 < np.mean(drawn) < 0.6  # the rare class now fills about half of each epoch


@pytest.mark.parametrize("options", [
    ["OPTIMIZER=nesterov", "LR_SCHEDULE=step-1", "LOSS=focal", "CLASS_BALANCE=weights",
     "L2_WEIGHT=0.0001", "GRADIENT_CLIP=1.0", "LABEL_SMOOTHING=0.1", "TENSORBOARD=True",
     "CEPSTRUM_FEATURES=True", "SQUEEZE_EXCITATION=True"],
    ["OPTIMIZER=adam", "LR_SCHEDULE=root", "MULTI_LABEL=True", "CLASS_BALANCE=sampling",
     "AUGMENTATION={'mixup': 0.4, 'crop': 0.1, 'noise': 0.5, 'same_class': 0.5}", "WARMUP_EPOCHS=0.5", "DROP_PATH=0.2"],
    ["CLASS_BALANCE=logit_adjustment", "LABEL_SMOOTHING=0.1"],
])
def test_training_runs_with_other_options(tmp_path, tiny_raw, options):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=2", *options)
    steps.sort_step(s)
    steps.spec_step(s)
    result = steps.train_step(s)
    assert result["epochs"] == 2 and np.isfinite(result["best_value"])
    board = tmp_path / "runs" / "default" / "tensorboard"
    if "TENSORBOARD=True" in options and keras.backend.backend() == "tensorflow":
        assert any(board.rglob("events.out.tfevents.*"))
    assert steps.test_step(s)["scored"] == 3
    model, _ = load_model(tmp_path / "runs" / "default" / "best.keras")
    layers = {layer.name for layer in model.layers}
    assert ("cepstrum" in layers) == ("CEPSTRUM_FEATURES=True" in options)
    assert ("stage1_block1_se" in layers) == ("SQUEEZE_EXCITATION=True" in options)
    assert ("stage1_block1_drop_path" in layers) == ("DROP_PATH=0.2" in options)


def test_mixed_precision_applies_to_the_run_only(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=1", "MIXED_PRECISION=bfloat16")
    steps.sort_step(s)
    steps.spec_step(s)
    assert steps.train_step(s)["epochs"] == 1
    assert keras.config.dtype_policy().name == "float32"  # restored afterwards

    model, _ = load_model(tmp_path / "runs" / "default" / "last.keras")
    assert model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
    x = np.zeros((1, 32, 64, 1), np.float32)
    assert np.asarray(model.predict_on_batch(x)).dtype == np.float32


def test_data_parallel_is_a_no_op_without_several_accelerators():
    from utils.training import use_data_parallel

    assert use_data_parallel() == 1


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, tiny_raw):
    # with a zero learning rate only batch-norm statistics move: improvement stops early
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=10", "EARLY_STOPPING=2",
                      "SELECT_FROM=0.0", "LEARNING_RATE=0.0", "WARMUP_EPOCHS=0.0")
    steps.sort_step(s)
    steps.spec_step(s)
    result = steps.train_step(s)
    assert result["epochs"] == result["best_epoch"] + 2 < 10


def _selection(tmp_path, values, select_from, patience=0):
    """Feed a ModelSaver a validation curve; return (best epoch, epochs run, saved epoch)."""
    from utils.callbacks import ModelSaver
    from utils.model_io import read_model_meta
    from utils.training import TrainOptions

    options = TrainOptions(epochs=len(values), select_from=select_from, early_stopping=patience)
    saver = ModelSaver(tmp_path, {}, "val_rec_mlrap", snapshot_epochs=0, patience=options.early_stopping,
                       first_candidate=options.first_candidate_epoch)
    saver.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    run = 0
    for epoch, value in enumerate(values):
        saver.on_epoch_end(epoch, {"val_rec_mlrap": value})
        run = epoch + 1
        if getattr(saver.model, "stop_training", False):
            break
    return saver.best_epoch, run, read_model_meta(tmp_path / "best.keras")["epoch"]


def test_select_from_keeps_early_peaks_out_of_best_keras(tmp_path):
    curve = [0.5, 0.9, 0.6, 0.7, 0.65, 0.8, 0.75, 0.7]  # a lucky peak at epoch 2 of 8
    assert _selection(tmp_path / "a", curve, 0.0) == (2, 8, 2)
    assert _selection(tmp_path / "b", curve, 0.5) == (6, 8, 6)  # epochs 4-8 compete
    assert _selection(tmp_path / "c", curve, 1.0) == (8, 8, 8)  # the last epoch, whatever it scores
    # early stopping waits for the first candidate epoch before it counts
    assert _selection(tmp_path / "d", [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2], 0.5, patience=2)[:2] == (4, 6)
    with pytest.raises(ValueError, match="SELECT_FROM"):
        _selection(tmp_path / "e", curve, 1.5)
    with pytest.raises(ValueError, match="EARLY_STOPPING"):
        _selection(tmp_path / "f", curve, 1.0, patience=2)


def test_a_run_that_chose_no_epoch_fails_clearly_and_leaves_no_earlier_best_keras(tmp_path, tiny_raw,
                                                                                    monkeypatch):
    from utils.callbacks import ModelSaver

    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=2", "SNAPSHOT_EPOCHS=0",
                      "AUGMENTATION={}")
    steps.sort_step(s)
    steps.spec_step(s)
    earlier = steps.run_dir(s) / "best.keras"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"the model of an earlier run in this folder")
    # every validation value not finite, as when a training diverges
    scored = ModelSaver.on_epoch_end
    monkeypatch.setattr(ModelSaver, "on_epoch_end", lambda self, epoch, logs=None: scored(
        self, epoch, {**(logs or {}), self.monitor: float("nan")}))
    with pytest.raises(RuntimeError, match="no epoch from 2 on had a finite val_rec_mlrap"):
        steps.train_step(s)
    assert not earlier.exists()  # test.py cannot pick up the earlier run's model
    assert (steps.run_dir(s) / "last.keras").exists()


def test_a_training_whose_loss_stops_being_finite_stops_in_that_epoch(tmp_path, tiny_raw, monkeypatch):
    from utils import training

    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=3", "SNAPSHOT_EPOCHS=0",
                      "AUGMENTATION={}")
    steps.sort_step(s)
    steps.spec_step(s)

    def nan_loss(y_true, y_pred):  # NaN from the first step on, and the weights through its gradient
        return keras.ops.mean(y_pred) * float("nan")

    monkeypatch.setattr(training, "make_loss", lambda *_: nan_loss)
    with pytest.raises(RuntimeError, match="stopped being finite in epoch 1, where training stopped"):
        steps.train_step(s)
    log = (steps.run_dir(s) / "train_log.csv").read_text().splitlines()
    assert len(log) == 2  # the header and epoch 1: epochs 2 and 3 were not run


def test_weight_ema_leaves_training_alone_and_saves_the_averaged_weights(tmp_path, tiny_raw):
    from utils.schedules import make_optimizer

    assert make_optimizer("adamw", 0.001, ema=0.9).use_ema
    with pytest.raises(ValueError, match="WEIGHT_EMA"):
        make_optimizer("adamw", 0.001, ema=1.0)
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=2", "SNAPSHOT_EPOCHS=0",
                      "AUGMENTATION={}")
    steps.sort_step(s)
    steps.spec_step(s)
    if keras.backend.backend() == "jax":
        with pytest.raises(ValueError, match="WEIGHT_EMA does not work on the JAX backend"):
            steps.train_step(s.replace(WEIGHT_EMA=0.99))
        return
    runs = {}
    for name, ema in (("raw", 0.0), ("ema", 0.99)):
        steps.train_step(s.replace(RUN_NAME=name, WEIGHT_EMA=ema))
        log = (tmp_path / "runs" / name / "train_log.csv").read_text().splitlines()
        header = log[0].split(",")
        losses = [float(row.split(",")[header.index("loss")]) for row in log[1:]]
        weights = load_model(tmp_path / "runs" / name / "last.keras")[0].get_weights()
        runs[name] = losses, weights
    assert np.allclose(runs["raw"][0], runs["ema"][0], rtol=1e-4)  # the same training
    difference = max(np.abs(a - b).max() for a, b in zip(runs["raw"][1], runs["ema"][1]))
    assert difference > 1e-4  # but the averaged weights were kept
    assert steps.test_step(s.replace(RUN_NAME="ema"))["scored"] == 3


def test_batch_threads_are_automatic_or_a_count():
    from utils.training import TrainOptions

    assert 1 <= batch_threads() <= 4 and batch_threads(6) == 6
    assert TrainOptions(batch_threads=3).batch_threads == 3
    with pytest.raises(ValueError, match="BATCH_THREADS"):
        TrainOptions(batch_threads=-1)


def test_a_finished_run_of_other_settings_is_kept_unless_overwrite(trained, tmp_path):
    import json
    import shutil

    from click.testing import CliRunner

    from tests.test_pipeline import script

    run = tmp_path / "runs" / trained.RUN_NAME
    shutil.copytree(steps.run_dir(trained), run)  # the session's fixture stays as it is
    report, folds = run / "test-val", run / "test-crossval"

    def write_report(folder, model):
        folder.mkdir(exist_ok=True)  # the session fixture may hold a report already
        (folder / "summary.json").write_text(json.dumps({"top1_accuracy": 0.5, "model": [str(model)]}))
    write_report(report, run / "best.keras")
    write_report(folds, run / "fold1" / "best.keras")  # of other models: it stays
    saved = run / "config.json"

    def train(*extra):
        return CliRunner().invoke(script("train").main, ["--config", str(saved), "--set",
                                                         f"RUNS_DIR={tmp_path / 'runs'}", *extra])

    def contents():
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    before = contents()
    refused = train("--set", "EPOCHS=1")
    assert refused.exit_code == 1 and "holds a finished run with other settings: EPOCHS 3 -> 1" in refused.output
    assert "--overwrite" in refused.output and contents() == before  # models, reports, settings kept

    stamp = (run / "best.keras").stat().st_mtime_ns
    overwritten = train("--set", "EPOCHS=1", "--overwrite")
    assert overwritten.exit_code == 0, overwritten.output
    assert (run / "best.keras").stat().st_mtime_ns != stamp
    assert json.loads((run / "train_summary.json").read_text())["epochs"] == 1
    assert json.loads(saved.read_text())["settings"]["EPOCHS"] == 1
    assert not report.exists() and folds.exists()  # the deleted model's report went with it

    # the same settings again: trained afresh, as before; the earlier model's report goes too
    write_report(report, run / "snapshots" / "epoch-002.keras")
    again = train()
    assert again.exit_code == 0, again.output
    assert not report.exists() and folds.exists() and (run / "train_summary.json").exists()


def test_training_curves_are_drawn_at_most_once_per_interval_and_after_the_last_epoch(tmp_path,
                                                                                       monkeypatch):
    from utils import plots
    from utils.callbacks import CurvesPlot

    now = [0.0]
    drawn_at = []
    monkeypatch.setattr(plots, "plot_training_curves", lambda csv, png, title: drawn_at.append(now[0]))
    curves = CurvesPlot(tmp_path / "train_log.csv", tmp_path / "curves.png", every_seconds=30,
                        clock=lambda: now[0])
    for epoch, second in enumerate([5, 20, 34, 50, 70]):
        now[0] = second
        curves.on_epoch_end(epoch)
    assert drawn_at == [5, 50]  # the first epoch, then the first one 30 s or more after a drawing
    now[0] = 71
    curves.on_train_end()
    assert drawn_at == [5, 50, 71]  # the epoch of 70 s was not drawn yet: it is when training ends
    now[0] = 72
    curves.on_train_end()
    assert drawn_at == [5, 50, 71]  # nothing left to draw
