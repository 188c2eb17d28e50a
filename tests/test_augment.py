import threading

import numpy as np
import pytest

from utils.augment import AUGMENTATIONS, Augmenter
from utils.spectrogram import SpecParams, row_frequencies

pytestmark = pytest.mark.backend  # also run on JAX by `make test`


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 48, 1)).astype("float32")
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 16)]
    noise = (rng.random((5, 32, 48, 1)) * 0.5).astype("float32")
    return x, y, noise


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_each_augmentation_changes_only_chosen_samples(batch, name):
    x, y, noise = batch
    row_hz = np.linspace(16000, 500, x.shape[1])
    augmenter = Augmenter({name: 0.3}, probability=0.5, max_count=1, seed=3, row_hz=row_hz)
    chosen = augmenter.choose(len(x))[:, 0]
    augmenter = Augmenter({name: 0.3}, probability=0.5, max_count=1, seed=3, row_hz=row_hz)  # same draws
    xa, ya = augmenter(x, y, noise, same_class=np.roll(x, 1, axis=0))
    changed = np.abs(xa - x).reshape(len(x), -1).max(axis=1) > 1e-6
    assert xa.shape == x.shape and xa.dtype == np.float32
    assert xa.min() >= 0 and xa.max() <= 1 + 1e-6
    assert 0 < chosen.sum() < len(x)
    assert not changed[~chosen].any()  # untouched samples stay exactly as they were
    assert changed[chosen].mean() > 0.5
    assert np.allclose(ya.sum(axis=1), 1)
    if name != "mixup":
        assert np.array_equal(ya, y)


def test_masks_blank_a_band(batch):
    x, y, _ = batch
    xa, _ = Augmenter({"time_mask": 0.5}, probability=1.0, seed=0)(np.ones_like(x), y)
    blank_columns = (xa[..., 0] == 0).all(axis=1).sum(axis=1)
    assert (blank_columns <= 24).all() and blank_columns.max() > 0
    assert ((xa == 0) | (xa == 1)).all()


def test_same_seed_same_batch(batch):
    x, y, noise = batch
    settings = {"roll_v": 0.2, "gaussian": 0.05, "mixup": 0.4, "crop": 0.1}
    first = Augmenter(settings, 0.7, 2, seed=9)(x, y, noise)
    second = Augmenter(settings, 0.7, 2, seed=9)(x, y, noise)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("spec_type", ["linear", "mel"])
def test_pitch_moves_a_tone_to_its_frequency_times_the_factor(spec_type):
    params = SpecParams(spec_type=spec_type, height=64, width=16, fmin=500.0, fmax=15000.0)
    hz = row_frequencies(params)
    assert hz[0] > hz[-1] and len(hz) == 64  # images keep high frequencies on top
    x = np.zeros((2, 64, 16, 1), np.float32)
    source = 40
    x[:, source] = 1.0
    augmenter = Augmenter({"pitch": 0.2}, probability=1.0, row_hz=hz)
    for factor in (0.85, 1.0, 1.15):
        moved = np.asarray(augmenter._pitch(x, factor))
        profile = moved[0, :, 0, 0]
        centre = (profile * np.arange(64)).sum() / profile.sum()  # interpolated row of the tone
        expected = np.interp(hz[source] * factor, hz[::-1], np.arange(64)[::-1])
        assert abs(centre - expected) < 0.5
        assert np.allclose(moved[..., 1:, :], moved[..., :1, :])  # every column alike
    lowered = np.asarray(augmenter._pitch(np.ones_like(x), 0.8))[0, :, 0, 0]
    assert (lowered[:5] == 0).all() and (lowered[-5:] == 1).all()  # nothing comes from above the band


@pytest.mark.parametrize("factor, bin_after", [(0.5, 2), (1.0, 4), (1.25, 5)])
def test_stretch_changes_the_tempo_and_leaves_the_rows_alone(factor, bin_after):
    columns = np.arange(64)
    pulses = 0.5 + 0.5 * np.cos(2 * np.pi * columns / 16)   # 4 whole pulses: a wrap joins smoothly
    gains = np.linspace(0.2, 1.0, 8)                        # each row its own level
    x = np.broadcast_to(gains[None, :, None, None] * pulses[None, None, :, None], (2, 8, 64, 1))
    augmenter = Augmenter({"stretch": 0.5}, probability=1.0, seed=1)
    stretched = np.asarray(augmenter._stretch(x.astype("float32"), factor))
    per_row = stretched[0, :, :, 0] / gains[:, None]
    assert np.allclose(per_row, per_row[:1], atol=1e-5)     # every row moved alike, levels kept
    spectrum = np.abs(np.fft.rfft(per_row[0] - per_row[0].mean()))
    assert spectrum.argmax() == bin_after                   # pulses per chunk: 4 * factor
    if factor == 1.0:
        assert np.allclose(stretched, x, atol=1e-6)


def test_pitch_needs_row_frequencies_and_a_strength_below_one():
    with pytest.raises(ValueError, match="row_hz"):
        Augmenter({"pitch": 0.1})
    with pytest.raises(ValueError, match="strength in"):
        Augmenter({"pitch": 1.0}, row_hz=np.linspace(1000, 100, 8))


def test_count_limits_augmentations_per_sample():
    chosen = Augmenter({k: 0.1 for k in AUGMENTATIONS}, probability=1.0, max_count=2, seed=0,
                       row_hz=np.linspace(1000, 100, 8)).choose(200)
    assert chosen.sum(axis=1).max() == 2 and chosen.sum(axis=1).min() == 1


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmenter({"rotate": 0.1})


def test_training_batches_mix_in_noise_chunks(tmp_path):
    from utils.batches import ChunkBatches
    from utils.store import StoreWriter

    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 8, "width": 12}}, shard_size=100)
    rows = [{"recording": "r", "label": "a", "split": "train", "start": float(i), "s2n": 0.1,
             "noise": i >= 4} for i in range(8)]
    images = np.zeros((8, 8, 12), np.uint8)
    images[4:] = 200  # the noise chunks are bright; the signal chunks black
    writer.add("r", images, rows)
    store = writer.close()
    signal, noise = store.index[~store.index["noise"]], store.index[store.index["noise"]]
    targets = np.ones((4, 1), np.float32)
    plain = ChunkBatches(store, signal["shard"], signal["row"], targets, 4)
    assert plain[0][0].max() == 0
    mixed = ChunkBatches(store, signal["shard"], signal["row"], targets, 4, shuffle=True,
                         augmenter=Augmenter({"noise": 0.5}, probability=1.0, seed=0),
                         noise=(noise["shard"].to_numpy(), noise["row"].to_numpy()))
    x, y = mixed[0]
    assert x.shape == (4, 8, 12, 1) and (x.reshape(4, -1).max(axis=1) > 0).all() and x.max() <= 1


def test_same_class_partners_come_from_the_class_and_another_recording():
    from utils.batches import SameClassPartners

    classes = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    recordings = np.array(["a", "a", "b", "c", "c", "c", "d", "d", "d", "e", "f"])
    shuffled = np.random.default_rng(5).permutation(len(classes))  # store order is arbitrary
    classes, recordings = classes[shuffled], recordings[shuffled]
    partners = SameClassPartners(classes, recordings)
    chunks = np.repeat(np.arange(len(classes)), 400)
    drawn = partners.draw(chunks, np.random.default_rng(0))
    assert (classes[drawn] == classes[chunks]).all()
    several = classes[chunks] != 1  # class 1 has one recording: any of its chunks will do
    assert (recordings[drawn][several] != recordings[chunks][several]).all()
    for chunk in range(len(classes)):
        mine = drawn[chunks == chunk]
        allowed = (classes == classes[chunk]) & ((recordings != recordings[chunk]) | (classes == 1))
        assert set(mine) == set(np.flatnonzero(allowed))  # every allowed partner, nothing else
        counts = np.bincount(mine, minlength=len(classes))[allowed]
        assert counts.min() > 0.6 * counts.mean()  # about evenly


def test_same_class_batches_mix_in_another_recording_of_the_class(tmp_path):
    from utils.batches import ChunkBatches
    from utils.store import StoreWriter

    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 8, "width": 12}}, shard_size=100)
    for recording, label, value in (("quiet", "a", 0), ("loud", "a", 200), ("only", "b", 0)):
        rows = [{"recording": recording, "label": label, "split": "train", "start": float(i),
                 "s2n": 0.1, "noise": False} for i in range(4)]
        writer.add(recording, np.full((4, 8, 12), value, np.uint8), rows)
    store = writer.close()
    index = store.index
    classes = (index["label"] == "b").to_numpy().astype(int)
    targets = np.eye(2, dtype=np.float32)[classes]
    augmenter = Augmenter({"same_class": 0.5}, probability=1.0, seed=0)
    with pytest.raises(ValueError, match="class and recording"):
        ChunkBatches(store, index["shard"], index["row"], targets, 12, augmenter=augmenter)
    batches = ChunkBatches(store, index["shard"], index["row"], targets, 12, augmenter=augmenter,
                           classes=classes, recordings=index["recording"].to_numpy())
    x, y = batches[0]
    peak = x.reshape(12, -1).max(axis=1)
    recording = index["recording"].to_numpy()
    assert (peak[recording == "quiet"] > 0).all()  # the loud recording of its class mixed in
    assert (peak[recording == "only"] == 0).all()  # its class has only silent chunks to mix in
    assert np.array_equal(y, targets) and x.max() <= 1


def test_batches_depend_on_seed_epoch_and_index_only(tmp_path):
    from utils.batches import ChunkBatches
    from utils.store import StoreWriter

    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 8, "width": 12}})
    rows = [{"recording": "r", "label": "a", "split": "train", "start": float(i), "s2n": 0.1,
             "noise": False} for i in range(12)]
    writer.add("r", np.random.default_rng(0).integers(0, 255, (12, 8, 12)).astype(np.uint8), rows)
    store = writer.close()
    args = (store, store.index["shard"], store.index["row"], np.ones((12, 1), np.float32), 4)
    make = lambda epoch=0: ChunkBatches(*args, shuffle=True, seed=3, epoch=epoch,  # noqa: E731
                                        augmenter=Augmenter({"gaussian": 0.1}, 1.0, seed=3))
    straight = make()
    epochs = [[straight[i][0] for i in range(3)] for _ in range(3)]  # 0,1,2,0,1,2,... advances epochs
    assert straight.epoch == 2 and not np.array_equal(epochs[0][0], epochs[1][0])
    resumed = make(epoch=2)
    resumed[0]  # Keras peeks at batch 0 before training; that must not move the epoch
    assert all(np.array_equal(resumed[i][0], epochs[2][i]) for i in range(3))
    for threads in (1, 4):  # built ahead in background threads: the same batches
        prefetched = ChunkBatches(*args, shuffle=True, seed=3, prefetch=threads,
                                  augmenter=Augmenter({"gaussian": 0.1}, 1.0, seed=3))
        again = [[prefetched[i][0] for i in range(3)] for _ in range(3)]
        assert all(np.array_equal(a, b) for x, y in zip(epochs, again) for a, b in zip(x, y))
        workers = [t for t in threading.enumerate() if t.name.startswith("batches")]
        assert workers and prefetched._pending
        prefetched.close()  # training is over: its threads end, the batches built ahead are dropped
        assert not any(t.is_alive() for t in workers) and not prefetched._pending
        assert np.array_equal(prefetched[1][0], epochs[2][1])  # still usable: a new pool starts


def test_one_augmenter_serves_several_threads_as_if_alone(batch):
    """Batch-building threads share one Augmenter: each call must draw from its own batch's
    generator, never from another thread's."""
    from concurrent.futures import ThreadPoolExecutor

    x, y, noise = batch
    augmenter = Augmenter({name: 0.2 for name in ("roll_v", "noise", "time_mask", "freq_mask",
                                                  "gaussian", "eq", "crop")},
                          probability=1.0, max_count=3, seed=0)
    augment = lambda k: augmenter(x, y, noise, rng=np.random.default_rng(k))[0]  # noqa: E731
    alone = [augment(k) for k in range(24)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(augment, range(24)))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together))


def test_eq_is_a_smooth_gain_per_row_that_keeps_floor_and_peak():
    x = np.full((8, 40, 30, 1), 0.5, np.float32)
    x[:, :, :10] = 0.0  # silent columns: at the -80 dB floor
    xa, _ = Augmenter({"eq": 0.2}, probability=1.0, max_count=1, seed=1)(x, np.eye(8, dtype=np.float32))
    assert (xa[:, :, :10] == 0).all()
    change = xa[:, :, 10:, 0] - x[:, :, 10:, 0]
    assert np.allclose(change, change[:, :, :1], atol=1e-6)  # the same gain at every time step
    per_row = change[:, :, 0]
    assert (per_row.std(axis=1) > 0.01).all()  # a curve over frequency, not one offset
    assert np.abs(np.diff(per_row, axis=1)).max() <= 2 * 0.2 / (39 / 4) + 1e-6  # no jumps between rows
    assert np.allclose(xa.max(axis=(1, 2, 3)), 0.5) and (np.abs(per_row) <= 0.4 + 1e-6).all()


def test_mixstyle_gives_each_row_a_mix_of_two_samples_mean_and_spread():
    rng = np.random.default_rng(4)
    x = np.zeros((6, 20, 40, 1), np.float32)
    for i in range(6):  # a level per sample and row, a pattern over time that is each sample's own
        x[i] = 0.35 + 0.3 * rng.random((20, 1, 1)) + 0.01 * rng.standard_normal((20, 40, 1)) * (1 + i)
    assert 0 < x.min() and x.max() < 1  # nothing clipped, before or after
    xa, _ = Augmenter({"mixstyle": 0.3}, probability=1.0, max_count=1, seed=2)(x, np.eye(6, dtype=np.float32))
    mean, spread = x.mean(axis=2)[..., 0], x.std(axis=2)[..., 0]
    new_mean, new_spread = xa.mean(axis=2)[..., 0], xa.std(axis=2)[..., 0]
    for i in range(6):
        # the new statistics lie between this sample's and one other sample's, the same partner and
        # the same weight for every row
        lam = [(new_mean[i] - mean[j]) / np.where(mean[i] == mean[j], 1, mean[i] - mean[j]) for j in range(6)]
        fits = [j for j in range(6) if np.allclose(new_mean[i], lam[j][0] * mean[i] + (1 - lam[j][0]) * mean[j],
                                                   atol=1e-4) and np.allclose(new_spread[i], lam[j][0] * spread[i]
                                                   + (1 - lam[j][0]) * spread[j], atol=1e-3)]
        assert fits, f"sample {i}: rows are not a mix of two samples' statistics"
        # each row's pattern over time is kept, only its level and scale change
        assert all(np.corrcoef(x[i, row, :, 0], xa[i, row, :, 0])[0, 1] > 0.999 for row in range(20))
    assert not np.allclose(xa, x, atol=1e-3) and 0 < xa.min() and xa.max() < 1


def test_training_batches_mix_in_noise_of_the_training_recordings_only(tmp_path):
    from tests.conftest import TINY, make_settings
    from utils.spectrogram import SpecParams
    from utils.store import StoreWriter
    from utils.training import ChunkSet, TrainOptions, training_batches

    s = make_settings(tmp_path, *TINY)
    writer = StoreWriter(tmp_path / "s", {"spec": SpecParams.from_settings(s).to_dict()}, shard_size=100)
    for recording, split in (("t", "train"), ("h", "val")):
        rows = [{"recording": recording, "label": "a", "split": split, "start": float(i), "s2n": 0.1,
                 "noise": i >= 4} for i in range(8)]
        writer.add(recording, np.zeros((8, 32, 64), np.uint8), rows)
    store = writer.close()
    options = TrainOptions.from_settings(s)
    assert "noise" in dict(options.augmentation)

    def noise_of(index):
        train = index[(index["split"] == "train") & ~index["noise"]]
        chunks = ChunkSet(train["shard"].to_numpy(), train["row"].to_numpy(), train["recording"].to_numpy(),
                          np.ones((len(train), 1), np.float32))
        shards, rows = training_batches(store, chunks, np.zeros(len(train), int), index, options).noise
        return set(store.index.set_index(["shard", "row"]).loc[list(zip(shards, rows)), "recording"])
    assert noise_of(store.index) == {"t"}
    # a cross-validation fold that trains on "h" mixes in h's noise, never that of held-out "t"
    swapped = store.index.assign(split=store.index["recording"].map({"t": "val", "h": "train"}))
    assert noise_of(swapped) == {"h"}


def test_chunks_to_mix_in_are_asked_for_the_chosen_samples_only(batch):
    """A batcher gives functions that read chunks from its store: the augmenter asks them for the
    samples drawn for "noise" and "same_class" only, and changes those samples alone."""
    x, y, noise = batch
    settings = {"noise": 0.5, "same_class": 0.5, "time_mask": 0.2}
    chosen = Augmenter(settings, probability=0.6, max_count=2, seed=7).choose(len(x))
    asked = {}

    def source(name, pool):
        def give(positions):
            asked[name] = positions.copy()
            return pool[positions % len(pool)]
        return give
    xa, _ = Augmenter(settings, probability=0.6, max_count=2, seed=7)(
        x, y, source("noise", noise), same_class=source("same_class", np.roll(x, 1, axis=0)))
    names = sorted(settings)
    for name in ("noise", "same_class"):
        expected = np.flatnonzero(chosen[:, names.index(name)])
        assert 0 < len(expected) < len(x) and np.array_equal(asked[name], expected)
    changed = np.abs(xa - x).reshape(len(x), -1).max(axis=1) > 1e-6
    assert not changed[~chosen.any(axis=1)].any() and changed[chosen.any(axis=1)].mean() > 0.5


def test_a_batch_reads_only_the_chunks_it_mixes_in(tmp_path):
    from utils.batches import ChunkBatches
    from utils.store import StoreWriter

    writer = StoreWriter(tmp_path / "s", {"spec": {"height": 8, "width": 12}}, shard_size=100)
    for recording in range(4):  # 10 signal chunks and 2 noise chunks each
        rows = [{"recording": f"r{recording}", "label": "a", "split": "train", "start": float(i),
                 "s2n": 0.1, "noise": i >= 10} for i in range(12)]
        writer.add(f"r{recording}", np.random.default_rng(recording).integers(0, 255, (12, 8, 12)).astype(np.uint8), rows)
    store = writer.close()
    signal, noise = store.index[~store.index["noise"]], store.index[store.index["noise"]]
    augmenter = Augmenter({"noise": 0.5, "same_class": 0.5, "roll_v": 0.1}, probability=0.5, seed=0)
    batches = ChunkBatches(store, signal["shard"], signal["row"], np.ones((40, 1), np.float32), 40,
                           augmenter=augmenter, noise=(noise["shard"].to_numpy(), noise["row"].to_numpy()),
                           classes=np.zeros(40, int), recordings=signal["recording"].to_numpy())
    read = []
    images = store.images
    store.images = lambda shards, rows_: read.append(len(rows_)) or images(shards, rows_)
    batches[0]
    mixed_in = sum(read[1:])  # the first read is the batch itself
    assert read[0] == 40 and 0 < mixed_in < 40  # about 0.5 * 2 / 3 of 40 each, not 40 each
