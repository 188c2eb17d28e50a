import importlib.util
import json
from pathlib import Path

from tests.conftest import make_settings
from utils import steps
from utils.settings import save_settings

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_finished_seed_is_reused_only_if_it_knew_every_setting(tmp_path):
    bench = _bench()
    s = make_settings(tmp_path, "RUN_NAME=r-seed1")
    run = steps.run_dir(s)
    (run / f"test-{s.TEST_SPLIT}").mkdir(parents=True)
    save_settings(s, run / "config.json")
    (run / "train_summary.json").write_text(json.dumps({"epochs": 3}))
    (run / f"test-{s.TEST_SPLIT}" / "summary.json").write_text(json.dumps({"top1_accuracy": 0.5}))
    assert bench.finished_run(s) == ({"epochs": 3}, {"top1_accuracy": 0.5})
    assert bench.finished_run(s.replace(EPOCHS=4)) is None  # other settings: retrained
    # a run saved before SELECT_FROM existed was trained under another default: retrained
    saved = json.loads((run / "config.json").read_text())
    del saved["settings"]["SELECT_FROM"]
    (run / "config.json").write_text(json.dumps(saved))
    assert bench.finished_run(s) is None
