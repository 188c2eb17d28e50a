"""What spec.py leaves for people: PNG copies of chunks and a table of skipped files."""
import json

import cv2
import numpy as np
from click.testing import CliRunner

from tests.conftest import TINY, make_settings
from tests.test_pipeline import script
from utils import steps
from utils.store import Store


def test_png_export_mirrors_the_store(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "EXPORT_PNG=True")
    steps.sort_step(s)
    summary = steps.spec_step(s)
    store = Store(summary["store"])
    pngs = sorted((store.root / "png").rglob("*.png"))
    assert summary["png"]["written"] == len(pngs) == len(store.index)
    assert {p.relative_to(store.root / "png").parts[0] for p in pngs} <= {"train", "val", "noise"}
    row = store.index.iloc[3]
    name = f"{row.recording}_{row.start:09.3f}s.png"
    image = cv2.imread(str(next(p for p in pngs if p.name == name)), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(image, np.rint(store.images([row.shard], [row.row])[0] * 255))
    assert steps.spec_step(s)["png"]["written"] == 0  # already there


def test_skipped_files_are_tabled_logged_and_do_not_stop_the_run(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}")
    steps.sort_step(s)
    victim = next((tmp_path / "dataset" / "train").rglob("*.wav"))
    victim.write_bytes(b"RIFF....WAVEfmt garbage")
    args = [arg for pair in [f"DATASET_DIR={s.DATASET_DIR}", f"STORE_DIR={s.STORE_DIR}",
                             f"RAW_DATA={tiny_raw}", *TINY] for arg in ("--set", pair)]
    result = CliRunner().invoke(script("spec").main, args)
    assert result.exit_code == 0, result.output
    assert "Skipped 1 files" in result.output and "error: 1" in result.output
    assert victim.stem in result.output
    root = steps.store_root(s)
    assert victim.stem in (root / "problems.csv").read_text()
    assert victim.stem in (root / "spec.log").read_text()
    assert json.loads((root / "summary.json").read_text())["recordings"] == 18


def test_training_seeds_share_a_store_unless_the_seed_chooses_chunks(tmp_path):
    s = make_settings(tmp_path, *TINY)
    assert steps.store_root(s) == steps.store_root(s.replace(SEED=2))
    for change in ({"MAX_CHUNKS_PER_FILE": 3}, {"NOISE_FRACTION": 0.5}, {"MAX_CHUNKS_PER_CLASS": 9}):
        assert steps.store_root(s.replace(**change)) != steps.store_root(s.replace(SEED=2, **change))
