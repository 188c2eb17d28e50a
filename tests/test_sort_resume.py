"""sort_data.py with SORT_MODE = "move" never loses a file: killed at any point, the re-run completes."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import utils.dataset
from utils.audio import write_audio
from utils.dataset import RawItem, assign_splits, load_recordings, scan_folders, sort_dataset

REPO = Path(__file__).resolve().parents[1]


def make_raw(root: Path, per_class: int, seconds: float = 0.5) -> dict[str, str]:
    """Distinct little WAVs in three class folders (one name repeated across classes);
    returns content digest -> class."""
    rng = np.random.default_rng(3)
    digests = {}
    for label in ("owl", "wren", "jay"):
        for k in range(per_class):
            path = root / label / f"rec {k}.wav"
            write_audio(path, rng.normal(0, 0.1, int(seconds * 8000)), 8000)
            digests[hashlib.sha1(path.read_bytes()).hexdigest()] = label
    return digests


def dataset_digests(dataset: Path) -> dict[str, str]:
    """Content digest -> label of every sorted recording, checking none is there twice."""
    found = {}
    for record in load_recordings(dataset):
        digest = hashlib.sha1(record.path(dataset).read_bytes()).hexdigest()
        assert digest not in found, f"{record.id} is a second copy"
        found[digest] = record.primary
    return found


def anywhere(raw: Path, dataset: Path) -> set[str]:
    """Digests of the audio in the raw folder or the dataset: midway, a recording's metadata may
    point to a copy not yet made (its source is still in the raw folder)."""
    files = [*raw.rglob("*.wav"), *dataset.rglob("*.wav")]
    return {hashlib.sha1(p.read_bytes()).hexdigest() for p in files if not p.name.startswith(".")}


def assert_everything_moved(raw: Path, dataset: Path, digests: dict[str, str]) -> None:
    assert dataset_digests(dataset) == digests
    assert not [p for p in raw.rglob("*") if p.is_file()], "sources left behind"
    assert not [p for p in dataset.rglob(".*") if p.is_file()], "temporary files left behind"
    files = [p for p in dataset.rglob("*.wav")]
    assert len(files) == len(digests), "an orphan audio file without metadata"


@pytest.mark.parametrize("stage", ["copy", "metadata", "delete"])
def test_move_interrupted_at_each_stage_completes_on_rerun(tmp_path, monkeypatch, stage):
    raw, dataset = tmp_path / "raw", tmp_path / "dataset"
    digests = make_raw(raw, 3)
    calls = {"n": 0}

    def interrupt_third(real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return wrapped

    target = {"copy": (utils.dataset.shutil, "copyfile"), "metadata": (utils.dataset, "atomic_write_json"),
              "delete": (Path, "unlink")}[stage]
    with monkeypatch.context() as patch:
        patch.setattr(*target, interrupt_third(getattr(*target)))
        with pytest.raises(KeyboardInterrupt):
            sort_dataset(assign_splits(scan_folders(raw), 0.3, seed=0), dataset, "move")
    assert anywhere(raw, dataset) == set(digests)
    sort_dataset(assign_splits(scan_folders(raw), 0.3, seed=0), dataset, "move")
    assert_everything_moved(raw, dataset, digests)


def test_killed_move_loses_nothing_and_the_rerun_completes(tmp_path):
    raw, dataset = tmp_path / "raw", tmp_path / "dataset"
    digests = make_raw(raw, 120, seconds=2.0)
    args = [sys.executable, "sort_data.py", "--set", f"RAW_DATA={raw}", "--set", f"DATASET_DIR={dataset}",
            "--set", "SORT_MODE=move", "--set", f"RUNS_DIR={tmp_path / 'runs'}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = dataset / "metadata"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and \
            len(list(metadata.glob("*.json"))) < 30:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    moved = len(list(metadata.glob("*.json")))
    assert 0 < moved < 360, "the run must be stopped midway for this test to mean anything"
    assert anywhere(raw, dataset) == set(digests)  # each file in the raw folder, the dataset or both

    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert_everything_moved(raw, dataset, digests)


def test_an_id_taken_by_an_earlier_run_goes_to_a_new_name(tmp_path):
    for folder in ("first", "second"):
        write_audio(tmp_path / folder / "x" / "rec.wav", np.full(800, 0.1 if folder == "first" else 0.2),
                    8000)
    dataset = tmp_path / "dataset"
    sort_dataset(assign_splits([RawItem(str(tmp_path / "first/x/rec.wav"), "x")], 0, 0), dataset)
    summary = sort_dataset(assign_splits([RawItem(str(tmp_path / "second/x/rec.wav"), "x")], 0, 0),
                           dataset)
    assert summary["sorted"] == 1 and summary["already_done"] == 0
    assert sorted(Path(r.source).parent.parent.name for r in load_recordings(dataset)) == ["first", "second"]
