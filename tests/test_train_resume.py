"""Kill a real train.py midway; the rerun continues at the right epoch with the same result."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, make_settings
from utils import steps

pytestmark = pytest.mark.backend  # also run on JAX by `make test`

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [*TINY, "EPOCHS=6", "SNAPSHOT_EPOCHS=0", "IMAGE_HEIGHT=64", "IMAGE_WIDTH=128",
            "BATCH_SIZE=8", "AUGMENTATION={'roll_v': 0.1, 'noise': 0.5, 'mixup': 0.3}"]


def log_rows(run: Path) -> list[dict]:
    path = run / "train_log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_killed_training_resumes_with_the_same_result(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *SETTINGS, f"RAW_DATA={tiny_raw}")
    steps.sort_step(s)
    steps.spec_step(s)
    killed = tmp_path / "runs" / "killed"
    args = [sys.executable, "train.py"]
    for pair in [f"DATASET_DIR={s.DATASET_DIR}", f"STORE_DIR={s.STORE_DIR}", f"RUNS_DIR={s.RUNS_DIR}",
                 "RUN_NAME=killed", f"RAW_DATA={tiny_raw}", *SETTINGS]:
        args += ["--set", pair]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(log_rows(killed)) < 2 and process.poll() is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    epochs_at_kill = len(log_rows(killed))
    assert 2 <= epochs_at_kill < 6 and (killed / "backup").exists()

    saved = (killed / "config.json").read_bytes()
    interrupted = tmp_path / "runs" / "interrupted"  # a copy, to be trained over below
    shutil.copytree(killed, interrupted)
    with pytest.raises(ValueError, match="an interrupted run with other settings: LEARNING_RATE .*--overwrite"):
        steps.train_step(s.replace(RUN_NAME="killed", LEARNING_RATE=0.01))
    assert (killed / "config.json").read_bytes() == saved  # refused before anything changed
    resumed = steps.train_step(s.replace(RUN_NAME="killed"))
    assert resumed["resumed_at_epoch"] >= epochs_at_kill - 1 and resumed["epochs"] == 6
    assert not (killed / "backup").exists()

    # --overwrite: the interrupted run of other settings is dropped, and this one starts afresh
    fresh = steps.train_step(s.replace(RUN_NAME="interrupted", EPOCHS=2), overwrite=True)
    assert fresh["resumed_at_epoch"] == 0 and fresh["epochs"] == 2
    assert [r["epoch"] for r in log_rows(interrupted)] == ["0", "1"]

    steps.train_step(s.replace(RUN_NAME="straight"))
    a, b = log_rows(killed), log_rows(tmp_path / "runs" / "straight")
    assert [r["epoch"] for r in a] == [str(e) for e in range(6)]
    for key in ("loss", "val_loss", "val_rec_mlrap"):
        assert np.allclose([float(r[key]) for r in a], [float(r[key]) for r in b], rtol=1e-4, atol=1e-5), key
