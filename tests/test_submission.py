"""Step 5 in every format, on a soundscape built from known clips, with a class map."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from utils import formats as fm
from utils import steps
from utils.dataset import load_recordings
from utils.labelmap import load_class_list, load_class_map, to_codes
from utils.model_io import read_model_meta

pytestmark = pytest.mark.backend  # also run on JAX by `make test`


@pytest.fixture(scope="module")
def soundscape(trained, tmp_path_factory):
    """A 23-s file of validation clips one after another (a partial last window of 3 s)."""
    folder = tmp_path_factory.mktemp("soundscapes")
    clips = [sf.read(r.path(trained.DATASET_DIR), dtype="float32")[0]
             for r in load_recordings(trained.DATASET_DIR, "val")]
    audio = np.concatenate(clips * 3)[:23 * trained.SAMPLE_RATE]
    sf.write(folder / "XC1_SITE_20240101.wav", audio, trained.SAMPLE_RATE)
    return folder


def run(trained, soundscape, tmp_path, fmt, **more):
    s = trained.replace(SUBMISSION_AUDIO=str(soundscape), SUBMISSION_FORMAT=fmt,
                        SUBMISSION_FILE=str(tmp_path / f"out_{fmt}"), **more)
    return steps.submission_step(s)


def classes_of(trained):
    return read_model_meta(steps.run_dir(trained) / "best.keras")["classes"]


@pytest.mark.parametrize("fmt", ["birdclef2018_soundscape", "kaggle2021", "detections_csv"])
def test_soundscape_formats_have_one_row_group_per_5s_window(trained, soundscape, tmp_path, fmt):
    result = run(trained, soundscape, tmp_path, fmt, DETECTION_MIN_SCORE=0.0, CALL_THRESHOLD=0.0)
    text = (tmp_path / f"out_{fmt}").read_text()
    classes = classes_of(trained)
    if fmt == "birdclef2018_soundscape":
        assert fm.check_birdclef2018_soundscape(text, classes, {"XC1_SITE_20240101": 23.0}) == []
        spans = sorted({line.split(";")[1] for line in text.splitlines()})
        assert spans[-1] == "00:00:20-00:00:23" and len(spans) == 5
    elif fmt == "kaggle2021":
        rows = pd.read_csv(tmp_path / f"out_{fmt}")
        assert rows["row_id"].tolist() == [f"XC1_SITE_{e}" for e in (5, 10, 15, 20, 25)]
        assert rows["birds"].str.split().map(len).eq(len(classes)).all()  # threshold 0: every class
    else:
        table = pd.read_csv(tmp_path / f"out_{fmt}")
        assert sorted(set(zip(table["start"], table["end"]))) == [
            (0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
        assert len(table) == 5 * len(classes)
    assert result["recordings"] == 1 and result["skipped"] == []


def test_monophone_formats_and_per_file_formats(trained, soundscape, tmp_path):
    classes = classes_of(trained)
    run(trained, soundscape, tmp_path, "birdclef2018_mono")
    text = (tmp_path / "out_birdclef2018_mono").read_text()
    assert fm.check_birdclef2018_mono(text, classes) == [] and len(text.splitlines()) == len(classes)
    run(trained, soundscape, tmp_path, "raven", DETECTION_MIN_SCORE=0.0)
    table = (tmp_path / "out_raven" / "XC1_SITE_20240101.Table.1.selections.txt").read_text()
    assert fm.check_raven_table(table, classes) == [] and "\t16000" not in table
    run(trained, soundscape, tmp_path, "audacity", DETECTION_MIN_SCORE=0.0)
    labels = (tmp_path / "out_audacity" / "XC1_SITE_20240101.txt").read_text()
    assert fm.check_audacity_labels(labels, classes) == [] and len(labels.splitlines()) == 5 * len(classes)


def test_frequency_rolls_reach_submissions(trained, soundscape, tmp_path):
    def scores(**more):
        run(trained, soundscape, tmp_path, "detections_csv", DETECTION_MIN_SCORE=0.0, **more)
        return pd.read_csv(tmp_path / "out_detections_csv")

    plain = scores()
    rolled = scores(TEST_TIME_ROLLS=[0.25])
    assert len(rolled) == len(plain) and not np.allclose(rolled.select_dtypes("number"),
                                                         plain.select_dtypes("number"))
    assert scores(TEST_TIME_ROLLS=[0.25 / trained.IMAGE_HEIGHT]).equals(plain)  # rounds to no roll


def test_kaggle_probabilities_with_a_class_map_and_the_challenge_list(trained, soundscape, tmp_path):
    classes = classes_of(trained)
    codes = [f"code{i}" for i in range(len(classes))]
    pd.DataFrame({"scientific_name": classes, "primary_label": codes}).to_csv(tmp_path / "taxonomy.csv", index=False)
    sample = pd.DataFrame(columns=["row_id", "zzz", *reversed(codes)])
    sample.to_csv(tmp_path / "sample_submission.csv", index=False)
    result = run(trained, soundscape, tmp_path, "kaggle_probabilities", CLASS_MAP=str(tmp_path / "taxonomy.csv"),
                 CHALLENGE_CLASSES=str(tmp_path / "sample_submission.csv"), WINDOW_POOLING="mean")
    assert result["missing_classes"] == ["zzz"]
    table = pd.read_csv(tmp_path / "out_kaggle_probabilities")
    assert list(table.columns) == ["row_id", "zzz", *reversed(codes)] and (table["zzz"] == 0).all()
    assert table["row_id"].tolist()[-1] == "XC1_SITE_20240101_25"
    assert np.allclose(table[codes].sum(axis=1), 1.0, atol=1e-4)  # mean of softmax rows; every class kept

    with pytest.raises(ValueError, match="CHALLENGE_CLASSES"):
        run(trained, soundscape, tmp_path, "kaggle_probabilities")


def test_class_tables():
    import io

    mapping = load_class_map(io.StringIO("primary_label,scientific_name,common_name\n"
                                         "amerob,Turdus migratorius,American Robin\n"))
    assert to_codes(["Turdus migratorius", "American Robin", "amerob"], mapping) == ["amerob"] * 3
    with pytest.raises(ValueError, match="not in CLASS_MAP"):
        to_codes(["Parus major"], mapping)
    assert load_class_list(io.StringIO("row_id,b,a\n")) == ["b", "a"]
    assert load_class_list(io.StringIO("primary_label,x\nq,1\np,2\n")) == ["q", "p"]


def test_long_files_scored_in_segments_equal_whole_files(trained, soundscape, tmp_path):
    from utils.inference import score_files
    from utils.model_io import load_model
    from utils.spectrogram import SpecParams

    model, meta = load_model(steps.run_dir(trained) / "best.keras")
    params = SpecParams.from_dict(meta["spec"])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot audio")
    paths = [soundscape / "XC1_SITE_20240101.wav", broken, load_recordings(trained.DATASET_DIR)[0].path(
        trained.DATASET_DIR)]
    whole = list(score_files(model, params, paths, batch_size=16))
    pieces = list(score_files(model, params, paths, batch_size=16, segment_seconds=4.0))
    assert [r.path for r in pieces] == [str(p) for p in paths]  # in order, errors included
    assert pieces[1].scores is None and pieces[1].error and whole[1].scores is None
    for a, b in zip(whole[::2], pieces[::2]):
        assert np.allclose(a.starts, b.starts) and np.allclose(a.scores, b.scores, atol=1e-5)
    assert len(pieces[0].starts) > 20  # the 23-s file really was cut into several segments


def test_per_file_formats_resume_where_they_stopped(trained, soundscape, tmp_path):
    import shutil

    folder = tmp_path / "audio"
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(soundscape / "XC1_SITE_20240101.wav", folder / f"{name}.wav")
    first = run(trained, folder, tmp_path, "audacity")
    assert first["recordings"] == 3 and first["already_done"] == 0
    out = tmp_path / "out_audacity"
    kept = (out / "a.txt").stat().st_mtime_ns
    (out / "b.txt").unlink()  # as if the run had been killed before writing b
    again = run(trained, folder, tmp_path, "audacity")
    assert again["recordings"] == 1 and again["already_done"] == 2 and again["written"] == [str(out / "b.txt")]
    assert (out / "a.txt").stat().st_mtime_ns == kept and (out / "b.txt").exists()


# resuming a folder of files, not one file, is the same on every backend: TensorFlow only
@pytest.mark.parametrize("fmt", ["kaggle2021", pytest.param("raven", marks=pytest.mark.one_backend)])
def test_killed_submission_resumes_from_the_files_it_had_scored(trained, soundscape, tmp_path,
                                                                monkeypatch, fmt):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import utils.inference

    folder = tmp_path / "audio"
    folder.mkdir()
    for k in range(40):
        shutil.copy(soundscape / "XC1_SITE_20240101.wav", folder / f"XC{k}_SITE_20240101.wav")
    out = tmp_path / ("killed.csv" if fmt == "kaggle2021" else "killed")
    cache = out.parent / f".{out.name}.scores"
    args = [sys.executable, "-m", "submission", "--config", str(steps.run_dir(trained) / "config.json"),
            "--audio", str(folder), "--out", str(out), "--format", fmt, "--set", "SPEC_WORKERS=1"]
    process = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and len(list(cache.glob("m*.npz"))) < 5:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    cached = len(list(cache.glob("m*.npz")))  # not counting a half-written ".m*.tmp.npz"
    assert 5 <= cached < 40, "the run must be stopped midway for this test to mean anything"
    if fmt == "kaggle2021":
        assert not out.exists()  # never a partial submission
    else:
        assert len(list(out.glob("*.txt"))) <= cached

    scored = []
    real = utils.inference.score_files

    def counting(model, params, paths, *args, **kwargs):
        scored.extend(paths)
        return real(model, params, paths, *args, **kwargs)

    monkeypatch.setattr(utils.inference, "score_files", counting)
    settings = trained.replace(SUBMISSION_AUDIO=str(folder), SUBMISSION_FORMAT=fmt, SPEC_WORKERS=1)
    resumed = steps.submission_step(settings.replace(SUBMISSION_FILE=str(out)))
    assert len(scored) == 40 - cached and resumed["recordings"] == 40 - resumed["already_done"]
    assert not cache.exists()  # removed once the submission is written
    straight = tmp_path / ("straight.csv" if fmt == "kaggle2021" else "straight")
    steps.submission_step(settings.replace(SUBMISSION_FILE=str(straight)))
    if fmt == "kaggle2021":
        assert rows_of_equal_tables(out, straight, ",") == 40 * 5  # a row per 5-s window
    else:
        names = sorted(p.name for p in straight.glob("*.txt"))
        assert len(names) == 40 and sorted(p.name for p in out.glob("*.txt")) == names
        assert sum(rows_of_equal_tables(out / n, straight / n, "\t") for n in names) > 0


def rows_of_equal_tables(resumed, straight, sep):
    """Asserts the two tables equal, scores to float32 rounding, and gives their row count. A
    model batch spans files, so which files are left to score changes a file's batch, and on
    some backends (XLA on CPU) the last bits of its scores with it."""
    a, b = (pd.read_csv(f, sep=sep) for f in (resumed, straight))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=0, atol=1e-5)
    return len(a)
