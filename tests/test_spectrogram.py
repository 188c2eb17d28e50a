import librosa
import numpy as np
import pytest

from utils.gating import signal_fraction
from utils.spectrogram import SpecParams, chunk_images, split_chunks


def params(**kw):
    base = dict(sample_rate=16000, fmin=200.0, fmax=7800.0, n_fft=512, height=64, width=128)
    return SpecParams(**{**base, **kw})


@pytest.mark.parametrize("seconds, overlap, min_len, pad, expected", [
    (3.0, 0.0, 1.0, False, [0, 1, 2]),
    (3.5, 0.0, 1.0, False, [0, 1, 2]),         # 0.5 s tail is shorter than the minimum
    (3.5, 0.0, 0.5, False, [0, 1, 2, 3]),      # ... but long enough with a 0.5 s minimum
    (2.0, 0.5, 1.0, False, [0, 0.5, 1.0]),
    (0.4, 0.0, 1.0, False, []),
    (0.4, 0.0, 1.0, True, [0]),                # scoring always gets one chunk
])
def test_chunk_starts(seconds, overlap, min_len, pad, expected):
    p = params(chunk_overlap=overlap, min_chunk_length=min_len)
    chunks, starts = split_chunks(np.ones(int(seconds * 16000), np.float32), p, pad_short=pad)
    assert starts.tolist() == expected and chunks.shape == (len(expected), 16000)
    if len(expected) and seconds < expected[-1] + 1:
        assert chunks[-1, -1] == 0  # padded tail


def test_images_match_the_per_chunk_librosa_recipe():
    p = params(sample_rate=22050, fmin=500.0, fmax=10000.0, n_fft=1024, height=128, width=256)
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 0.1, 22050 * 4).astype(np.float32)
    signal[22050:33075] += np.sin(2 * np.pi * 3000 * np.arange(11025) / 22050)
    chunks, _ = split_chunks(signal, p)
    images = chunk_images(chunks, p)
    for chunk, image in zip(chunks, images):
        ref = librosa.feature.melspectrogram(y=chunk, sr=22050, n_fft=1024, hop_length=p.hop_length,
                                             n_mels=128, fmin=500, fmax=10000, power=1)
        ref = librosa.amplitude_to_db(ref, ref=np.max, top_db=80)[::-1, :256]
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        assert np.abs(ref - image).max() < 1e-4


@pytest.mark.parametrize("spec_type", ["mel", "linear"])
def test_high_tones_appear_near_the_top(spec_type):
    p = params(spec_type=spec_type)
    t = np.arange(16000) / 16000
    low, high = (np.sin(2 * np.pi * f * t).astype(np.float32)[None] for f in (400, 6000))
    row_low = chunk_images(low, p)[0].mean(axis=1).argmax()
    row_high = chunk_images(high, p)[0].mean(axis=1).argmax()
    assert row_high < row_low  # row 0 is the top of the image


def test_silence_gives_a_defined_image_and_no_signal():
    p = params()
    image = chunk_images(np.zeros((1, 16000), np.float32), p)
    assert np.isfinite(image).all() and image.shape == (1, 64, 128)
    assert signal_fraction(image)[0] == 0


def test_calls_score_higher_than_noise():
    p = params()
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.05, 16000).astype(np.float32)
    call = noise.copy()
    t = np.arange(4000) / 16000
    for start in (2000, 9000):
        call[start:start + 4000] += np.sin(2 * np.pi * np.linspace(2000, 4000, 4000) * t)
    s2n = signal_fraction(chunk_images(np.stack([noise, call]), p))
    assert s2n[1] > 3 * s2n[0]


@pytest.mark.parametrize("change, message", [
    (dict(fmax=9000.0), "FMAX"), (dict(chunk_overlap=1.0), "CHUNK_OVERLAP"),
    (dict(min_chunk_length=2.0), "MIN_CHUNK_LENGTH"), (dict(spec_type="cqt"), "spec_type"),
])
def test_invalid_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        params(**change)
