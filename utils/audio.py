"""Audio decoding and writing: float32 mono at the requested rate, clear errors for bad files."""
from __future__ import annotations

from pathlib import Path

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
    if channel == "mean":
        return data.mean(axis=1, dtype=np.float32)
    index = int(channel)
    return data[:, min(index, data.shape[1] - 1)]


def load_audio(path: str | Path, sample_rate: int, channel: str | int = "mean") -> np.ndarray:
    """Decode a whole file to float32 mono at ``sample_rate`` (soxr resampling)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(path, f"unreadable audio ({_short(exc)})") from None
    if data.size == 0:
        raise AudioError(path, "no audio samples")
    signal = to_mono(data, channel)
    if not np.isfinite(signal).all():
        signal = np.nan_to_num(signal, nan=0.0, posinf=0.0, neginf=0.0)
    if rate != sample_rate:
        signal = soxr.resample(signal, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(signal, dtype=np.float32)


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
