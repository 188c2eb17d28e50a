import numpy as np
import pytest

from tests.conftest import TINY, make_settings
from utils import steps
from utils.extract import Selection, choose_chunks, class_quotas
from utils.fileio import read_json
from utils.spectrogram import SpecParams, split_chunks
from utils.store import Store


def test_per_file_cap_and_noise_fraction():
    s2n = np.array([0.1, 0.0, 0.2, 0.3, 0.0, 0.4, 0.5, 0.0])
    keep, noise = choose_chunks("rec", s2n, Selection(0.05, noise_fraction=0.0, max_per_file=3))
    assert len(keep) == 3 and not noise.any() and (s2n[keep] >= 0.05).all()
    assert keep.tolist() == sorted(keep.tolist())
    keep, noise = choose_chunks("rec", s2n, Selection(0.05, noise_fraction=1.0))
    assert keep.tolist() == list(range(8)) and noise.tolist() == (s2n < 0.05).tolist()



def test_a_share_of_each_file_stays_signal_whatever_the_gate_says():
    steady = np.zeros(10)  # a song that never stops: the gate finds nothing anywhere
    keep, noise = choose_chunks("rec", steady, Selection(0.05, min_signal_share=0.5))
    assert keep.tolist() == list(range(10)) and noise.tolist() == [False] * 5 + [True] * 5
    assert choose_chunks("rec", steady, Selection(0.05))[1].all()  # share 0: the gate decides
    # the best-scoring noise chunks are promoted, only as many as the share needs
    s2n = np.array([0.2, 0.01, 0.0, 0.03, 0.02, 0.0, 0.0])
    noise = choose_chunks("rec", s2n, Selection(0.05, min_signal_share=0.5))[1]
    assert np.flatnonzero(~noise).tolist() == [0, 1, 3, 4]  # 0.2 by the gate, then 0.03, 0.02, 0.01
    assert not choose_chunks("rec", s2n, Selection(0.05, min_signal_share=1.0))[1].any()
    busy = np.array([0.2, 0.3, 0.0, 0.4])  # already half signal: the gate's verdict stands
    assert choose_chunks("rec", busy, Selection(0.05, min_signal_share=0.5))[1].tolist() == [False, False, True, False]

def test_choice_depends_on_recording_and_seed_only():
    s2n = np.linspace(0.1, 1, 50)
    sel = Selection(0.0, max_per_file=10, seed=7)
    first = choose_chunks("a", s2n, sel)[0]
    assert (choose_chunks("a", s2n, sel)[0] == first).all()  # same in any process or order
    assert not (choose_chunks("b", s2n, sel)[0] == first).all()
    assert not (choose_chunks("a", s2n, Selection(0.0, max_per_file=10, seed=8))[0] == first).all()


@pytest.mark.parametrize("counts, cap, expected", [
    ({"a": 10, "b": 10, "c": 10}, 12, {"a": 4, "b": 4, "c": 4}),
    ({"a": 1, "b": 10, "c": 10}, 12, {"a": 1, "b": 5, "c": 6}),   # short file's share goes on
    ({"a": 2, "b": 3}, 100, {"a": 2, "b": 3}),
    ({"a": 5, "b": 5, "c": 5}, 2, {"a": 1, "b": 1, "c": 1}),      # every recording keeps one
])
def test_class_cap_is_spread_over_recordings(counts, cap, expected):
    assert class_quotas(counts, cap) == expected


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.49, 7.0])
def test_chunk_count_matches_split(seconds):
    p = SpecParams(sample_rate=8000, fmin=100.0, fmax=3900.0, n_fft=256, height=16, width=32,
                   chunk_overlap=0.25, min_chunk_length=0.5)
    chunks, _ = split_chunks(np.ones(int(round(seconds * 8000)), np.float32), p)
    assert p.chunk_count(seconds) == len(chunks)


def test_class_cap_in_the_store(tmp_path, tiny_raw):
    s = make_settings(tmp_path, *TINY, f"RAW_DATA={tiny_raw}", "MAX_CHUNKS_PER_CLASS=10",
                      "NOISE_FRACTION=0.0")
    steps.sort_step(s)
    index = Store(steps.spec_step(s)["store"]).index
    train = index[index["split"] == "train"]
    assert (train.groupby("label").size() <= 10).all()
    assert train.groupby("label")["recording"].nunique().min() == 5  # all 5 train recordings kept
    assert not index["noise"].any()
    val = index[index["split"] == "val"]
    assert val.groupby("recording").size().min() > 3  # validation chunks are not capped


def test_spec_reports_recordings_the_gate_took_most_chunks_from(tmp_path, tiny_raw):
    from click.testing import CliRunner

    from tests.test_pipeline import script

    overrides = [*TINY, f"RAW_DATA={tiny_raw}", f"DATASET_DIR={tmp_path / 'dataset'}",
                 f"STORE_DIR={tmp_path / 'store'}", f"RUNS_DIR={tmp_path / 'runs'}"]
    s = make_settings(tmp_path, *overrides)
    steps.sort_step(s)
    args = [a for pair in overrides for a in ("--set", pair)]
    quiet = CliRunner().invoke(script("spec").main, args)
    assert quiet.exit_code == 0, quiet.output
    assert "signal gate" not in quiet.output  # calls in noise: the gate keeps most chunks
    # A threshold no chunk reaches makes every chunk noise: every class is reported
    strict = CliRunner().invoke(script("spec").main, [*args, "--set", "SIGNAL_THRESHOLD=1.0"])
    assert strict.exit_code == 0, strict.output
    assert "The signal gate marked most chunks of 18 recordings as noise (" in strict.output
    summary = read_json(steps.store_root(s.replace(SIGNAL_THRESHOLD=1.0)) / "summary.json")
    assert len(summary["mostly_noise"]) == 3  # classes
    assert [set(shares.values()) for shares in summary["mostly_noise"].values()] == [{1.0}] * 3
    # MIN_SIGNAL_SHARE (0.5 by default) keeps half of each recording's chunks as signal all the same
    index = Store(steps.store_root(s.replace(SIGNAL_THRESHOLD=1.0))).index
    assert index.groupby("recording")["noise"].mean().max() <= 0.5 and index["noise"].any()


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_signal_share_outside_0_1_is_refused(tmp_path, share):
    with pytest.raises(ValueError, match="MIN_SIGNAL_SHARE must be between 0 and 1"):
        steps.store_root(make_settings(tmp_path, f"MIN_SIGNAL_SHARE={share}"))
