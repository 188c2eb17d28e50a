import numpy as np
import pytest

from tests.conftest import count_fft_calls
from utils.store import Store, StoreError, StoreWriter, committed_recordings


def rows(rec, n, label="a"):
    return [{"recording": rec, "label": label, "split": "train", "start": float(i), "s2n": 0.1,
             "noise": False} for i in range(n)]


def images(n, value):
    return np.full((n, 4, 6), value, np.uint8)


def test_committed_shards_are_read_back_in_order(tmp_path):
    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 4, "width": 6}}, shard_size=3)
    writer.add("r1", images(2, 10), rows("r1", 2))
    writer.add("r2", images(2, 20), rows("r2", 2))   # shard 0 is full: flushed
    writer.add("empty", images(0, 0), [], status="too_short")
    writer.add("r3", images(1, 30), rows("r3", 1))
    store = writer.close()
    assert store.index["recording"].tolist() == ["r1", "r1", "r2", "r2", "r3"]
    assert set(store.recordings) == {"r1", "r2", "empty", "r3"}
    assert store.recordings["empty"]["status"] == "too_short"
    picked = store.images(store.index["shard"].to_numpy()[[4, 0, 2]], store.index["row"].to_numpy()[[4, 0, 2]])
    assert np.allclose(picked[:, 0, 0] * 255, [30, 10, 20])
    assert (tmp_path / "s" / "index.csv").exists()


def test_uncommitted_shard_files_are_removed_and_redone(tmp_path):
    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 4, "width": 6}}, shard_size=100)
    writer.add("r1", images(2, 1), rows("r1", 2))
    writer.flush()
    # a killed run: shard 1 data written, commit marker missing
    np.save(tmp_path / "s" / "shards" / "00001.npy", images(5, 9))
    (tmp_path / "s" / "shards" / ".00002.npy.abc.tmp.npy").write_bytes(b"partial")
    again = StoreWriter(tmp_path / "s", {"spec": {"height": 4, "width": 6}})
    assert set(again.completed) == {"r1"}
    assert sorted(p.name for p in (tmp_path / "s" / "shards").iterdir()) == [
        "00000.csv", "00000.done.json", "00000.npy"]
    again.add("r2", images(1, 2), rows("r2", 1))
    assert len(again.close().index) == 3


def test_other_settings_never_mix_into_a_store(tmp_path):
    StoreWriter(tmp_path / "s", {"spec": {"height": 4}}).close()
    with pytest.raises(StoreError, match="other settings"):
        StoreWriter(tmp_path / "s", {"spec": {"height": 8}})


def test_missing_store_says_what_to_run(tmp_path):
    with pytest.raises(StoreError, match="run spec.py first"):
        Store(tmp_path / "nothing")


def test_long_recordings_span_shards_and_count_only_when_complete(tmp_path):
    settings = {"spec": {"height": 4, "width": 6}}
    writer = StoreWriter(tmp_path / "s", settings, shard_size=2)
    writer.add("long", images(2, 1), rows("long", 2), final=False)   # shard 0 flushed, incomplete
    writer.add("long", images(1, 2), rows("long", 1), final=False)
    writer.flush()                                                    # shard 1, still incomplete
    assert len(Store(tmp_path / "s").index) == 0 and "long" not in committed_recordings(tmp_path / "s")
    # the run dies here; the next run starts the recording again from its first part
    again = StoreWriter(tmp_path / "s", settings, shard_size=2)
    assert "long" not in again.completed
    again.add("long", images(2, 5), rows("long", 2), final=False)
    again.add("long", images(2, 6), rows("long", 2), final=True)
    store = again.close()
    assert len(store.index) == 4 and set(store.index["shard"]) == {2, 3}
    assert store.recordings["long"]["chunks"] == 4
    values = store.images(store.index["shard"], store.index["row"])[:, 0, 0] * 255
    assert np.allclose(values, [5, 5, 6, 6])


def test_a_pinned_choice_is_made_once_for_the_life_of_the_store(tmp_path):
    settings = {"spec": {"height": 4, "width": 6}}
    asked = []

    def choose(value):
        return lambda: asked.append(value) or value
    assert StoreWriter(tmp_path / "s", settings).pinned("fft", choose("scipy")) == "scipy"
    resumed = StoreWriter(tmp_path / "s", settings)  # a later run, maybe elsewhere
    assert resumed.pinned("fft", choose("ducc0")) == "scipy"
    assert resumed.pinned("other", choose(3)) == 3 and resumed.pinned("fft", choose("x")) == "scipy"
    assert asked == ["scipy", 3]


def test_extraction_computes_every_chunk_with_the_stores_pinned_fft(tmp_path, monkeypatch):
    """The FFT library is chosen once per store (the libraries differ by float rounding, which
    can move an 8-bit pixel): a resumed run keeps the first run's choice even where another
    library is faster, and a new store records the fastest."""
    import json

    from utils.audio import write_audio
    from utils.extract import Job, extract_to_store
    from utils.spectrogram import SpecParams
    params = SpecParams(sample_rate=16000, fmin=200.0, fmax=7800.0, n_fft=512, height=32, width=64)
    rng = np.random.default_rng(8)
    write_audio(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, 48000).astype(np.float32), 16000)
    jobs = [Job("a", str(tmp_path / "a.wav"), "x", "train")]
    calls = count_fft_calls(monkeypatch, fastest="scipy")
    (tmp_path / "pinned").mkdir()
    (tmp_path / "pinned" / "pinned.json").write_text(json.dumps({"fft": "ducc0"}))
    extract_to_store(jobs, params, tmp_path / "pinned", workers=1)  # in this process
    assert calls["ducc0"] >= 3 and calls["scipy"] == 0
    extract_to_store(jobs, params, tmp_path / "new", workers=1)
    assert calls["scipy"] >= 3
    assert json.loads((tmp_path / "new" / "pinned.json").read_text()) == {"fft": "scipy"}
