"""A multi-minute soundscape of real InsectSet32 clips at known times, with digital silence between
them: every 5-s row of the soundscape formats must say "sound" exactly where the timeline has
audio. The scorer stands in for a model and answers "is this chunk's image not flat?", so what
is checked is the timing path: decode, resampling, the chunk grid, window pooling, row names.
"""
import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED_DATA
from utils.audio import load_audio, write_audio
from utils.cli import DEFAULTS_FILE
from utils.inference import Member
from utils.pooling import Pooling
from utils.settings import load_settings
from utils.spectrogram import SpecParams
from utils.submission import SubmissionOptions, file_scores, write_submission

AUDIO = SHARED_DATA / "insectset32" / "audio"
pytestmark = pytest.mark.skipif(not AUDIO.is_dir(), reason="../shared/data not present")
RATE = 32000  # InsectSet32's stored rate; the model's (config.py's 44.1 kHz) differs on purpose


class FlatnessScorer:
    """Score = spread of the chunk image: 0 for digital silence (a flat image), > 0 for audio."""

    def predict_on_batch(self, images):
        return images.reshape(len(images), -1).std(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def soundscape(tmp_path_factory):
    """About 3 minutes: silence gaps of awkward lengths and 10-s clips; returns (path, intervals)."""
    clips = sorted(AUDIO.rglob("*.flac"))[::40][:8]
    gaps = [7.3, 12.4, 3.3, 16.6, 0.6, 9.2, 21.7, 4.4, 8.3]
    parts, intervals, t = [], [], 0.0
    for gap, clip in zip(gaps, clips + [None]):
        parts.append(np.zeros(int(round(gap * RATE)), np.float32))
        t += gap
        if clip is None:
            break
        audio = load_audio(clip, RATE)
        audio[np.abs(audio) < 1e-4] = 1e-4  # no digital silence inside a clip
        parts.append(audio)
        intervals.append((t, t + len(audio) / RATE))
        t += len(audio) / RATE
    path = tmp_path_factory.mktemp("timing") / "XC77_SITE_20240101.flac"
    write_audio(path, np.concatenate(parts), RATE)
    return path, intervals, t


def windows_with_audio(intervals, duration, window=5.0):
    n = int(np.ceil(duration / window))
    return [any(a < (w + 1) * window and b > w * window for a, b in intervals) for w in range(n)]


@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_soundscape_rows_have_sound_exactly_where_the_timeline_has_audio(soundscape, tmp_path, overlap):
    path, intervals, duration = soundscape
    assert duration > 150
    params = SpecParams.from_settings(load_settings(DEFAULTS_FILE, None, []))
    member = Member(FlatnessScorer(), {"classes": ["sound"], "spec": params.to_dict()}, 1.0, np.array([0]))
    expected = windows_with_audio(intervals, duration)

    options = SubmissionOptions(format="kaggle2021", threshold=1e-3, window_pooling=Pooling("max"),
                                soundscape_overlap=overlap)
    scored, skipped = file_scores([member], {path.stem: path}, options, workers=2)
    assert not skipped
    out = tmp_path / "kaggle.csv"
    write_submission(scored, ["sound"], options, out)
    rows = pd.read_csv(out)
    assert list(rows["row_id"]) == [f"XC77_SITE_{5 * (w + 1)}" for w in range(len(expected))]
    assert [b == "sound" for b in rows["birds"]] == expected

    options = SubmissionOptions(format="birdclef2018_soundscape", top_n=1, soundscape_overlap=overlap)
    scored, _ = file_scores([member], {path.stem: path}, options)
    out = tmp_path / "2018.csv"
    write_submission(scored, ["sound"], options, out)
    table = pd.read_csv(out, sep=";", header=None, names=["media", "span", "class", "score"])
    spans = [tuple(sum(int(x) * m for x, m in zip(hms.split(":"), (3600, 60, 1))) for hms in span.split("-"))
             for span in table["span"]]
    assert spans[0] == (0, 5) and spans[-1][1] == int(np.ceil(duration))  # the partial window is kept
    assert [start for start, _ in spans] == [5 * w for w in range(len(expected))]
    assert [score > 1e-3 for score in table["score"]] == expected
