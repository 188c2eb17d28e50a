import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_settings
from utils import steps
from utils.experiments import SCORING_SETTINGS
from utils.settings import save_settings

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_finished_seed_is_reused_and_never_trained_over_with_other_settings(tmp_path):
    bench = _bench()
    s = make_settings(tmp_path, "RUN_NAME=r-seed1")
    run = steps.run_dir(s)
    (run / f"test-{s.TEST_SPLIT}").mkdir(parents=True)
    save_settings(s, run / "config.json")
    (run / "train_summary.json").write_text(json.dumps({"epochs": 3}))
    (run / f"test-{s.TEST_SPLIT}" / "summary.json").write_text(json.dumps({"top1_accuracy": 0.5}))
    assert bench.finished_run(s) == ({"epochs": 3}, {"top1_accuracy": 0.5})
    assert bench.finished_run(s.replace(RUN_NAME="r-seed2")) is None  # nothing there: trained

    def contents():
        return {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    before = contents()
    with pytest.raises(ValueError, match=r"EPOCHS 30 -> 4\. It is kept"):
        bench.finished_run(s.replace(EPOCHS=4))
    # a run saved before a setting existed ran as that setting's VALUE_BEFORE says: before
    # SELECT_FROM any epoch could win, which is not today's default
    def saved_without(*keys):
        saved = json.loads(before[run / "config.json"])
        for key in keys:
            del saved["settings"][key]
        (run / "config.json").write_text(json.dumps(saved))
    saved_without("SELECT_FROM", "STEM_KERNEL")
    with pytest.raises(ValueError, match=r"SELECT_FROM 0\.0 -> 1\.0") as refused:
        bench.finished_run(s)
    assert "STEM_KERNEL" not in str(refused.value)
    # ... while a run from before STEM_KERNEL used the stem that its default [5, 5] builds: reported
    saved_without("STEM_KERNEL")
    assert bench.finished_run(s) == ({"epochs": 3}, {"top1_accuracy": 0.5})
    with pytest.raises(ValueError, match=r"STEM_KERNEL \[5, 5\] -> \[15, 5\]"):
        bench.finished_run(s.replace(STEM_KERNEL=[15, 5]))
    # a setting that came with other changes has no value before it: such a run is refused
    saved_without("MIN_SIGNAL_SHARE")
    with pytest.raises(ValueError, match=r"MIN_SIGNAL_SHARE \(not a setting then\)"):
        bench.finished_run(s)
    (run / "config.json").write_bytes(before[run / "config.json"])
    assert contents() == before  # nothing deleted or rewritten by the refusals


def test_a_finished_seed_is_tested_again_when_only_its_scoring_settings_differ(tmp_path):
    """The same training scored another way (test-time rolls, a threshold) is the same model: its
    test is made again, never refused; a setting the report does not depend on reuses it."""
    bench = _bench()
    s = make_settings(tmp_path, "RUN_NAME=r-seed1")
    run = steps.run_dir(s)
    report = run / f"test-{s.TEST_SPLIT}"
    report.mkdir(parents=True)
    save_settings(s, run / "config.json")
    (run / "train_summary.json").write_text(json.dumps({"epochs": 3}))
    scored_with = {k: s[k] for k in SCORING_SETTINGS}
    (report / "summary.json").write_text(json.dumps({"top1_accuracy": 0.5,
                                                      "scoring_settings": scored_with}))
    assert bench.finished_run(s) == ({"epochs": 3}, json.loads((report / "summary.json").read_text()))
    assert bench.finished_run(s.replace(TEST_TIME_ROLLS=[-0.03, 0.03])) is None
    assert bench.finished_run(s.replace(CALL_THRESHOLD=0.3)) is None
    assert bench.finished_run(s.replace(SUBMISSION_TOP_N=3)) is not None  # not in the report
    assert steps.run_folder_state(s.replace(TEST_TIME_ROLLS=[0.03])) == "finished"
    # a report from before reports recorded their scoring settings: its run's saved ones
    (report / "summary.json").write_text(json.dumps({"top1_accuracy": 0.5}))
    assert bench.finished_run(s) is not None
    assert bench.finished_run(s.replace(TEST_TIME_SHIFTS=[0.5])) is None
    # the pooling is scored with, but training's validation pools with it too: another run
    with pytest.raises(ValueError, match=r"POOLING 'median_filtered' -> 'mean'"):
        bench.finished_run(s.replace(POOLING="mean"))



def test_run_folder_state_names_what_a_folder_holds_and_refuses_other_settings(tmp_path):
    s = make_settings(tmp_path, "RUN_NAME=r")
    run = steps.run_dir(s)
    assert steps.run_folder_state(s) == "none"  # no folder yet
    run.mkdir(parents=True)
    save_settings(s, run / "config.json")
    assert steps.run_folder_state(s) == "none"  # settings saved, nothing trained or backed up yet
    (run / "backup").mkdir()
    (run / "backup" / "run.json").write_text("{}")
    assert steps.run_folder_state(s) == "interrupted"
    with pytest.raises(ValueError, match=r"holds an interrupted run with other settings: EPOCHS 30 -> 4"):
        steps.run_folder_state(s.replace(EPOCHS=4))
    assert (run / "backup" / "run.json").exists()  # refused: kept
    assert steps.run_folder_state(s.replace(EPOCHS=4), overwrite=True) == "none"
    assert not (run / "backup").exists()  # overwritten: this training starts afresh
    (run / "train_summary.json").write_text("{}")
    assert steps.run_folder_state(s) == "finished"
    with pytest.raises(ValueError, match=r"holds a finished run with other settings: EPOCHS 30 -> 4"):
        steps.run_folder_state(s.replace(EPOCHS=4))
    assert steps.run_folder_state(s.replace(EPOCHS=4), overwrite=True) == "none"
    assert not steps.finished_run(s, run / "test-val")  # finished, but not tested yet


def test_a_path_written_another_way_is_the_same_setting(tmp_path, monkeypatch):
    s = make_settings(tmp_path, "RUN_NAME=r")
    run = steps.run_dir(s)
    run.mkdir(parents=True)
    save_settings(s, run / "config.json")
    (run / "train_summary.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # the saved DATASET_DIR is absolute; "dataset" names the same folder
    assert steps.run_folder_state(s.replace(DATASET_DIR="dataset", STORE_DIR="./store")) == "finished"
    with pytest.raises(ValueError, match="DATASET_DIR .* -> 'other'"):
        steps.run_folder_state(s.replace(DATASET_DIR="other"))


def test_the_seed_ensemble_averages_each_seeds_chosen_model(trained, tmp_path):
    bench = _bench()
    tiny = trained.replace(POOLING="mean", TEST_SPLIT="val")  # the tiny model's scores are near-even:
    s = tiny.replace(RUNS_DIR=str(tmp_path / "runs"), RUN_NAME="r")  # median filtering zeroes them
    source = steps.run_dir(trained)
    models = [source / "best.keras", source / "snapshots" / "epoch-002.keras"]
    runs = [bench.seed_run(s, seed) for seed in (1, 2)]
    for run, model in zip(runs, models):
        steps.run_dir(run).mkdir(parents=True)
        shutil.copy(model, steps.run_dir(run) / "best.keras")
    report = bench.seed_ensemble(s, runs, "val")
    assert report["model"] == [str(steps.run_dir(run) / "best.keras") for run in runs]
    assert Path(report["report"]) == tmp_path / "runs" / "r-ensemble" / "test-val"
    both = steps.test_step(tiny.replace(TEST_MODELS=[str(m) for m in models]), out=tmp_path / "both")
    one = steps.test_step(tiny, out=tmp_path / "one")

    def scores(summary):
        return pd.read_csv(Path(summary["report"]) / "scores.csv", index_col=0).to_numpy()
    np.testing.assert_allclose(scores(report), scores(both), atol=1e-6)
    assert np.abs(scores(report) - scores(one)).max() > 1e-3  # both seeds' models count
