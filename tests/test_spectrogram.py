import librosa
import numpy as np
import pandas as pd
import pytest

from tests.conftest import count_fft_calls
from utils.gating import mostly_noise_recordings, signal_fraction
from utils.spectrogram import SpecParams, band_filterbank, chunk_images, row_frequencies, split_chunks


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


@pytest.mark.parametrize("spec_type, height", [("mel", 128), ("linear", 256), ("linear", 600)])
def test_row_frequencies_are_where_each_rows_filter_peaks(spec_type, height):
    params = SpecParams(spec_type=spec_type, height=height, fmin=500.0, fmax=15000.0)
    fb, lo, _ = band_filterbank(params)
    bin_hz = params.sample_rate / params.n_fft
    peaks = (lo + np.asarray(fb.argmax(axis=1)).ravel()) * bin_hz  # lowest band first
    hz = row_frequencies(params)
    assert np.all(np.diff(hz) < 0)  # top row first, as images are stored
    assert np.abs(peaks[::-1] - hz).max() <= bin_hz  # to the FFT's resolution (600 rows: finer)


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


def test_a_steady_song_looks_like_noise_to_the_gate():
    """Why spec.py reports mostly-noise recordings: a pulse train that never stops (a cicada) has no
    pixel well above its own row median, so the transient detector scores it like background."""
    p = params()
    rng = np.random.default_rng(4)
    t = np.arange(16000) / 16000
    background = rng.normal(0, 0.05, 16000)
    steady = background + np.sin(2 * np.pi * 4000 * t) * (np.sin(2 * np.pi * 200 * t) > 0)
    burst = background + np.where((t > 0.3) & (t < 0.5), np.sin(2 * np.pi * 4000 * t), 0)
    s2n = signal_fraction(chunk_images(np.stack([steady, burst]).astype(np.float32), p))
    assert s2n[0] < 0.0001 <= s2n[1]



def test_a_padded_tail_is_gated_by_its_sound_not_by_its_padding():
    """A file's last chunk is zero-padded. Counted in the row medians, padding over half the chunk
    pulled them to 0, so a tail of steady song passed as signal while its file's full chunks
    were noise; the gate now looks only at the columns that hold sound."""
    p = params()
    rng = np.random.default_rng(4)
    t = np.arange(16000) / 16000
    steady = rng.normal(0, 0.05, 16000) + np.sin(2 * np.pi * 4000 * t) * (np.sin(2 * np.pi * 200 * t) > 0)
    burst = rng.normal(0, 0.05, 16000) + np.where((t > 0.1) & (t < 0.2), np.sin(2 * np.pi * 4000 * t), 0)
    tail = np.zeros(16000)
    tail[:5000] = steady[:5000]           # 0.31 s of song, then padding
    burst_tail = np.zeros(16000)
    burst_tail[:5000] = burst[:5000]
    s2n = signal_fraction(chunk_images(np.stack([steady, tail, burst_tail]).astype(np.float32), p))
    assert s2n[0] < 0.0001 and s2n[1] < 0.0001  # steady song: noise to the gate, padded or not
    assert s2n[2] >= 0.0001                     # a call in a padded tail is still found
    assert s2n[2] > 5 * s2n[1]

def test_mostly_noise_recordings_lists_what_the_gate_took_most_chunks_from():
    index = pd.DataFrame({
        "label": ["cicada"] * 6 + ["wren"] * 4 + ["frog"] * 2,
        "recording": ["c1"] * 4 + ["c2"] * 2 + ["w1"] * 4 + ["f1"] * 2,
        "s2n": [0, 0, 0, 0.1, 0, 0, 0, 0.1, 0.1, 0.1, 0, 0.1],
        "noise": [False] * 12})  # MIN_SIGNAL_SHARE may have kept them: the gate's verdict counts
    assert mostly_noise_recordings(index, 0.05) == {"cicada": {"c1": 0.75, "c2": 1.0}, "frog": {"f1": 0.5}}
    assert mostly_noise_recordings(index, 0.05, share=0.8) == {"cicada": {"c2": 1.0}}
    assert mostly_noise_recordings(index, 0.2) == {label: {r: 1.0 for r in recs} for label, recs in
                                                   {"cicada": ["c1", "c2"], "wren": ["w1"], "frog": ["f1"]}.items()}
    assert mostly_noise_recordings(index.iloc[:0], 0.05) == {}


def noisy_call(seconds=1.0, sr=16000, gain=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.05 * rng.normal(size=len(t)) + np.where((t > 0.3) & (t < 0.6), np.sin(2 * np.pi * 3000 * t), 0)
    return (gain * x).astype(np.float32)[None]


def test_pcen_matches_librosa_recipe():
    p = params(amplitude="pcen")
    chunk = noisy_call()
    ref = librosa.feature.melspectrogram(y=chunk[0], sr=16000, n_fft=512, hop_length=p.hop_length,
                                         n_mels=64, fmin=200, fmax=7800, power=1)[:, :128]
    ref = librosa.pcen(ref * 2 ** 31, sr=16000, hop_length=p.hop_length)[::-1]
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    assert np.abs(chunk_images(chunk, p)[0] - ref).max() < 1e-3


def test_log_power_with_a_fixed_range_keeps_loudness():
    p = params(amplitude="log_power", normalization="fixed", value_range=(-60.0, 40.0))
    loud, quiet = chunk_images(noisy_call(gain=1.0), p), chunk_images(noisy_call(gain=0.1), p)
    assert loud.mean() > quiet.mean() + 0.1 and 0 <= quiet.min() and loud.max() <= 1
    per_chunk = params(amplitude="log_power")  # per-chunk min-max removes the level again
    assert np.allclose(chunk_images(noisy_call(gain=1.0), per_chunk),
                       chunk_images(noisy_call(gain=0.1), per_chunk), atol=1e-3)


def test_explicit_hop_sets_the_frame_spacing():
    p = params(hop=250, width=64)  # 1 + 16000 // 250 = 65 frames, 64 kept
    assert p.hop_length == 250 and chunk_images(noisy_call(), p).shape == (1, 64, 64)
    with pytest.raises(ValueError, match="fewer than IMAGE_WIDTH"):
        params(hop=500, width=64)


def test_pre_emphasis_lifts_high_bands(tmp_path):
    from utils.audio import write_audio
    from utils.extract import file_images

    t = np.arange(16000) / 16000
    write_audio(tmp_path / "two_tones.wav", 0.4 * np.sin(2 * np.pi * 300 * t) + 0.4 * np.sin(2 * np.pi * 5000 * t), 16000)
    plain = file_images(tmp_path / "two_tones.wav", params(normalization="fixed"))[0][0]
    emphasised = file_images(tmp_path / "two_tones.wav",
                             params(normalization="fixed", pre_emphasis=0.97))[0][0]
    low_rows, high_rows = slice(48, 64), slice(0, 16)  # row 0 is the top (high frequencies)
    def contrast(image):  # how much louder the 5 kHz tone looks than the 300 Hz one
        return image[high_rows].max() - image[low_rows].max()
    assert contrast(emphasised) > contrast(plain) + 0.1


@pytest.mark.parametrize("rfft", ["ducc0", "scipy"])
@pytest.mark.parametrize("n_fft, power", [(1024, 1), (4096, 2)])
def test_band_magnitudes_match_librosa_chunk_after_chunk(n_fft, power, rfft, monkeypatch):
    """Work buffers are reused from chunk to chunk, and 4096-point frames take several FFT calls
    per chunk (32 frames each): every chunk still gets librosa's STFT (Hann window) through the
    filterbank, and a silent chunk after a loud one gets nothing of it, whichever FFT this CPU
    runs faster."""
    from utils.spectrogram import FFT_GROUP_SAMPLES, band_magnitudes
    calls = count_fft_calls(monkeypatch, fastest=rfft)
    params = SpecParams(sample_rate=22050, n_fft=n_fft, fmin=100.0, fmax=8000.0, height=64, width=256)
    if n_fft == 4096:  # this case must split each chunk's frames over several FFT calls
        assert FFT_GROUP_SAMPLES // n_fft < params.width
    block = np.random.default_rng(3).standard_normal((3, params.chunk_samples)).astype(np.float32)
    block[1] = 0.0
    bands = band_magnitudes(block, params, power=power)
    fb = librosa.filters.mel(sr=22050, n_fft=n_fft, n_mels=64, fmin=100.0, fmax=8000.0)
    for chunk, got in zip(block, bands):
        stft = librosa.stft(chunk, n_fft=n_fft, hop_length=params.hop_length, pad_mode="constant")
        ref = (fb @ np.abs(stft) ** power)[:, :256]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(ref.max(), 1.0))
    assert bands.shape == (3, 64, 256) and (bands[0] > 0).all() and (bands[1] == 0).all()
    assert calls[rfft] >= 3 * (n_fft // 1024) and sum(calls.values()) == calls[rfft]  # only it


@pytest.mark.parametrize("rfft", ["ducc0", "scipy"])
def test_bands_on_the_0_hz_and_nyquist_bins_match_librosa(rfft, monkeypatch):
    """The Hann window is applied after the FFT from each bin's neighbours; the 0-Hz and Nyquist
    bins have theirs mirrored (a real signal's spectrum is conjugate-symmetric). Linear bands
    narrower than a bin take the nearest one, which here is bin 0 at the bottom and the Nyquist
    bin at the top."""
    from utils.spectrogram import band_edges, band_filterbank, band_magnitudes, linear_filterbank
    calls = count_fft_calls(monkeypatch, fastest=rfft)
    params = SpecParams(sample_rate=22050, spec_type="linear", n_fft=64, fmin=0.0, fmax=11025.0,
                        height=64, width=256)
    _, lo, hi = band_filterbank(params)
    assert (lo, hi) == (0, 33)
    chunk = np.random.default_rng(5).standard_normal((1, params.chunk_samples)).astype(np.float32)
    fb = linear_filterbank(22050, 64, band_edges(params))
    stft = librosa.stft(chunk[0], n_fft=64, hop_length=params.hop_length, pad_mode="constant")
    ref = (fb @ np.abs(stft))[:, :256]
    np.testing.assert_allclose(band_magnitudes(chunk, params)[0], ref, rtol=1e-4, atol=1e-5 * ref.max())
    assert calls[rfft] >= 1 and sum(calls.values()) == calls[rfft]


def test_scipys_fft_gives_the_same_spectrum_with_or_without_its_private_binding(monkeypatch):
    """The pocketfft binding writes into the given array; the public function (used where a
    scipy release moved the binding) allocates its own. Same numbers either way."""
    from utils import spectrogram
    frames = np.random.default_rng(6).standard_normal((16, 512)).astype(np.float32)
    out = np.empty((16, 257), np.complex64)
    fast = spectrogram._scipy_rfft(frames, out).copy()
    monkeypatch.setattr(spectrogram, "_pocketfft_r2c", None)
    public = spectrogram._scipy_rfft(frames, out)
    assert public is not out
    np.testing.assert_array_equal(fast, public)
    np.testing.assert_allclose(public, np.fft.rfft(frames), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rfft", ["scipy", "ducc0"])
def test_work_buffers_follow_the_settings_and_stay_with_their_thread(rfft, monkeypatch):
    """Buffers are kept from call to call: settings that change between calls, and two threads
    extracting at once, must each still get the images a fresh process computes (to float32
    rounding: ducc0's last bit can differ between reused and fresh buffers). Each FFT is pinned,
    so that the test is the same on hosts whose timing picks the other one."""
    import concurrent.futures as cf
    import threading

    from utils import spectrogram
    monkeypatch.setattr(spectrogram, "fastest_rfft", lambda *shape: rfft)
    same = lambda a, b: np.allclose(a, b, rtol=0, atol=1e-6)  # noqa: E731
    mel, linear = params(), params(spec_type="linear", height=96, n_fft=1024, width=100)
    chunks = np.random.default_rng(9).standard_normal((3, mel.chunk_samples)).astype(np.float32)

    def fresh(p):  # a new thread starts without buffers
        with cf.ThreadPoolExecutor(1) as pool:
            return pool.submit(chunk_images, chunks, p).result()
    expected = {mel: fresh(mel), linear: fresh(linear)}
    assert expected[mel].shape != expected[linear].shape
    for p in (mel, linear, mel):  # one thread, settings changing
        assert same(chunk_images(chunks, p), expected[p])
    start = threading.Barrier(2)

    def repeatedly(p):
        start.wait()
        return all(same(chunk_images(chunks, p), expected[p]) for _ in range(20))
    with cf.ThreadPoolExecutor(2) as pool:
        assert all(pool.map(repeatedly, [mel, linear]))
    kept = spectrogram._thread_scratch.held
    assert kept[0][0] == mel  # this thread kept the last settings it used
    chunk_images(chunks, mel, fft=spectrogram.fastest_fft_for(mel))  # naming the default FFT
    assert spectrogram._thread_scratch.held is kept  # reuses those buffers


def test_db_with_a_fixed_range_maps_db_below_the_peak():
    p = params(normalization="fixed", value_range=(-80.0, 0.0))
    chunk = noisy_call()
    ref = librosa.feature.melspectrogram(y=chunk[0], sr=16000, n_fft=512, hop_length=p.hop_length,
                                         n_mels=64, fmin=200, fmax=7800, power=1)[:, :128]
    ref = (librosa.amplitude_to_db(ref, ref=np.max, top_db=80)[::-1] + 80.0) / 80.0
    assert np.abs(chunk_images(chunk, p)[0] - ref).max() < 1e-3


def test_the_fft_is_chosen_once_per_shape_among_the_known_ones():
    from utils.spectrogram import RFFTS, fastest_rfft
    fastest_rfft.cache_clear()
    chosen = fastest_rfft(512, 16, 100)
    assert chosen in RFFTS and fastest_rfft(512, 16, 100) == chosen
    assert fastest_rfft.cache_info().hits == 1 and fastest_rfft.cache_info().misses == 1


@pytest.mark.parametrize("ducc0_seconds, chosen", [(1.0, "scipy"), (0.85, "scipy"), (0.7, "ducc0")])
def test_ducc0_is_taken_only_for_a_clear_win(ducc0_seconds, chosen, monkeypatch):
    """A near tie keeps scipy's FFT, so that processes on one machine do not pick differently
    from one timing to the next; a clear win (CLEAR_WIN) takes ducc0's. Time is simulated."""
    from utils import spectrogram
    clock = [0.0]
    took = {"scipy": 1.0, "ducc0": ducc0_seconds}
    for name in took:
        monkeypatch.setitem(spectrogram.RFFTS, name,
                            lambda frames, out, name=name: clock.__setitem__(0, clock[0] + took[name]))
    monkeypatch.setattr(spectrogram.time, "perf_counter", lambda: clock[0])
    spectrogram.fastest_rfft.cache_clear()
    try:
        assert spectrogram.fastest_rfft(512, 16, 100) == chosen
    finally:
        spectrogram.fastest_rfft.cache_clear()
