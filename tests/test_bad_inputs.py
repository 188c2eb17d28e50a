"""The bad-input matrix: one odd file among good ones, through sort_data, spec and test scoring.

Every case ends in one of two ways: the file is used (and its audio is sane), or it is skipped
with a reason that names it, in the step's summary. Never a traceback, a hang or a silent wrong
result. docs/robustness.md lists the same cases.
"""
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import TINY, make_settings
from utils import steps
from utils.audio import AudioError, load_audio
from utils.dataset import load_recordings
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


def truncated(path, fmt):
    write(path, tone(6.0), format=fmt)
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
