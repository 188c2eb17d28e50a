"""Spectrogram chunks: cut a signal into fixed-length chunks and turn each into a normalised image.

The default recipe is the BirdCLEF 2018 baseline's (magnitude STFT with ``hop = chunk // (width-1)``,
mel or linear band filterbank between fmin and fmax, dB relative to the chunk's peak, clipped at
``top_db``, low frequencies at the bottom, min-max scaled to [0, 1]), computed for blocks of chunks
at once. Options: log-power or PCEN instead of dB, a fixed value range instead of per-chunk
min-max, an explicit hop, and pre-emphasis.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import ducc0
import librosa
import numpy as np
import scipy.fft
import scipy.sparse

SPEC_TYPES = ("mel", "linear")
AMPLITUDE_SCALES = ("db", "log_power", "pcen")
NORMALIZATIONS = ("chunk", "fixed")


@dataclass(frozen=True)
class SpecParams:
    """Everything that decides what a chunk image looks like; saved with stores and models."""

    sample_rate: int = 44100
    chunk_length: float = 1.0
    chunk_overlap: float = 0.0
    min_chunk_length: float = 1.0
    spec_type: str = "mel"
    fmin: float = 500.0
    fmax: float = 15000.0
    n_fft: int = 1024
    height: int = 128
    width: int = 256
    top_db: float = 80.0
    channel: str = "mean"
    amplitude: str = "db"
    normalization: str = "chunk"
    value_range: tuple[float, float] = (-80.0, 0.0)
    hop: int = 0                 # 0 = derived from the image width, as the baseline does
    pre_emphasis: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        problems = []
        if self.spec_type not in SPEC_TYPES:
            problems.append(f"spec_type must be one of {SPEC_TYPES}")
        if self.amplitude not in AMPLITUDE_SCALES:
            problems.append(f"AMPLITUDE_SCALE must be one of {AMPLITUDE_SCALES}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"NORMALIZATION must be one of {NORMALIZATIONS}")
        if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
            problems.append("VALUE_RANGE must be [low, high] with low < high")
        if self.hop < 0 or not 0 <= self.pre_emphasis < 1:
            problems.append("need HOP_LENGTH >= 0 and 0 <= PRE_EMPHASIS < 1")
        if self.n_fft < 16:
            problems.append("N_FFT must be at least 16")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= FMIN < FMAX <= SAMPLE_RATE/2 (got {self.fmin}, {self.fmax}, "
                            f"{self.sample_rate / 2})")
        if not 0 <= self.chunk_overlap < self.chunk_length:
            problems.append("need 0 <= CHUNK_OVERLAP < CHUNK_LENGTH")
        if not 0 < self.min_chunk_length <= self.chunk_length:
            problems.append("need 0 < MIN_CHUNK_LENGTH <= CHUNK_LENGTH")
        if self.height < 8 or self.width < 8:
            problems.append("image height and width must be at least 8")
        if self.hop_length < 1:
            problems.append("chunk too short for the image width (hop < 1 sample)")
        elif self.hop and self.width > 1 + self.chunk_samples // self.hop:
            problems.append(f"HOP_LENGTH {self.hop} gives {1 + self.chunk_samples // self.hop} frames "
                            f"per chunk, fewer than IMAGE_WIDTH {self.width}")
        if problems:
            raise ValueError("invalid spectrogram settings: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> "SpecParams":
        return cls(sample_rate=s["SAMPLE_RATE"], chunk_length=s["CHUNK_LENGTH"],
                   chunk_overlap=s["CHUNK_OVERLAP"], min_chunk_length=s["MIN_CHUNK_LENGTH"],
                   spec_type=s["SPEC_TYPE"], fmin=s["FMIN"], fmax=s["FMAX"], n_fft=s["N_FFT"],
                   height=s["IMAGE_HEIGHT"], width=s["IMAGE_WIDTH"], top_db=s["TOP_DB"],
                   channel=s["CHANNEL"], amplitude=s["AMPLITUDE_SCALE"],
                   normalization=s["NORMALIZATION"], value_range=tuple(s["VALUE_RANGE"]),
                   hop=s["HOP_LENGTH"], pre_emphasis=s["PRE_EMPHASIS"])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpecParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown spectrogram settings {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def chunk_samples(self) -> int:
        return int(round(self.chunk_length * self.sample_rate))

    @property
    def step_samples(self) -> int:
        return max(1, int(round((self.chunk_length - self.chunk_overlap) * self.sample_rate)))

    @property
    def min_samples(self) -> int:
        return int(round(self.min_chunk_length * self.sample_rate))

    def chunk_count(self, seconds: float) -> int:
        """How many chunks :func:`split_chunks` cuts from ``seconds`` of audio."""
        return len(chunk_starts(int(round(seconds * self.sample_rate)), self))

    @property
    def hop_length(self) -> int:
        return self.hop or self.chunk_samples // (self.width - 1)


def spec_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Names of the settings in which two saved spectrogram settings differ (JSON lists and
    tuples compare equal; settings missing from older files take their defaults)."""
    first, second = SpecParams.from_dict(a).to_dict(), SpecParams.from_dict(b).to_dict()
    return sorted(k for k in first if first[k] != second[k])


def chunk_starts(n_samples: int, params: SpecParams) -> list[int]:
    """Start samples of the chunks in a signal of ``n_samples``: every step, while at least
    ``min_chunk_length`` (or a whole chunk, if shorter) remains."""
    need = min(params.min_samples, params.chunk_samples)
    return list(range(0, max(n_samples - need + 1, 0), params.step_samples))


def frames_view(signal: np.ndarray, size: int, step: int) -> np.ndarray:
    """(n, size) windows of ``signal`` starting every ``step`` samples: a view, no copy."""
    return np.lib.stride_tricks.sliding_window_view(signal, size)[::step]


def split_chunks(signal: np.ndarray, params: SpecParams, pad_short: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``signal`` into (n, chunk_samples) chunks and their start times in seconds.

    A trailing chunk at least ``min_chunk_length`` long is zero-padded; shorter tails are dropped.
    With ``pad_short`` a signal shorter than that still gives one padded chunk (used for scoring,
    where every file needs a score).
    """
    size, step = params.chunk_samples, params.step_samples
    n = len(signal)
    starts = chunk_starts(n, params)
    if not starts and pad_short and n > 0:
        starts = [0]
    if not starts:
        return np.zeros((0, size), np.float32), np.zeros(0, np.float64)
    need = starts[-1] + size
    padded = signal if n >= need else np.concatenate([signal, np.zeros(need - n, signal.dtype)])
    windows = frames_view(padded, size, step)[: len(starts)]
    return windows.astype(np.float32, copy=False), np.asarray(starts) / params.sample_rate


@functools.lru_cache(maxsize=16)
def band_filterbank(params: SpecParams) -> tuple[scipy.sparse.csr_matrix, int, int]:
    """(filters restricted to the FFT bins they touch, first bin, last bin + 1).

    Sparse: each mel or linear band touches only a few bins, so the product costs a fraction of
    a dense one.
    """
    if params.spec_type == "mel":  # librosa's own: the 2018 recipe's area-normalised filters
        fb = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.height,
                                 fmin=params.fmin, fmax=params.fmax)
    else:
        fb = linear_filterbank(params.sample_rate, params.n_fft, band_edges(params))
    used = np.flatnonzero(fb.any(axis=0))
    lo, hi = int(used[0]), int(used[-1]) + 1
    return scipy.sparse.csr_matrix(fb[:, lo:hi].astype(np.float32)), lo, hi


def band_edges(params: SpecParams) -> np.ndarray:
    """The height + 2 frequencies (Hz) that bound the triangular bands, lowest first: band i rises
    from edge i, peaks at edge i + 1 and falls to edge i + 2 (mel: the points librosa's filters
    are built on)."""
    if params.spec_type == "mel":
        return librosa.mel_frequencies(n_mels=params.height + 2, fmin=params.fmin, fmax=params.fmax)
    return np.linspace(params.fmin, params.fmax, params.height + 2)


def row_frequencies(params: SpecParams) -> np.ndarray:
    """Centre frequency (Hz) of each image row, top row (highest) first, as images are stored."""
    return band_edges(params)[-2:0:-1].copy()


def linear_filterbank(sr: int, n_fft: int, edges: np.ndarray) -> np.ndarray:
    """Triangular filters on ``edges`` (:func:`band_edges`): one band per image row."""
    freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    fb = np.maximum(0.0, np.minimum(rising, falling))
    empty = ~fb.any(axis=1)  # bands narrower than a bin: take the nearest bin
    fb[empty, np.abs(freqs[None, :] - centre[empty]).argmin(axis=1)] = 1.0
    return fb.astype(np.float32)


# Frames per FFT call: a call's frames and spectrum (about 1 MB at 128 frames of 1024) stay near
# the core. Measured in turns on 1 MB-L2 AMD cores: one chunk at a time in groups of 128 frames
# beat blocks of 4 chunks in one call (4 MB of frames) by 1.2-1.3x; 64 or 256 frames fell between.
FFT_GROUP_SAMPLES = 1 << 17

# The periodic Hann window (librosa's) is 0.5 - 0.25 e^(2 pi i n/N) - 0.25 e^(-2 pi i n/N), so the
# windowed frame's spectrum is exactly 0.5 X[k] - 0.25 (X[k-1] + X[k+1]). Applied after the FFT,
# on the band's bins only (taps two floats apart: real and imaginary parts interleaved), it
# replaces a multiply over every sample of every frame, and the FFT reads the frames in place.
HANN_TAPS = np.array([[-0.25, 0.0, 0.5, 0.0, -0.25]], np.float32)


def _ducc0_rfft(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    return ducc0.fft.r2c(frames, axes=(1,), out=out, nthreads=1)


def _private_pocketfft_r2c():
    """scipy's own pocketfft binding, which writes into a given array and skips scipy.fft's
    dispatch (8% of the FFT's time), or None where a scipy release moved or changed it."""
    try:
        from scipy.fft._pocketfft.pypocketfft import r2c
        probe, out = np.arange(8, dtype=np.float32)[None], np.empty((1, 5), np.complex64)
        if r2c(probe, (1,), True, 0, out, 1) is out and np.allclose(out, np.fft.rfft(probe)):
            return r2c
    except Exception:  # private API: anything unexpected means the public function
        pass
    return None


_pocketfft_r2c = _private_pocketfft_r2c()


def _scipy_rfft(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    if _pocketfft_r2c is None:  # float32 in, complex64 out, into an array of its own
        return scipy.fft.rfft(frames, axis=1, workers=1)
    return _pocketfft_r2c(frames, (1,), True, 0, out, 1)


RFFTS = {"ducc0": _ducc0_rfft, "scipy": _scipy_rfft}


# How much faster than scipy's FFT ducc0's must time to be used instead. Where the two are near a
# tie, the timing of each process could pick either, and their float rounding differs (enough to
# move an 8-bit pixel by a step): processes then disagree for a gain of a few percent. Hosts seen
# so far differ either way by 1.3-1.45x, or tie.
CLEAR_WIN = 1.25


@functools.lru_cache(maxsize=8)
def fastest_rfft(n_fft: int, rows: int, hop: int) -> str:
    """The single-threaded float32 real FFT to use for ``rows`` frames of ``n_fft`` samples,
    ``hop`` apart in one signal, on this CPU, timed once per process (as FFTW's planner does):
    scipy's, unless ducc0's is CLEAR_WIN times faster. Which one wins depends on the machine:
    ducc0's was 1.4x scipy's on one AMD host and scipy's 1.45x ducc0's on another (BENCHMARKS.md).
    Both agree to float32 rounding, far inside what an 8-bit image shows."""
    signal = np.random.default_rng(0).standard_normal((rows - 1) * hop + n_fft).astype(np.float32)
    frames = frames_view(signal, n_fft, hop)
    out = np.empty((rows, n_fft // 2 + 1), np.complex64)
    best = dict.fromkeys(RFFTS, float("inf"))
    for _ in range(5):  # in turns, best of 5: the least disturbed by other work
        for name, rfft in RFFTS.items():
            started = time.perf_counter()
            rfft(frames, out)
            best[name] = min(best[name], time.perf_counter() - started)
    return "ducc0" if best["ducc0"] * CLEAR_WIN < best["scipy"] else "scipy"


def fft_group(params: SpecParams) -> tuple[int, int]:
    """(frames an image takes, frames per FFT call) for ``params``."""
    frames = min(params.width, 1 + params.chunk_samples // params.hop_length)
    return frames, min(frames, max(1, FFT_GROUP_SAMPLES // params.n_fft))


def fastest_fft_for(params: SpecParams) -> str:
    """The FFT (a key of RFFTS) :func:`fastest_rfft` picks in this process for ``params``' frames."""
    return fastest_rfft(params.n_fft, fft_group(params)[1], params.hop_length)


class _Scratch:
    """Work buffers reused for every chunk, and from file to file (:func:`_scratch_for`):
    allocating them per chunk took about a tenth of an image's time, and fresh ones per file
    cost the kernel's page faults (with the decoder's, a sixth of extraction's time)."""

    def __init__(self, params: SpecParams, fft: str):
        fb, self.lo, self.hi = band_filterbank(params)
        self.fb, self.n_fft, self.hop = fb, params.n_fft, params.hop_length
        self.frames, self.group = fft_group(params)
        self.padded = np.zeros(params.chunk_samples + 2 * (self.n_fft // 2), np.float32)
        self.framed = frames_view(self.padded, self.n_fft, self.hop)[:self.frames]
        self.spectrum = np.empty((self.group, self.n_fft // 2 + 1), np.complex64)
        bins = self.hi - self.lo
        # the band's bins and one more on each side (mirrored where the band reaches 0 or Nyquist)
        self.inside = self.lo > 0 and self.hi < self.n_fft // 2 + 1
        self.edged = None if self.inside else np.empty((self.group, bins + 2), np.complex64)
        self.windowed = np.empty((self.group, 2 * (bins + 2)), np.float32)
        self.real, self.imag = (np.empty((self.group, bins), np.float32) for _ in range(2))
        self.magnitude = np.empty((self.frames, bins), np.float32)
        self.by_bin = np.empty((bins, self.frames), np.float32)
        self.bands = np.empty((params.height, params.width), np.float32)
        self.rfft = RFFTS[fft]

    def band_with_neighbours(self, spectrum: np.ndarray) -> np.ndarray:
        """Bins lo - 1 .. hi of ``spectrum``: a view, or a copy with the mirrored bins of a real
        signal's spectrum (X[-1] = conj X[1], X[N/2 + 1] = conj X[N/2 - 1]) at the band's ends."""
        if self.inside:
            return spectrum[:, self.lo - 1:self.hi + 1]
        edged, last = self.edged[:len(spectrum)], spectrum.shape[1] - 1
        edged[:, 1:-1] = spectrum[:, self.lo:self.hi]
        edged[:, 0] = spectrum[:, self.lo - 1] if self.lo > 0 else np.conj(spectrum[:, 1])
        edged[:, -1] = spectrum[:, self.hi] if self.hi <= last else np.conj(spectrum[:, last - 1])
        return edged


_thread_scratch = threading.local()


def _scratch_for(params: SpecParams, fft: str | None = None) -> _Scratch:
    """This thread's work buffers for ``params`` and ``fft`` (default: :func:`fastest_fft_for`),
    kept until others come along."""
    fft = fft or fastest_fft_for(params)  # resolved first: None and its choice share buffers
    held = getattr(_thread_scratch, "held", None)
    if held is None or held[0] != (params, fft):
        held = _thread_scratch.held = ((params, fft), _Scratch(params, fft))
    return held[1]


def _chunk_bands(chunk: np.ndarray, scratch: _Scratch, power: int, out: np.ndarray) -> None:
    """One chunk's filterbank magnitudes (or energies) into ``out`` (height, width)."""
    s, half = scratch, scratch.n_fft // 2
    s.padded[half:half + len(chunk)] = chunk  # the zero margins stay zero: center=True, constant
    for first in range(0, s.frames, s.group):
        n = min(s.group, s.frames - first)
        spectrum = s.rfft(s.framed[first:first + n], s.spectrum[:n])  # frames not yet windowed
        band = s.band_with_neighbours(spectrum).view(np.float32)
        windowed = s.windowed[:n]
        cv2.filter2D(band, -1, HANN_TAPS, dst=windowed, borderType=cv2.BORDER_ISOLATED)
        # |z| by OpenCV on split planes: 1.3x numpy's complex abs
        pairs = windowed[:, 2:-2].reshape(n, -1, 2)
        real, imag = s.real[:n], s.imag[:n]
        cv2.split(pairs, [real, imag])
        cv2.magnitude(real, imag, s.magnitude[first:first + n])
    if power == 2:
        s.magnitude *= s.magnitude
    # The sparse product wants bins as rows: OpenCV's transpose is 4x the copy scipy makes
    cv2.transpose(s.magnitude, dst=s.by_bin)
    out[:, :s.frames] = s.fb @ s.by_bin
    out[:, s.frames:] = 0.0


def band_magnitudes(block: np.ndarray, params: SpecParams, power: int = 1) -> np.ndarray:
    """(b, chunk_samples) -> (b, height, width) filterbank magnitudes (power 1) or energies
    (power 2), low frequencies first; frames past the chunk's last one stay 0.

    Equivalent to librosa.stft(center=True, pad_mode="constant") per chunk followed by the
    filterbank, but only the ``width`` frames and the band's bins that the image uses are
    computed, in single precision (by the FFT :func:`fastest_rfft` picks on this CPU).
    """
    scratch = _scratch_for(params)
    out = np.zeros((len(block), params.height, params.width), np.float32)
    for chunk, bands in zip(block, out):
        _chunk_bands(chunk, scratch, power, bands)
    return out


def natural_log(values: np.ndarray) -> np.ndarray:
    """In-place natural log of positive float32 values: OpenCV's vectorised log is about 15x
    faster than numpy's here, and the log is a large share of an image's cost."""
    flat = values.reshape(-1, values.shape[-1])
    cv2.log(flat, dst=flat)
    return values


def scale_to_image(bands: np.ndarray, params: SpecParams, out: np.ndarray | None = None) -> np.ndarray:
    """One chunk's band magnitudes (height, width), overwritten -> compressed amplitudes ->
    values in [0, 1], high frequencies on top (into ``out`` when given)."""
    if params.amplitude == "db" and params.normalization == "chunk":
        # The baseline's image: dB below the peak, floored at top_db, min-max scaled. The same
        # values come from flooring the magnitudes at peak - top_db, taking the natural log and
        # min-max scaling (the dB factor and the peak offset cancel): four passes instead of nine.
        floor = max(1e-5, float(bands.max()) * 10.0 ** (-params.top_db / 20.0))
        values = natural_log(np.maximum(bands, np.float32(floor), out=bands))
        cv2.normalize(values, values, 0.0, 1.0, cv2.NORM_MINMAX)  # a flat chunk gives zeros
        return cv2.flip(values, 0, dst=out)
    if params.amplitude == "db":
        values = natural_log(np.maximum(bands, 1e-5, out=bands))
        values *= 20.0 / np.log(10.0)
        values -= values.max()
        np.maximum(values, -params.top_db, out=values)
    elif params.amplitude == "log_power":  # absolute level: loud and quiet chunks stay apart
        values = natural_log(np.maximum(bands, 1e-10, out=bands))
        values *= 10.0 / np.log(10.0)
    else:  # per-channel energy normalisation: adaptive gain against stationary background noise
        values = librosa.pcen(bands * float(2 ** 31), sr=params.sample_rate,
                              hop_length=params.hop_length, axis=-1).astype(np.float32)
    if params.normalization == "chunk":
        low, span = values.min(), values.max() - values.min()
        values -= low
        values /= span if span > 0 else 1.0
    else:
        low, high = params.value_range
        values = np.clip((values - low) / (high - low), 0.0, 1.0)
    return cv2.flip(values, 0, dst=out)


def chunk_images(chunks: np.ndarray, params: SpecParams, fft: str | None = None) -> np.ndarray:
    """(n, chunk_samples) float chunks -> (n, height, width) float32 images in [0, 1].

    ``fft`` (a key of RFFTS) fixes the FFT library; by default this process's fastest. The two
    agree to float rounding, which can still move a pixel of an 8-bit image by one step, so a
    store is written with one (see :func:`utils.extract.extract_to_store`).
    """
    scratch, power = _scratch_for(params, fft), 2 if params.amplitude == "log_power" else 1
    bands = scratch.bands
    out = np.empty((len(chunks), params.height, params.width), np.float32)
    for chunk, image in zip(chunks, out):  # one chunk at a time: its arrays stay in cache
        _chunk_bands(chunk, scratch, power, bands)
        scale_to_image(bands, params, out=image)
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 chunk images (n, height, width), as stored, -> the model's float input (n, height, width, 1)."""
    return images[..., None].astype(np.float32) / 255.0
