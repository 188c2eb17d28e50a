"""End to end: steps 1-5 on a tiny synthetic dataset, and on InsectSet32 when ../shared is there."""
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from tests.conftest import SHARED_DATA, TINY, make_settings
from utils import steps
from utils.model_io import read_model_meta
from utils.runtime import choose_runtime, exported_path
from utils.store import Store
from utils.formats import check_topn_csv

pytestmark = pytest.mark.backend  # also run on JAX by `make test`

REPO = Path(__file__).resolve().parents[1]


def script(name):
    """Import a top-level script by path (test.py would otherwise clash with the stdlib package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_steps_one_to_five_on_synthetic_calls(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EPOCHS=30", "LEARNING_RATE=0.003",
                      f"SUBMISSION_AUDIO={tiny_raw.parent / 'unlabelled'}", "SCORING_RUNTIME=auto")
    sorted_ = steps.sort_step(s)
    assert sorted_["sorted"] == 18 and sorted_["splits"] == {"train": 15, "val": 3}

    spec = steps.spec_step(s)
    store = Store(spec["store"])
    assert spec["signal_chunks"] > 30 and set(store.index["split"]) == {"train", "val"}
    assert store.settings["spec"]["height"] == 32

    trained = steps.train_step(s)
    run = tmp_path / "runs" / "default"
    meta = read_model_meta(run / "best.keras")
    assert meta["classes"] == sorted(store.index["label"].unique())
    assert meta["spec"] == store.settings["spec"]
    assert (run / "snapshots" / "epoch-002.keras").exists() and (run / "last.keras").exists()
    train_log = pd.read_csv(run / "train_log.csv")
    assert len(train_log) == trained["epochs"] == 30
    assert meta["epoch"] == trained["best_epoch"] == 30  # by default best.keras is the last epoch
    assert train_log["learning_rate"].iloc[-1] < train_log["learning_rate"].iloc[1]  # cosine decay
    curves = run / "training_curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # drawn again when training ended, after the log's last row, however close the epochs came
    assert curves.stat().st_mtime_ns >= (run / "train_log.csv").stat().st_mtime_ns
    assert json.loads((run / "config.json").read_text())["settings"]["EPOCHS"] == 30

    # the model's own spectrogram settings are used even when the config now says otherwise
    summary = steps.test_step(s.replace(IMAGE_HEIGHT=64, FMAX=6000.0))
    if choose_runtime("auto") == "litert":  # the default scores through the model's LiteRT export
        assert exported_path(run / "best.keras").exists()
    assert summary["recordings"] == summary["scored"] == 3 and summary["errors"] == 0
    assert summary["mlrap"] > 0.6  # three distinct call types: well above chance (about 0.6 at random)
    table = pd.read_csv(run / "test-val" / "per_recording.csv")
    assert set(table.columns) >= {"recording", "label", "top1", "top1_score", "correct"}

    sub = steps.submission_step(s)
    assert sub["recordings"] == 2
    assert check_topn_csv(Path(sub["file"]).read_text(), meta["classes"], s.SUBMISSION_TOP_N) == []


def test_spec_rerun_is_a_no_op_and_new_settings_get_a_new_store(tmp_path, tiny_raw):
    s = make_settings(tmp_path, f"RAW_DATA={tiny_raw}", *TINY)
    steps.sort_step(s)
    first = steps.spec_step(s)
    again = steps.spec_step(s)
    assert again["store"] == first["store"] and again["this_run"]["ok"] == 0
    assert len(list((Path(first["store"]) / "shards").glob("*.done.json"))) == 1
    other = steps.spec_step(s.replace(IMAGE_WIDTH=32))
    assert other["store"] != first["store"] and other["this_run"]["ok"] == 18


def test_scripts_report_bad_settings_in_one_line(tmp_path):
    result = CliRunner().invoke(script("spec").main, ["--set", "CHUNK_LENGHT=2"])
    assert result.exit_code == 2 and "did you mean CHUNK_LENGTH" in result.output
    result = CliRunner().invoke(script("train").main, ["--set", "EPOCHS=many"])
    assert result.exit_code == 2 and "bad value for EPOCHS" in result.output
    missing = CliRunner().invoke(script("test").main, ["--set", f"RUNS_DIR={tmp_path}"])
    assert missing.exit_code == 1 and "model not found" in missing.output
    assert "Traceback" not in missing.output


@pytest.mark.parametrize("name", ["sort_data", "spec", "train", "test", "evaluate", "demo_data", "submission/__main__"])
def test_every_script_has_help(name):
    result = CliRunner().invoke(script(name).main, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.skipif(not (SHARED_DATA / "insectset32").is_dir(), reason="../shared/data not present")
def test_insectset32_official_split_end_to_end(tmp_path):
    s = make_settings(tmp_path, "EPOCHS=1", "FILTERS=[8, 16]", "IMAGE_HEIGHT=64", "IMAGE_WIDTH=128",
                      "SNAPSHOT_EPOCHS=0", "SPEC_WORKERS=2", "CHUNK_OVERLAP=0.0",
                      config_file=str(REPO / "configs" / "insectset32.py"))
    s = s.replace(RAW_DATA=str(SHARED_DATA / "insectset32" / "metadata.csv"))
    sorted_ = steps.sort_step(s)
    assert sorted_["splits"] == {"train": 205, "val": 51, "test": 72}
    assert len(sorted_["problems"]) == 4  # the four 'unlisted' recordings
    steps.spec_step(s)
    steps.train_step(s)
    summary = steps.test_step(s)
    assert summary["split"] == "test" and summary["scored"] == 72
    assert 0 <= summary["top1_accuracy"] <= 1


def test_spec_differences_are_named_only_when_real(caplog):
    import logging

    from utils.cli import DEFAULTS_FILE
    from utils.settings import load_settings
    from utils.spectrogram import SpecParams

    s = load_settings(DEFAULTS_FILE)
    meta = {"spec": json.loads(json.dumps(SpecParams.from_settings(s).to_dict()))}  # as saved
    logger = logging.getLogger("bioacoustics")
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="bioacoustics"):
            steps._note_spec_differences(meta, s)
            assert "differs" not in caplog.text
            steps._note_spec_differences(meta, s.replace(FMAX=12000.0))
            assert "differs in: fmax" in caplog.text
    finally:
        logger.propagate = False


def test_keras_backend_setting_selects_the_backend():
    import subprocess
    import sys

    code = ("from utils import steps; steps.use_backend('jax'); import keras; "
            "print(keras.backend.backend())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "jax"
