"""The bad-input matrix: one odd file among good ones, through sort_data, spec and test scoring.

Every case ends in one of two ways: the file is used (and its audio is sane), or it is skipped
with a reason that names it, in the step's summary. Never a traceback, a hang or a silent wrong
result. docs/robustness.md lists the same cases.
"""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tests.conftest import TINY, make_settings
from utils import steps
from utils.audio import AudioError, load_audio
from utils.dataset import Recording, load_recordings
from utils.model_io import read_model_meta
from utils.store import Store

RATE = 16000
rng = np.random.default_rng(0)


def tone(seconds=3.0, rate=RATE, freq=2000.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    x = x + 0.01 * rng.standard_normal(len(x))
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def write(path, data, rate=RATE, **kw):
    sf.write(path, data, rate, **kw)


def truncated(path, fmt, seconds=6.0):
    write(path, tone(seconds), format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])


# name -> (file name, writer, expected): "used" or the start of the skip reason
CASES = {
    "pcm_u8": ("u8.wav", lambda p: write(p, tone(), subtype="PCM_U8"), "used"),
    "pcm_16": ("i16.wav", lambda p: write(p, tone(), subtype="PCM_16"), "used"),
    "pcm_24": ("i24.wav", lambda p: write(p, tone(), subtype="PCM_24"), "used"),
    "pcm_32": ("i32.wav", lambda p: write(p, tone(), subtype="PCM_32"), "used"),
    "float": ("f32.wav", lambda p: write(p, tone(), subtype="FLOAT"), "used"),
    "double": ("f64.wav", lambda p: write(p, tone(), subtype="DOUBLE"), "used"),
    "nan_inf": ("naninf.wav", lambda p: write(p, np.where(np.arange(3 * RATE) % 97 == 0, np.nan,
                                                          np.where(np.arange(3 * RATE) % 89 == 0, np.inf,
                                                                   tone())), subtype="FLOAT"), "used"),
    "clipped": ("clipped.wav", lambda p: write(p, np.clip(tone() * 20, -1, 1)), "used"),
    "stereo": ("stereo.wav", lambda p: write(p, tone(channels=2)), "used"),
    "six_channels": ("six.wav", lambda p: write(p, tone(channels=6)), "used"),
    "8_khz": ("low_rate.wav", lambda p: write(p, tone(rate=8000, freq=1500), rate=8000), "used"),
    "384_khz": ("ultrasonic.wav", lambda p: write(p, tone(1.5, rate=384000), rate=384000), "used"),
    "flac": ("ok.flac", lambda p: write(p, tone()), "used"),
    "ogg": ("ok.ogg", lambda p: write(p, tone()), "used"),
    "spaces_and_unicode": ("Grillon champêtre № 1 — ok.wav", lambda p: write(p, tone()), "used"),
    "long_name": ("x" * 200 + ".wav", lambda p: write(p, tone()), "used"),
    "shorter_than_a_chunk": ("short.wav", lambda p: write(p, tone(0.4)), "shorter than MIN_CHUNK_LENGTH"),
    "silent": ("silent.wav", lambda p: write(p, np.zeros(3 * RATE)), "used"),  # stored as noise chunks
    "truncated_wav": ("cut.wav", lambda p: truncated(p, "WAV"), "used"),  # the readable part is used
    "truncated_flac": ("cut.flac", lambda p: truncated(p, "FLAC"), "unreadable audio"),
    "mp3": ("ok.mp3", lambda p: write(p, tone(), format="MP3"), "used"),
    "truncated_mp3": ("cut.mp3", lambda p: truncated(p, "MP3"), "used"),  # frames before the cut
    "truncated_ogg": ("cut.ogg", lambda p: truncated(p, "OGG", 12.0), "used"),
    "zero_bytes": ("empty.wav", lambda p: p.write_bytes(b""), "unreadable audio"),
    "header_only": ("header.wav", lambda p: write(p, np.zeros(0)), "no audio samples"),
    "not_audio": ("text.mp3", lambda p: p.write_text("this is a text file, not an mp3\n" * 50),
                  "unreadable audio"),
    "random_bytes_ogg": ("noise.ogg", lambda p: p.write_bytes(rng.bytes(5000)), "unreadable audio"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_odd_file_is_used_or_skipped_with_its_reason(tmp_path, case):
    name, make, expected = CASES[case]
    raw = tmp_path / "raw"
    for label in ("alpha", "beta"):
        for k in range(2):
            (raw / label).mkdir(parents=True, exist_ok=True)
            write(raw / label / f"good{k}.wav", tone(freq=1500 if label == "alpha" else 3500))
    odd = raw / "alpha" / name
    make(odd)
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={raw}", "VAL_FRACTION=0.0")
    sorted_ = steps.sort_step(s)
    problems = {p["source"]: p["reason"] for p in sorted_["problems"]}
    spec = steps.spec_step(s)
    store = Store(spec["store"])
    spec_problems = {r: v for r, v in store.recordings.items() if v["status"] != "ok"}
    if expected == "used":
        assert not problems and not spec_problems, (problems, spec_problems)
        rec = next(r for r in load_recordings(s.DATASET_DIR) if r.source == str(odd))
        assert (store.index["recording"] == rec.id).any()
        images = store.images(*store.index.loc[store.index["recording"] == rec.id, ["shard", "row"]]
                              .to_numpy().T)
        assert np.isfinite(images.astype(float)).all()
        audio = load_audio(rec.path(s.DATASET_DIR), RATE)
        assert audio.dtype == np.float32 and np.isfinite(audio).all() and len(audio) > 0
    else:
        reason = problems.get(str(odd)) or next(
            (v["detail"] for v in spec_problems.values()), "")
        assert reason.startswith(expected), (problems, spec_problems)
        assert sorted_["sorted"] + len(problems) == 5  # the good files are all sorted
    if expected not in ("used", "shorter than MIN_CHUNK_LENGTH"):
        with pytest.raises(AudioError) as error:
            load_audio(odd, RATE)
        assert odd.name in str(error.value)  # the one-line error names the file


# at test time and in submissions a short file is padded, not skipped; the rest as in spec.py
SCORING = {case: (name, make, "used" if expected == "shorter than MIN_CHUNK_LENGTH" else expected)
           for case, (name, make, expected) in CASES.items()}
# Decoding is the same on every Keras backend; what reaches the model differs from a good file's
# chunks only in these cases (padded, partial, sanitised or all-zero audio), so only these repeat
# on JAX.
MODEL_SEES_A_DIFFERENCE = {"shorter_than_a_chunk", "384_khz", "nan_inf", "silent"}
SCORING_CASES = [case if case in MODEL_SEES_A_DIFFERENCE else pytest.param(case, marks=pytest.mark.one_backend)
                 for case in sorted(SCORING)]


def odd_folder(folder, case, rate):
    """The odd file beside a good one; returns (odd path, good path)."""
    name, make, _ = SCORING[case]
    folder.mkdir(parents=True)
    good = folder / "good.wav"
    write(good, tone(rate=rate), rate=rate)
    odd = folder / name
    make(odd)
    return odd, good


@pytest.mark.backend
@pytest.mark.parametrize("case", SCORING_CASES)
def test_odd_file_in_the_test_split_is_scored_or_skipped_with_its_reason(trained, tmp_path, case):
    odd, good = odd_folder(tmp_path / "audio", case, trained.SAMPLE_RATE)
    label = read_model_meta(steps.run_dir(trained) / "best.keras")["classes"][0]
    recordings = [Recording(p.stem, label, [], "test", p.name, str(p), 0.0, 0, 1) for p in (odd, good)]
    summary = steps.test_step(trained.replace(DATASET_DIR=str(odd.parent)), out=tmp_path / "report",
                              recordings=recordings)
    table = pd.read_csv(tmp_path / "report" / "per_recording.csv", keep_default_na=False)
    row = table.set_index("recording").loc[odd.stem]
    expected = SCORING[case][2]
    if expected == "used":
        assert summary["scored"] == 2 and row["error"] == "" and row["chunks"] > 0
        assert 0 <= row["top1_score"] <= 1
    else:
        assert summary["scored"] == 1 and summary["errors"] == 1
        assert row["error"].startswith(expected), row["error"]
        assert summary["skipped"] == [{"recording": odd.stem, "reason": row["error"]}]


@pytest.mark.backend
@pytest.mark.parametrize("case", SCORING_CASES)
def test_odd_file_in_a_submission_is_scored_or_skipped_with_its_reason(trained, tmp_path, case):
    odd, good = odd_folder(tmp_path / "audio", case, trained.SAMPLE_RATE)
    out = tmp_path / "detections.csv"
    result = steps.submission_step(trained.replace(
        SUBMISSION_AUDIO=str(odd.parent), SUBMISSION_FILE=str(out), SUBMISSION_FORMAT="detections_csv",
        DETECTION_MIN_SCORE=0.0))
    written = pd.read_csv(out, keep_default_na=False)
    expected = SCORING[case][2]
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    if expected == "used":
        assert result["recordings"] == 2 and not result["skipped"]
        scores = written.loc[written["file"] == odd.stem, "score"]
        assert len(scores) > 0 and np.isfinite(scores).all()
    else:
        assert result["recordings"] == 1 and odd.stem not in set(written["file"])
        assert [s["file"] for s in result["skipped"]] == [str(odd)]
        assert result["skipped"][0]["reason"].startswith(expected)
        assert summary["skipped"] == result["skipped"]


def test_disk_full_midway_gives_one_line_and_keeps_earlier_shards(tmp_path, tiny_raw, monkeypatch):
    import errno

    from click.testing import CliRunner

    import utils.store
    from tests.test_pipeline import script

    overrides = [*TINY, f"RAW_DATA={tiny_raw}", "STORE_SHARD_SIZE=5"]
    s = make_settings(tmp_path, *overrides)
    steps.sort_step(s)
    real_save, calls = np.save, {"n": 0}

    def save_until_full(fh, array):
        calls["n"] += 1
        if calls["n"] == 3:  # the third shard finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(fh.name))
        real_save(fh, array)

    monkeypatch.setattr(utils.store.np, "save", save_until_full)
    args = ["--set", f"DATASET_DIR={s.DATASET_DIR}", "--set", f"STORE_DIR={s.STORE_DIR}",
            "--set", f"RUNS_DIR={s.RUNS_DIR}", *[a for pair in overrides for a in ("--set", pair)]]
    result = CliRunner().invoke(script("spec").main, args)
    assert result.exit_code == 1 and "no space left on the device writing" in result.output
    assert "Traceback" not in result.output
    shards = steps.store_root(s) / "shards"
    done = sorted(shards.glob("*.done.json"))
    assert len(done) == 2 and not list(shards.glob("*.tmp*"))  # two complete shards, no debris
    monkeypatch.setattr(utils.store.np, "save", real_save)  # space freed: the re-run completes
    again = CliRunner().invoke(script("spec").main, args)
    assert again.exit_code == 0, again.output
    store = Store(steps.store_root(s))
    assert len(store.recordings) == 18 and store.index.duplicated(["recording", "start"]).sum() == 0


def test_files_with_the_same_name_in_a_submission_folder_keep_distinct_ids(tmp_path):
    for folder in ("site A", "site B"):
        (tmp_path / "audio" / folder).mkdir(parents=True)
        write(tmp_path / "audio" / folder / "dawn.wav", tone(1.0))
    write(tmp_path / "audio" / "site B" / "Dusk.wav", tone(1.0))
    write(tmp_path / "audio" / "site A" / "dusk.WAV", tone(1.0))
    s = make_settings(tmp_path, f"SUBMISSION_AUDIO={tmp_path / 'audio'}")
    files = steps.submission_files(s)
    assert sorted(files) == ["site A/dawn", "site A/dusk", "site B/Dusk", "site B/dawn"]
    assert all(p.is_file() for p in files.values())
    write(tmp_path / "solo.wav", tone(1.0))  # unique names stay plain
    (tmp_path / "audio").rename(tmp_path / "old")
    (tmp_path / "audio").mkdir()
    (tmp_path / "solo.wav").rename(tmp_path / "audio" / "solo.wav")
    assert list(steps.submission_files(s)) == ["solo"]
