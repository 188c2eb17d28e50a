"""Audio decoding and writing: float32 mono at the requested rate, clear errors for bad files."""
from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import miniaudio
import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioError(Exception):
    """A file that cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) from the header, without decoding."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise AudioError(path, f"unreadable audio ({_short(exc)})") from None
    if info.samplerate <= 0:
        raise AudioError(path, "invalid sample rate in header")
    return info.frames / info.samplerate, int(info.samplerate), int(info.channels)


def to_mono(data: np.ndarray, channel: str | int = "mean") -> np.ndarray:
    """(frames, channels) -> (frames,): the channel mean, or one channel by index."""
    if data.ndim == 1:
        return data
    if data.shape[1] == 1:
        return data[:, 0]
    if channel == "mean":
        return data.mean(axis=1, dtype=np.float32)
    index = int(channel)
    return data[:, min(index, data.shape[1] - 1)]


def load_audio(path: str | Path, sample_rate: int, channel: str | int = "mean") -> np.ndarray:
    """Decode a whole file to float32 mono at ``sample_rate`` (soxr resampling)."""
    decoded = read_flac(path) if str(path).lower().endswith(".flac") else None
    if decoded is not None:
        data, rate = decoded  # the thread's decode buffer: what is returned must not share it
        signal = _mono_at_rate(data, rate, sample_rate, channel, finite=True)
        return signal.copy() if np.shares_memory(signal, data) else signal
    try:
        with sf.SoundFile(str(path)) as f:
            rate, data, integer = f.samplerate, read_float32(f), f.subtype.startswith("PCM")
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({_short(exc)})") from None
    if data.size == 0:
        raise AudioError(path, "no audio samples (empty, or cut short before its first block)")
    return _mono_at_rate(data, rate, sample_rate, channel, finite=integer)


_decode_buffers = threading.local()
# Samples of the largest decode buffer a thread keeps (64 MB): longer files, or a header that
# claims more than the file holds, get a buffer of their own that goes with them.
KEPT_DECODE_SAMPLES = 1 << 24


def _decode_buffer(size: int) -> np.ndarray:
    """A float32 buffer of ``size`` samples: this thread's, reused from file to file, up to
    KEPT_DECODE_SAMPLES. A fresh buffer per file costs the kernel a page fault per 4 KB touched,
    and those were about a sixth of extraction's time (BENCHMARKS.md, spec)."""
    if size > KEPT_DECODE_SAMPLES:
        return np.empty(size, np.float32)
    buffer = getattr(_decode_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _decode_buffers.buffer = np.empty(size, np.float32)
    return buffer[:size]


def read_flac(path: str | Path) -> tuple[np.ndarray, int] | None:
    """(samples as :func:`read_float32` gives them, sample rate) of a whole FLAC file, or None.

    dr_flac (the miniaudio package) decodes FLAC 1.3-1.5x faster than libsndfile, to the same
    float32 values (BENCHMARKS.md, spec); decoding is the largest step of extraction. None when
    it fails or decodes fewer frames than the header promises (a cut file): libsndfile then
    reads the file and reports its problem as before.

    The samples are this thread's decode buffer, overwritten by the next call: copy what must
    outlive it.
    """
    ffi, lib = miniaudio.ffi, miniaudio.lib
    if sys.platform == "win32":
        flac = lib.ma_dr_flac_open_file_w(str(path), ffi.NULL)
    else:
        flac = lib.ma_dr_flac_open_file(os.fsencode(path), ffi.NULL)
    if not flac:
        return None
    try:
        frames, channels, rate = flac.totalPCMFrameCount, flac.channels, flac.sampleRate
        samples = _decode_buffer(frames * channels)
        read = lib.ma_dr_flac_read_pcm_frames_f32(flac, frames, ffi.cast("float *", ffi.from_buffer(samples)))
    except MemoryError:  # a header claiming more audio than fits: libsndfile's turn
        return None
    finally:
        lib.ma_dr_flac_close(flac)
    if not frames or channels < 1 or read != frames:
        return None
    return (samples if channels == 1 else samples.reshape(-1, channels)), int(rate)


def read_float32(f: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """(frames, channels) float32 samples (full scale 1.0) from an open file.

    16-bit PCM, the commonest WAV and FLAC format, is decoded as integers and scaled here: the
    same values as libsndfile's own float conversion, and decoding is about 10% faster. Mono
    files come back as (frames,): the 2-D copy cost another 7%.
    """
    if f.subtype == "PCM_16":
        return np.multiply(f.read(frames, dtype="int16", always_2d=f.channels > 1),
                           np.float32(1 / 32768), dtype=np.float32)
    return f.read(frames, dtype="float32", always_2d=f.channels > 1)


def _mono_at_rate(data: np.ndarray, rate: int, sample_rate: int, channel: str | int,
                  finite: bool = False) -> np.ndarray:
    """``finite``: decoded from integer samples, so no NaN or infinity to clean."""
    signal = to_mono(data, channel)
    if not finite and not np.isfinite(signal).all():
        signal = np.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0)
    if rate != sample_rate:
        signal = soxr.resample(signal, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(signal, dtype=np.float32)


def resampled_length(frames: int, rate: int, sample_rate: int) -> int:
    """Samples soxr.resample returns for ``frames`` input samples (it rounds half up)."""
    return (2 * frames * sample_rate + rate) // (2 * rate)


# Context decoded on each side of a span before resampling, so the resampler's edge transient
# falls outside the span (soxr HQ's filter is a few milliseconds long).
SPAN_MARGIN_SECONDS = 0.05


def load_span(path: str | Path, sample_rate: int, start: int, stop: int,
              channel: str | int = "mean") -> np.ndarray:
    """Samples [start, stop) of the file at ``sample_rate``, decoding only that part.

    Equal (to float rounding) to ``load_audio(...)[start:stop]``: the span is resampled from a
    source position that falls on the whole file's output grid, with a margin on each side.
    Past the end of the file the result is shorter.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            rate, frames = f.samplerate, f.frames
            if rate == sample_rate:
                first, offset, last = start, start, min(stop, frames)
            else:
                # output sample k sits at input position k * rate / sample_rate: start reading at a
                # multiple of rate/g input samples, which is exactly an output sample
                g = math.gcd(rate, sample_rate)
                unit_in, unit_out = rate // g, sample_rate // g
                margin = math.ceil(SPAN_MARGIN_SECONDS * rate / unit_in)
                units = max(0, start // unit_out - margin)
                first, offset = units * unit_in, units * unit_out
                last = min(frames, (-(-stop // unit_out) + margin) * unit_in)
            if last <= first:
                return np.zeros(0, np.float32)
            f.seek(first)
            data = read_float32(f, last - first)
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({_short(exc)})") from None
    if data.size == 0:
        raise AudioError(path, "no audio samples in the requested span")
    signal = _mono_at_rate(data, rate, sample_rate, channel)
    return signal[start - offset: stop - offset]


def write_audio(path: str | Path, signal: np.ndarray, sample_rate: int, block: int = 1 << 18) -> None:
    """Write in blocks: soundfile can crash writing a long OGG in one call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = np.asarray(signal, dtype=np.float32)
    with sf.SoundFile(str(path), "w", samplerate=sample_rate,
                      channels=1 if signal.ndim == 1 else signal.shape[1]) as out:
        for start in range(0, len(signal), block):
            out.write(signal[start:start + block])


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
