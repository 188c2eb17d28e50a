"""Step 4: ensembles, test-time shifts and rolls, unknown labels, report files and plots, --compare,
cross-validation and the experiments table, on a tiny trained model."""
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tests.test_pipeline import script
from utils import steps
from utils.dataset import Recording, load_recordings
from utils.experiments import append_experiment, fold_splits
from utils.extract import file_images
from utils.inference import TestTimeAugmentation as TTA  # not "Test*": pytest would collect it
from utils.inference import score_files
from utils.spectrogram import SpecParams, model_input, to_uint8

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_has_every_metric_table_and_readable_plots(trained):
    summary = steps.test_step(trained)
    out = Path(summary["report"])
    for key in ("mlrap", "mlrap_primary", "top1_accuracy", "top5_accuracy", "row_micro_f1",
                "padded_cmap", "macro_roc_auc", "macro_f1"):
        assert 0 <= summary[key] <= 1, key
    per_class = pd.read_csv(out / "per_class.csv")
    classes = sorted(per_class["class"])
    assert len(per_class) == 3 and per_class["support"].sum() == summary["scored"]
    confusion = pd.read_csv(out / "confusion.csv", index_col=0)
    assert confusion.to_numpy().sum() == summary["scored"]
    # the confusion matrix agrees with the per-recording table
    table = pd.read_csv(out / "per_recording.csv")
    assert np.trace(confusion.to_numpy()) == table["correct"].sum()
    assert summary["top1_accuracy"] == pytest.approx(table["correct"].mean())
    for name in ("confusion_matrix", "class_ap", "pr_curves", "score_histogram"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name
    assert "row-wise micro F1" in (out / "summary.txt").read_text()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["unknown_label"] == 0 and saved["unknown_labels"] == {} and saved["classes"] == classes


def test_ensemble_is_the_weighted_mean_of_its_members(trained, tmp_path):
    run = steps.run_dir(trained)
    # an earlier snapshot and the last epoch: two models that surely differ
    best, last = str(run / "snapshots" / "epoch-002.keras"), str(run / "last.keras")
    reports = {}
    for name, models, weights in (("best", [best], []), ("last", [last], []),
                                  ("both", [best, last], [3.0, 1.0])):
        s = trained.replace(TEST_MODELS=models, TEST_MODEL_WEIGHTS=weights, POOLING="mean")
        summary = steps.test_step(s, out=tmp_path / name)
        assert summary["models"] == len(models)
        reports[name] = pd.read_csv(tmp_path / name / "scores.csv").set_index("recording")
    assert not np.allclose(reports["best"].to_numpy(), reports["last"].to_numpy(), atol=1e-4)
    expected = 0.75 * reports["best"] + 0.25 * reports["last"]
    assert np.allclose(reports["both"].to_numpy(), expected.to_numpy(), atol=2e-6)

    with pytest.raises(ValueError, match="TEST_MODEL_WEIGHTS"):
        steps.test_step(trained.replace(TEST_MODELS=[best, last], TEST_MODEL_WEIGHTS=[1.0]))


def test_ensemble_refuses_models_with_other_classes(trained, tmp_path):
    from utils.model_io import load_model, save_model

    model, meta = load_model(steps.run_dir(trained) / "best.keras")
    other = tmp_path / "other.keras"
    save_model(model, other, {**meta, "classes": ["x", "y", "z"]})
    s = trained.replace(TEST_MODELS=[str(steps.run_dir(trained) / "best.keras"), str(other)])
    with pytest.raises(ValueError, match="other classes"):
        steps.test_step(s)


def test_time_shifts_add_the_shifted_chunk_grid(trained, tmp_path):
    path = load_recordings(trained.DATASET_DIR, "val")[0].path(trained.DATASET_DIR)
    params = SpecParams.from_settings(trained)
    plain, starts = file_images(path, params)
    shifted, shifted_starts = file_images(path, params, shifts=(0.25,))
    extra = len(shifted) - len(plain)
    assert extra > 0 and np.allclose(shifted_starts[len(plain):], starts[:extra] + 0.25)
    # a shifted chunk is the chunk that starts 0.25 s later in the file
    import soundfile as sf

    audio, rate = sf.read(path, dtype="float32")
    trimmed = tmp_path / "trimmed.wav"
    sf.write(trimmed, audio[int(0.25 * rate):], rate)
    assert np.allclose(shifted[len(plain):], file_images(trimmed, params)[0][:extra], atol=1e-4)

    with_tta = steps.test_step(trained.replace(TEST_TIME_SHIFTS=[0.25, 0.5]), out=tmp_path / "tta")
    without = steps.test_step(trained, out=tmp_path / "plain")
    chunks = [pd.read_csv(tmp_path / n / "per_recording.csv")["chunks"] for n in ("tta", "plain")]
    assert (chunks[0] > chunks[1]).all() and with_tta["time_shifts"] == [0.25, 0.5]
    assert without["time_shifts"] == []


class RowBlocks:
    """Stands in for a model: each image's mean over four blocks of rows, so a roll changes it."""

    def predict_on_batch(self, images):
        return images[..., 0].reshape(len(images), 4, -1).mean(axis=2)


def test_frequency_rolls_score_every_image_rolled_too(trained, tmp_path):
    path = load_recordings(trained.DATASET_DIR, "val")[0].path(trained.DATASET_DIR)
    params = SpecParams.from_settings(trained)
    plain, starts = file_images(path, params, pad_short=True)
    rows = round(0.1 * params.height)
    tta = TTA(rolls=(0.1, -0.1, 0.1 + 0.1 / params.height, 0.1 / params.height))
    result = next(score_files(RowBlocks(), params, [path], tta=tta))
    # the plain images, then each distinct whole-row roll once (a roll of 0 rows adds nothing)
    expected = [RowBlocks().predict_on_batch(model_input(np.roll(to_uint8(plain), r, axis=1)))
                for r in (0, rows, -rows)]
    assert np.allclose(result.scores, np.concatenate(expected))
    assert np.array_equal(result.starts, np.tile(starts, 3))
    assert not np.allclose(expected[0], expected[1])

    summary = steps.test_step(trained.replace(TEST_TIME_ROLLS=[-0.1, 0.1]), out=tmp_path / "rolled")
    table = pd.read_csv(tmp_path / "rolled" / "per_recording.csv").set_index("recording")
    assert table.loc[load_recordings(trained.DATASET_DIR, "val")[0].id, "chunks"] == 3 * len(plain)
    assert summary["frequency_rolls"] == [-0.1, 0.1] and summary["time_shifts"] == []
    with pytest.raises(ValueError, match="TEST_TIME_ROLLS are shares of the image height"):
        steps.test_step(trained.replace(TEST_TIME_ROLLS=[1.0]))


def test_roll_cycle_rolls_each_chunk_in_turn_and_scores_it_once(trained, tmp_path):
    from utils.audio import write_audio

    params = SpecParams.from_settings(trained)
    rows = round(0.1 * params.height)
    tta = TTA(roll_cycle=(0.1, -0.1))
    path = tmp_path / "twelve seconds.wav"  # several chunks, so every turn of the cycle comes round
    write_audio(path, 0.1 * np.random.default_rng(4).normal(size=12 * params.sample_rate), params.sample_rate)
    plain, starts = file_images(path, params, pad_short=True)
    assert len(plain) >= 4
    result = next(score_files(RowBlocks(), params, [path], tta=tta))
    expected = [RowBlocks().predict_on_batch(model_input(np.roll(to_uint8(image[None]), (0, rows, -rows)[i % 3],
                                                                 axis=1))) for i, image in enumerate(plain)]
    assert np.allclose(result.scores, np.concatenate(expected)) and np.array_equal(result.starts, starts)
    assert not np.allclose(expected[0], expected[1])
    # read in segments of two chunks, the turn goes on from each segment's first chunk number
    two_chunks = (2 * params.step_samples + 1) / params.sample_rate
    segmented = next(score_files(RowBlocks(), params, [path], tta=tta, segment_seconds=two_chunks))
    assert np.allclose(segmented.scores, result.scores)

    mean = trained.replace(POOLING="mean")  # the baseline's pooling zeroes most of 3 classes' scores
    summary = steps.test_step(mean.replace(TEST_TIME_ROLL_CYCLE=[-0.1, 0.1]), out=tmp_path / "cycled")
    plain_summary = steps.test_step(mean.replace(TEST_TIME_ROLL_CYCLE=[]), out=tmp_path / "plain")
    cycled, unrolled = (pd.read_csv(tmp_path / name / "scores.csv").set_index("recording")
                        for name in ("cycled", "plain"))
    chunks = [pd.read_csv(tmp_path / name / "per_recording.csv")["chunks"] for name in ("cycled", "plain")]
    assert chunks[0].equals(chunks[1]) and chunks[0].max() >= 2  # no chunk scored twice
    assert not np.allclose(cycled.to_numpy(), unrolled.to_numpy())
    assert summary["roll_cycle"] == [-0.1, 0.1] and plain_summary["roll_cycle"] == []
    assert summary["scoring_settings"]["TEST_TIME_ROLL_CYCLE"] == [-0.1, 0.1]
    with pytest.raises(ValueError, match="TEST_TIME_ROLL_CYCLE are shares of the image height"):
        steps.test_step(trained.replace(TEST_TIME_ROLL_CYCLE=[0.5, -1.0]))


def test_unknown_labels_are_counted_and_left_out(trained, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(trained.DATASET_DIR, dataset, symlinks=True)
    rec = load_recordings(dataset, "val")[0]
    stranger = Recording(**{**asdict(rec), "id": "stranger", "primary": "Zebra finch"})
    (dataset / "metadata" / "stranger.json").write_text(json.dumps(asdict(stranger)))
    summary = steps.test_step(trained.replace(DATASET_DIR=str(dataset)), out=tmp_path / "report")
    assert summary["unknown_label"] == 1 and summary["unknown_labels"] == {"Zebra finch": 1}
    assert summary["recordings"] == summary["scored"] + 1
    table = pd.read_csv(tmp_path / "report" / "per_recording.csv").set_index("recording")
    assert not table.loc["stranger", "known_label"]
    assert "Zebra finch" in (tmp_path / "report" / "summary.txt").read_text()


def test_compare_prints_two_runs_side_by_side(trained, tmp_path):
    steps.test_step(trained)
    other = steps.test_step(trained.replace(POOLING="max"), out=tmp_path / "max")
    result = CliRunner().invoke(script("test").main, [
        "--set", f"RUNS_DIR={trained.RUNS_DIR}", "--compare", trained.RUN_NAME, str(tmp_path / "max")])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if l.startswith("top-1 accuracy"))
    mine = json.loads((steps.run_dir(trained) / "test-val" / "summary.json").read_text())
    assert f"{mine['top1_accuracy']:.4f}" in line and f"{other['top1_accuracy']:.4f}" in line
    assert f"top-1 on the {mine['scored']} recordings both scored: right in both" in result.output
    assert "95% interval of the change" in result.output
    # the folder holds what its metrics came from: rebuilt from it, they come out the same,
    # and so do the means of each recording's own value that the bootstrap resamples
    from utils.comparison import RECORDING_MEANS, read_scored_recordings

    rebuilt = read_scored_recordings(steps.run_dir(trained) / "test-val")
    for key, value in rebuilt.metrics().items():
        assert value == pytest.approx(mine[key], nan_ok=True), key
    for key, values in rebuilt.per_recording.items():
        assert key in RECORDING_MEANS and np.nanmean(values) == pytest.approx(mine[key]), key
    missing = CliRunner().invoke(script("test").main, [  # RUNS_DIR: its log stays out of the checkout
        "--set", f"RUNS_DIR={tmp_path}", "--compare", "nope", str(tmp_path / "max")])
    assert missing.exit_code == 1 and "no test report found for 'nope'" in missing.output


def test_evaluate_tests_a_finished_training_without_training_again(trained, tmp_path, monkeypatch):
    import utils.training

    # a run whose test never happened (the process stopped after training): evaluate.py only tests
    run = trained.replace(RUNS_DIR=str(tmp_path / "runs"))
    shutil.copytree(steps.run_dir(trained), steps.run_dir(run), ignore=shutil.ignore_patterns("test-*"))

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr(utils.training, "train_model", no_training)
    result = steps.evaluate_step(run)
    assert result["train"] == json.loads((steps.run_dir(trained) / "train_summary.json").read_text())
    assert (steps.run_dir(run) / "test-val" / "summary.json").exists()
    assert len(pd.read_csv(tmp_path / "runs" / "experiments.csv")) == 1
    # other settings in the folder are another experiment: still refused, as before
    with pytest.raises(ValueError, match="other settings"):
        steps.evaluate_step(run.replace(LEARNING_RATE=0.01))
    # ... but the same training scored another way is tested again, not refused nor retrained
    rescored = steps.evaluate_step(run.replace(CALL_THRESHOLD=0.3, TEST_TIME_ROLLS=[0.05]))
    summary = json.loads((steps.run_dir(run) / "test-val" / "summary.json").read_text())
    assert rescored["test"]["f1_threshold"] == summary["f1_threshold"] == 0.3
    assert summary["scoring_settings"]["TEST_TIME_ROLLS"] == [0.05]


def test_evaluate_refuses_other_models_before_training(trained, tmp_path, monkeypatch):
    import utils.training

    # TEST_MODELS would score saved models in place of the one trained (in a cross-validation, on
    # every fold, models that trained on its held-out recordings) and credit them to this run
    def no_training(*args, **kwargs):
        raise AssertionError("trained")
    monkeypatch.setattr(utils.training, "train_model", no_training)
    run = trained.replace(RUNS_DIR=str(tmp_path / "runs"), RUN_NAME="other",
                          TEST_MODELS=[str(steps.run_dir(trained) / "best.keras")])
    for folds in (0, 2):
        with pytest.raises(ValueError, match="TEST_MODELS names others"):
            steps.evaluate_step(run, folds)
    assert not (tmp_path / "runs").exists()


def test_cross_validation_trains_each_fold_resumes_and_logs_the_experiment(trained):
    s = trained.replace(EPOCHS=1, RUN_NAME="cv")
    saved = steps.run_dir(trained) / "config.json"  # the fixture's settings, as a user would pass them

    def evaluate(*extra):
        return CliRunner().invoke(script("evaluate").main, ["--config", str(saved), "--folds", "2",
                                                            "--set", "EPOCHS=1", "--set", "RUN_NAME=cv", *extra])
    cli = evaluate()
    assert cli.exit_code == 0, cli.output
    assert "2-fold cross-validation" in cli.output and "top-1 accuracy" in cli.output
    result = json.loads((steps.run_dir(s) / "crossval.json").read_text())
    assert result["folds"] == 2 and len(result["per_fold"]) == 2 and result["reused_folds"] == 0
    tables = [pd.read_csv(Path(f["report"]) / "per_recording.csv") for f in result["per_fold"]]
    held_out = [t["recording"] for t in tables]
    pool = {r.id for r in load_recordings(s.DATASET_DIR) if r.split in ("train", "val")}
    assert set(held_out[0]).isdisjoint(held_out[1]) and set(held_out[0]) | set(held_out[1]) == pool
    assert result["top1_accuracy"] == pytest.approx(np.mean([f["top1_accuracy"] for f in result["per_fold"]]))
    # the out-of-fold report: every held-out recording once, each judged by its own fold's model
    out_of_fold = Path(result["report"])
    assert out_of_fold == steps.run_dir(s) / "test-crossval"
    merged = pd.read_csv(out_of_fold / "per_recording.csv")
    assert sorted(merged["recording"]) == sorted(pool) and result["out_of_fold"]["scored"] == len(pool)
    both = pd.concat(tables).set_index("recording")
    assert (merged.set_index("recording")["top1"] == both.loc[merged["recording"], "top1"]).all()
    assert result["out_of_fold"]["top1_accuracy"] == pytest.approx(both["correct"].mean())
    assert f"{result['out_of_fold']['top1_accuracy']:.4f}" in cli.output
    assert (out_of_fold / "confusion_matrix.png").read_bytes()[:8] == PNG
    table = pd.read_csv(Path(s.RUNS_DIR) / "experiments.csv")
    row = table[table["run"] == "cv"].iloc[-1]
    assert row["folds"] == 2 and row["split"] == "2-fold" and row["epochs"] == 1
    assert row["top1_accuracy"] == pytest.approx(result["top1_accuracy"], abs=1e-4)

    # interrupted before fold 2 was tested: fold 1 is reused as it is, fold 2 only tested, since
    # it records the split it trained on and that is the fold's split now
    models = [steps.run_dir(s) / f"fold{k}" / "best.keras" for k in (1, 2)]
    stamps = [m.stat().st_mtime_ns for m in models]
    fold2_report = steps.run_dir(s) / "fold2" / "test-fold" / "summary.json"
    fold2_report.unlink()
    cli = evaluate()
    assert cli.exit_code == 0, cli.output
    assert "1 fold(s) finished earlier, reused; 1 fold(s) trained earlier, tested now" in cli.output
    assert [m.stat().st_mtime_ns for m in models] == stamps and fold2_report.exists()
    assert json.loads((steps.run_dir(s) / "crossval.json").read_text())["top1_accuracy"] == \
        pytest.approx(result["top1_accuracy"])
    # a fold whose recorded split is not the fold's split now (or that records none, from an older
    # version) is trained again, never tested on recordings it may have trained on
    split_file = steps.run_dir(s) / "fold2" / steps.FOLD_SPLIT_FILE
    split = json.loads(split_file.read_text())
    assert sorted(k for k, v in split.items() if v == "val") == sorted(held_out[1])
    moved = next(k for k, v in split.items() if v == "train")
    split_file.write_text(json.dumps({**split, moved: "val"}))
    fold2_report.unlink()
    cli = evaluate()
    assert cli.exit_code == 0 and "trained earlier, tested now" not in cli.output, cli.output
    assert models[0].stat().st_mtime_ns == stamps[0] and models[1].stat().st_mtime_ns != stamps[1]
    assert json.loads(split_file.read_text()) == split
    split_file.unlink()
    fold2_report.unlink()
    stamps = [m.stat().st_mtime_ns for m in models]
    cli = evaluate()
    assert cli.exit_code == 0 and "trained earlier, tested now" not in cli.output, cli.output
    assert models[0].stat().st_mtime_ns == stamps[0] and models[1].stat().st_mtime_ns != stamps[1]
    rows = len(pd.read_csv(Path(s.RUNS_DIR) / "experiments.csv"))
    # a fold report from before reports recorded their test-time rolls and scoring settings
    old_report = Path(result["per_fold"][0]["report"]) / "summary.json"
    old_summary = json.loads(old_report.read_text())
    old_report.write_text(json.dumps({k: v for k, v in old_summary.items()
                                      if k not in ("frequency_rolls", "scoring_settings")}))
    # run again as it is: nothing trained, nothing added to the experiments table
    cli = evaluate()
    assert cli.exit_code == 0 and "2 fold(s) finished earlier, reused" in cli.output, cli.output
    assert len(pd.read_csv(Path(s.RUNS_DIR) / "experiments.csv")) == rows
    merged = json.loads((steps.run_dir(s) / "test-crossval" / "summary.json").read_text())
    assert merged["frequency_rolls"] == [] and merged["scoring_settings"]["CALL_THRESHOLD"] == 0.5
    # other settings never train over finished folds
    stamps = [m.stat().st_mtime_ns for m in models]
    cli = evaluate("--set", "LEARNING_RATE=0.01")
    assert cli.exit_code == 1 and "LEARNING_RATE 0.003 -> 0.01" in cli.output, cli.output
    assert [m.stat().st_mtime_ns for m in models] == stamps
    # nor is a fold reused that was tested on other recordings than the fold holds now
    tested = steps.run_dir(s) / "fold1" / "test-fold" / "per_recording.csv"
    tested.write_text("".join(tested.read_text().splitlines(keepends=True)[:-1]))
    cli = evaluate()
    assert cli.exit_code == 1 and "tested on other recordings" in cli.output, cli.output
    assert [m.stat().st_mtime_ns for m in models] == stamps
    # --overwrite trains the folds of other settings again, in their folders
    cli = evaluate("--set", "LEARNING_RATE=0.01", "--overwrite")
    assert cli.exit_code == 0 and "reused" not in cli.output, cli.output
    assert all(m.stat().st_mtime_ns != stamp for m, stamp in zip(models, stamps))
    assert json.loads((steps.run_dir(s) / "fold1" / "config.json").read_text())["settings"]["LEARNING_RATE"] == 0.01
    # scored another way, the folds are tested again, not trained again
    stamps = [m.stat().st_mtime_ns for m in models]
    cli = evaluate("--set", "LEARNING_RATE=0.01", "--set", "CALL_THRESHOLD=0.3")
    assert cli.exit_code == 0 and cli.output.count("trained earlier on this split, tested now") == 2, cli.output
    assert [m.stat().st_mtime_ns for m in models] == stamps
    assert json.loads((Path(result["per_fold"][0]["report"]) / "summary.json").read_text())[
        "f1_threshold"] == 0.3


def _write_report_folder(folder, rows, classes, scores):
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "per_recording.csv", index=False)
    pd.DataFrame([[r["recording"], *s] for r, s in zip(rows, scores)],
                 columns=["recording", *classes]).to_csv(folder / "scores.csv", index=False)


def _row(rid, label, top1, known=True):
    return {"recording": rid, "label": label, "background": "", "known_label": known, "chunks": 3,
            "error": "", "top1": top1, "correct": top1 == label}


def test_merged_report_scores_each_recording_by_its_own_fold(tmp_path):
    from utils.evaluation import merge_reports

    # fold 1's model never saw class c; fold 2's knows it, and fold 1 holds out a c recording
    _write_report_folder(tmp_path / "f1", [_row("007", "a", "a"), _row("010", "b", "a"),
                                           _row("011", "c", "a", known=False)],
                         ["a", "b"], [[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    _write_report_folder(tmp_path / "f2", [_row("008", "c", "c"), _row("009", "b", "b")],
                         ["a", "b", "c"], [[0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    recordings = {r.id: r for r in (_rec("007", "a"), _rec("010", "b"), _rec("011", "c"),
                                    _rec("008", "c"), _rec("009", "b"))}
    report = merge_reports([tmp_path / "f1", tmp_path / "f2"], recordings)
    assert report.classes == ["a", "b", "c"]
    assert report.scores["recording"].tolist() == ["007", "008", "009", "010"]  # ids stay text
    np.testing.assert_allclose(report.scores.loc[0, ["a", "b", "c"]].to_numpy(float), [0.9, 0.1, 0.0])
    s = report.summary
    assert s["recordings"] == 5 and s["scored"] == 4
    assert s["unknown_label"] == 1 and s["unknown_labels"] == {"c": 1}
    assert s["top1_accuracy"] == pytest.approx(3 / 4)  # 010 is wrong
    assert report.confusion.sum() == 4 and report.confusion[1, 0] == 1
    with pytest.raises(ValueError, match="share recordings: 007"):
        merge_reports([tmp_path / "f1", tmp_path / "f1"], recordings)


def test_compare_counts_recordings_right_in_one_report_only(tmp_path):
    from utils.comparison import paired_top1, read_scored_recordings

    rows = [_row("r1", "a", "a"), _row("r2", "a", "b"), _row("r3", "b", "b"), _row("r4", "b", "a"),
            _row("r5", "z", "a", known=False)]
    other = [_row("r1", "a", "a"), _row("r2", "a", "a"), _row("r3", "b", "a"), _row("r4", "b", "a"),
             _row("r5", "z", "z", known=False), _row("r6", "a", "a")]

    def scores(table):  # the top-1 answer of each row as its scores
        return [[0.9, 0.1] if row["top1"] == "a" else [0.1, 0.9] for row in table]
    for name, table in (("x", rows), ("y", other)):
        _write_report_folder(tmp_path / name, table, ["a", "b"], scores(table))
        (tmp_path / name / "summary.json").write_text(json.dumps({"with_background": True}))
    x, y = (read_scored_recordings(tmp_path / name) for name in ("x", "y"))
    assert paired_top1(x, y) == [
        "top-1 on the 4 recordings both scored: right in both 1, only in the first 1, "
        "only in the second 1, in neither 1",
        "  exact McNemar test on the 2 that differ: p = 1.000 (the chance of a split at least this "
        "uneven if the two were equally good)"]


def test_bootstrap_interval_of_a_top1_change_matches_the_binomial_quantiles(tmp_path):
    from utils.comparison import bootstrap_changes, read_scored_recordings

    # 20 recordings: the first report right on 10, the second on all 20. A resample's change is
    # (draws among the 10) / 20 with draws ~ Bin(20, 1/2): P(<= 5) = 0.021 and P(<= 6) = 0.058, so
    # its 2.5th percentile is 6/20; by symmetry the 97.5th is 14/20
    rows = [_row(f"r{i:02d}", "a", "a" if i < 10 else "b") for i in range(20)]
    scores = [[0.9, 0.1] if i < 10 else [0.1, 0.9] for i in range(20)]
    _write_report_folder(tmp_path / "x", rows, ["a", "b"], scores)
    _write_report_folder(tmp_path / "y", [_row(f"r{i:02d}", "a", "a") for i in range(20)], ["a", "b"],
                         [[0.9, 0.1]] * 20)
    for name in ("x", "y"):
        (tmp_path / name / "summary.json").write_text(json.dumps({"with_background": True,
                                                                  "f1_threshold": 0.5}))
    x, y = read_scored_recordings(tmp_path / "x"), read_scored_recordings(tmp_path / "y")
    assert x.metrics()["top1_accuracy"] == 0.5 and y.metrics()["top1_accuracy"] == 1.0
    shared, intervals = bootstrap_changes(x, y, resamples=10000)
    assert shared == 20
    assert intervals["top1_accuracy"] == pytest.approx((6 / 20, 14 / 20))
    assert intervals["mlrap"] == pytest.approx((6 / 40, 14 / 40))  # a wrong recording's LRAP is 1/2
    assert set(intervals) == {"mlrap", "mlrap_primary", "top1_accuracy", "top5_accuracy", "row_micro_f1"}
    assert intervals["top5_accuracy"] == (0.0, 0.0)  # with two classes both are always in the top 5
    assert all(v == (0.0, 0.0) for v in bootstrap_changes(y, y, resamples=100)[1].values())


def test_mcnemar_p_matches_the_binomial_tail_by_hand():
    from utils.comparison import mcnemar_p

    # 1 against 9: P(X <= 1) for X ~ Bin(10, 1/2) is (1 + 10) / 1024, doubled for two sides
    assert mcnemar_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_p(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_p(0, 3) == pytest.approx(2 / 8)   # 0 against 3: (1/2)^3, doubled
    assert mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(0, 0) == 1.0                    # nothing differs: no evidence either way


def _rec(rid, label, split="train", group=""):
    return Recording(rid, label, [], split, f"{rid}.wav", "", 1.0, 16000, 1, group)


def test_fold_splits_keep_groups_together_and_test_out():
    recs = [_rec(f"{label}{i}", label, group=f"site{i % 3}") for label in "abc" for i in range(6)]
    recs.append(_rec("t0", "a", split="test"))
    folds = fold_splits(recs, 3, seed=0)
    assert len(folds) == 3
    for split in folds:
        assert "t0" not in split
        for site in ("site0", "site1", "site2"):
            assert len({split[r.id] for r in recs if r.group == site}) == 1  # a site is in one fold
    held_out = [{r for r, v in split.items() if v == "val"} for split in folds]
    assert set().union(*held_out) == {r.id for r in recs if r.split == "train"}
    with pytest.raises(ValueError, match="groups"):
        fold_splits(recs, 4, seed=0)
    with pytest.raises(ValueError, match="at least 2"):
        fold_splits(recs, 1, seed=0)


def test_experiments_table_appends_rows_with_new_columns(tmp_path):
    table = tmp_path / "experiments.csv"
    append_experiment(table, {"run": "a", "top1_accuracy": 0.5})
    append_experiment(table, {"run": "b", "top1_accuracy": 0.75, "padded_cmap": 0.9})
    rows = pd.read_csv(table)
    assert rows["run"].tolist() == ["a", "b"] and rows["top1_accuracy"].tolist() == [0.5, 0.75]
    assert np.isnan(rows.loc[0, "padded_cmap"]) and rows.loc[1, "padded_cmap"] == 0.9
