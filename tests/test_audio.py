import threading

import numpy as np
import pytest
import soundfile as sf

from utils.audio import AudioError, audio_info, load_audio, load_span, read_flac, write_audio


def tone(freq, seconds, sr):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_resampling_keeps_duration_and_pitch(tmp_path):
    write_audio(tmp_path / "a.flac", tone(1000, 2.0, 48000), 48000)
    signal = load_audio(tmp_path / "a.flac", 16000)
    assert signal.dtype == np.float32 and len(signal) == 32000
    spectrum = np.abs(np.fft.rfft(signal))
    assert abs(np.fft.rfftfreq(len(signal), 1 / 16000)[spectrum.argmax()] - 1000) < 2


def test_stereo_mean_or_channel(tmp_path):
    left, right = tone(500, 1, 8000), np.zeros(8000, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000)
    assert np.allclose(load_audio(tmp_path / "s.wav", 8000), left / 2, atol=1e-4)
    assert np.allclose(load_audio(tmp_path / "s.wav", 8000, channel=1), 0)
    assert audio_info(tmp_path / "s.wav") == (1.0, 8000, 2)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
                                           ("WAV", "PCM_24"), ("WAV", "PCM_U8"), ("WAV", "FLOAT")])
def test_decoded_samples_equal_libsndfile_float_conversion(tmp_path, fmt, subtype):
    """16-bit files take the integer decoding path, FLAC files dr_flac's; every format must give
    libsndfile's values."""
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-1, 1, (4000, 2)).astype(np.float32)
    stereo[:3] = [[-1.0, 1.0], [0.99997, -0.99997], [0.0, 1e-5]]  # full scale and tiny values
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, stereo, 8000, format=fmt, subtype=subtype)
    expected = sf.read(path, dtype="float32")[0]
    assert sf.info(path).subtype == subtype
    np.testing.assert_array_equal(load_audio(path, 8000, channel=1), expected[:, 1])
    np.testing.assert_array_equal(load_audio(path, 8000), expected.mean(axis=1, dtype=np.float32))
    np.testing.assert_array_equal(load_span(path, 8000, 1000, 1500, channel=0), expected[1000:1500, 0])


def test_flac_fast_decoder_matches_libsndfile_and_leaves_odd_files_to_it(tmp_path):
    stereo = np.random.default_rng(1).uniform(-1, 1, (6000, 2)).astype(np.float32)
    sf.write(tmp_path / "x.flac", stereo, 22050)
    samples, rate = read_flac(tmp_path / "x.flac")
    assert rate == 22050
    np.testing.assert_array_equal(samples, sf.read(tmp_path / "x.flac", dtype="float32")[0])
    # A cut file (fewer frames than its header says) and a WAV named .flac: libsndfile's turn
    whole = (tmp_path / "x.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(whole[: len(whole) // 2])
    assert read_flac(tmp_path / "cut.flac") is None
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac", 22050)
    sf.write(tmp_path / "wav.flac", stereo, 22050, format="WAV")
    assert read_flac(tmp_path / "wav.flac") is None
    np.testing.assert_array_equal(load_audio(tmp_path / "wav.flac", 22050, channel=0),
                                  sf.read(tmp_path / "wav.flac", dtype="float32")[0][:, 0])


def test_decoded_audio_outlives_the_reused_decode_buffer(tmp_path):
    """FLAC decodes into one buffer per thread, reused by the next file: what load_audio returns
    at the file's own rate (no resampling to make a new array) must still be a copy."""
    rng = np.random.default_rng(2)
    first, second = (rng.uniform(-1, 1, (4000, 2)).astype(np.float32) for _ in range(2))
    sf.write(tmp_path / "mono.flac", first[:, 0], 8000)
    sf.write(tmp_path / "stereo.flac", first, 8000)
    sf.write(tmp_path / "other.flac", second, 8000)
    expected = sf.read(tmp_path / "stereo.flac", dtype="float32")[0]
    kept = {channel: load_audio(tmp_path / "stereo.flac", 8000, channel=channel)
            for channel in ("0", "1", "mean")}
    kept["mono"] = load_audio(tmp_path / "mono.flac", 8000)
    load_audio(tmp_path / "other.flac", 8000)
    assert read_flac(tmp_path / "other.flac") is not None  # the buffer now holds another file
    np.testing.assert_array_equal(kept["mono"], expected[:, 0])
    np.testing.assert_array_equal(kept["0"], expected[:, 0])
    np.testing.assert_array_equal(kept["1"], expected[:, 1])
    np.testing.assert_array_equal(kept["mean"], expected.mean(axis=1, dtype=np.float32))


def test_only_files_up_to_the_limit_keep_their_decode_buffer(tmp_path, monkeypatch):
    """A long file (or a header claiming one) decodes into a buffer of its own, so a thread does
    not keep that much memory; a buffer that cannot be had leaves the file to libsndfile."""
    from utils import audio
    samples = np.random.default_rng(4).uniform(-1, 1, 3000).astype(np.float32)
    sf.write(tmp_path / "short.flac", samples[:1000], 8000)
    sf.write(tmp_path / "long.flac", samples, 8000)
    monkeypatch.setattr(audio, "KEPT_DECODE_SAMPLES", 2000)
    monkeypatch.setattr(audio, "_decode_buffers", threading.local())
    short, _ = read_flac(tmp_path / "short.flac")
    kept = audio._decode_buffers.buffer
    long, _ = read_flac(tmp_path / "long.flac")
    assert audio._decode_buffers.buffer is kept and not np.shares_memory(long, kept)
    np.testing.assert_array_equal(long, sf.read(tmp_path / "long.flac", dtype="float32")[0])

    def no_memory(size):
        raise MemoryError
    monkeypatch.setattr(audio, "_decode_buffer", no_memory)
    assert read_flac(tmp_path / "long.flac") is None
    np.testing.assert_array_equal(load_audio(tmp_path / "long.flac", 8000), long)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00", b"not audio at all" * 100])
def test_unreadable_files_raise_audio_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad file.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="bad file.wav"):
        load_audio(path, 16000)
    with pytest.raises(AudioError):
        audio_info(path)


def test_long_ogg_written_in_blocks_reads_back(tmp_path):
    signal = tone(440, 70, 16000)
    write_audio(tmp_path / "long.ogg", signal, 16000)
    assert abs(audio_info(tmp_path / "long.ogg")[0] - 70) < 0.1
