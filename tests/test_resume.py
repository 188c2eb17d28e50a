"""Kill a real spec.py midway, run it again, and compare with an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import TINY, make_settings
from utils import steps
from utils.store import Store, committed_recordings
from utils.synth import make_dataset

REPO = Path(__file__).resolve().parents[1]


def test_killed_extraction_resumes_without_losing_or_duplicating_chunks(tmp_path):
    raw = make_dataset(tmp_path / "raw", n_species=3, recordings_per_species=30, seconds=(4.0, 6.0),
                       sample_rate=16000, unlabelled=0, seed=4)
    sets = [*TINY, f"RAW_DATA={raw}", "STORE_SHARD_SIZE=8"]
    s = make_settings(tmp_path, *sets)
    steps.sort_step(s)
    root = steps.store_root(s)
    args = [sys.executable, "spec.py"]
    for pair in [f"DATASET_DIR={s.DATASET_DIR}", f"STORE_DIR={s.STORE_DIR}", *sets]:
        args += ["--set", pair]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((root / "shards").glob("*.done.json")):
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_at_kill = len(committed_recordings(root))
    assert 0 < done_at_kill < 90, "the run must be stopped midway for this test to mean anything"

    steps.spec_step(s)  # resume
    resumed_store = Store(root)
    clean_store = Store(steps.spec_step(s.replace(STORE_DIR=str(tmp_path / "clean")))["store"])
    resumed, clean = resumed_store.index, clean_store.index
    key = ["recording", "start"]
    assert not resumed.duplicated(key).any()
    columns = ["recording", "label", "split", "start", "s2n", "noise"]
    pd.testing.assert_frame_equal(resumed.sort_values(key)[columns].reset_index(drop=True),
                                  clean.sort_values(key)[columns].reset_index(drop=True))
    assert len(committed_recordings(root)) == 90
    a, b = resumed.sort_values(key), clean.sort_values(key)
    # the same chunks: two processes may time different FFTs (or ducc0's last bit may differ with
    # its reused buffers), which can move a rare 8-bit pixel by one step, never more
    difference = np.abs(resumed_store.images(a["shard"], a["row"]) - clean_store.images(b["shard"], b["row"]))
    assert difference.max() <= 1 / 255 + 1e-6 and (difference > 0).mean() < 1e-3
