"""Synthetic bioacoustic recordings: distinct calls of made-up species in realistic background noise.

Used for the demo dataset and for tests, so a fresh machine needs no downloads. Each species has
its own call type (sweeps, trills, harmonic stacks, buzzes, FM whistles, click trains, note
sequences); every recording varies pitch, tempo and loudness a little, and calls sit in pink noise
plus low-frequency "wind" at a signal-to-noise ratio drawn per call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from utils.audio import write_audio

Call = Callable[[np.random.Generator, int, float], np.ndarray]


def _tone(freqs: np.ndarray, sr: int) -> np.ndarray:
    return np.sin(2 * np.pi * np.cumsum(freqs) / sr)


def _envelope(n: int, attack: float = 0.1) -> np.ndarray:
    a = max(1, int(n * attack))
    env = np.ones(n)
    env[:a] = np.linspace(0, 1, a)
    env[-a:] = np.linspace(1, 0, a)
    return env


def _sweep(f0: float, f1: float, seconds: float) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        return _tone(np.geomspace(f0 * scale, f1 * scale, n), sr) * _envelope(n)
    return call


def _trill(freq: float, rate: float, seconds: float, pulse: float = 0.008) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        out = np.zeros(n)
        p = int(pulse * sr)
        for start in np.arange(0, n - p, int(sr / (rate * rng.uniform(0.9, 1.1)))):
            out[start:start + p] = _tone(np.full(p, freq * scale), sr) * np.hanning(p)
        return out
    return call


def _harmonic(f0: float, n_harmonics: int, seconds: float, vibrato: float = 6.0) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        t = np.arange(n) / sr
        base = f0 * scale * (1 + 0.03 * np.sin(2 * np.pi * vibrato * t))
        out = sum(_tone(base * (k + 1), sr) / (k + 1) for k in range(n_harmonics))
        return out * _envelope(n)
    return call


def _buzz(low: float, high: float, seconds: float, am: float = 50.0) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        spectrum = np.fft.rfft(rng.normal(size=n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spectrum[(freqs < low * scale) | (freqs > high * scale)] = 0
        noise = np.fft.irfft(spectrum, n)
        noise /= np.abs(noise).max() + 1e-9
        t = np.arange(n) / sr
        return noise * (0.5 + 0.5 * np.sin(2 * np.pi * am * t)) * _envelope(n)
    return call


def _fm_whistle(freq: float, depth: float, rate: float, seconds: float) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        t = np.arange(n) / sr
        return _tone(freq * scale + depth * np.sin(2 * np.pi * rate * t), sr) * _envelope(n)
    return call


def _clicks(rate: float, seconds: float, cutoff: float = 2000.0) -> Call:
    def call(rng, sr, scale):
        n = int(seconds * rng.uniform(0.85, 1.15) * sr)
        out = np.zeros(n)
        width = int(0.003 * sr)
        for start in np.arange(0, n - width, int(sr / (rate * scale))):
            out[start:start + width] = rng.normal(size=width) * np.hanning(width)
        spectrum = np.fft.rfft(out)
        spectrum[np.fft.rfftfreq(n, 1 / sr) < cutoff] = 0
        return np.fft.irfft(spectrum, n)
    return call


def _notes(low: float, high: float, count: int, note: float = 0.06) -> Call:
    def call(rng, sr, scale):
        p = int(note * sr)
        return np.concatenate([_tone(np.full(p, rng.uniform(low, high) * scale), sr) * _envelope(p, 0.2)
                               for _ in range(count)])
    return call


SPECIES: dict[str, Call] = {
    "upsweep_chirper": _sweep(2000, 5000, 0.12),
    "downsweep_piper": _sweep(6000, 2500, 0.2),
    "fast_triller": _trill(4500, 30, 0.6),
    "harmonic_hooter": _harmonic(700, 5, 0.35),
    "band_buzzer": _buzz(6500, 8500, 0.4),
    "wobble_whistler": _fm_whistle(3000, 400, 4, 0.6),
    "click_ticker": _clicks(12, 1.0),
    "note_warbler": _notes(2500, 4500, 6),
}


def background_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pink noise plus low-frequency wind gusts, unit RMS."""
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum = np.fft.rfft(rng.normal(size=n)) / np.sqrt(np.maximum(freqs, 20.0))
    pink = np.fft.irfft(spectrum, n)
    wind_spec = np.fft.rfft(rng.normal(size=n))
    wind_spec[freqs > 300] = 0
    gust = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * np.arange(n) / sr)
    wind = np.fft.irfft(wind_spec, n) * gust
    mix = pink / (pink.std() + 1e-12) + 0.7 * wind / (wind.std() + 1e-12)
    return mix / (mix.std() + 1e-12)


def synth_recording(species: str, seconds: float, sr: int, rng: np.random.Generator,
                    snr_db: tuple[float, float] = (0.0, 20.0), calls_per_second: float = 0.6,
                    extra: str | None = None) -> np.ndarray:
    """One recording of ``species`` (and, quieter, ``extra`` in the background), float32 in [-1, 1]."""
    n = int(seconds * sr)
    noise = background_noise(rng, n, sr)
    signal = noise * 0.05
    scale = rng.uniform(0.92, 1.08)  # this individual's pitch
    for name, rate, level in ((species, calls_per_second, 0.0), (extra, calls_per_second / 2, -8.0)):
        if name is None:
            continue
        n_calls = max(1, rng.poisson(rate * seconds))
        for _ in range(n_calls):
            call = SPECIES[name](rng, sr, scale)[: n // 2]
            start = rng.integers(0, max(1, n - len(call)))
            snr = rng.uniform(*snr_db) + level
            gain = 0.05 * 10 ** (snr / 20) / (call.std() + 1e-12)
            signal[start:start + len(call)] += gain * call
    peak = np.abs(signal).max()
    return (signal / peak * 0.9 if peak > 0 else signal).astype(np.float32)


def make_dataset(out_dir: str | Path, n_species: int = 8, recordings_per_species: int = 8,
                 seconds: tuple[float, float] = (6.0, 12.0), sample_rate: int = 22050,
                 background_share: float = 0.25, unlabelled: int = 4, seed: int = 0) -> Path:
    """Write ``<out>/audio/<species>/*.wav``, ``<out>/labels.csv`` and ``<out>/unlabelled/*.wav``.

    labels.csv lists path, label and secondary_labels (a quieter second species in about
    ``background_share`` of the recordings). Returns the CSV path.
    """
    if not 2 <= n_species <= len(SPECIES):
        raise ValueError(f"n_species must be between 2 and {len(SPECIES)}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    names = list(SPECIES)[:n_species]
    rows = []
    for species in names:
        for k in range(recordings_per_species):
            extra = None
            if rng.random() < background_share:
                extra = str(rng.choice([s for s in names if s != species]))
            audio = synth_recording(species, rng.uniform(*seconds), sample_rate, rng, extra=extra)
            relative = Path("audio") / species / f"{species}_{k:03d}.wav"
            write_audio(out_dir / relative, audio, sample_rate)
            rows.append({"path": relative.as_posix(), "label": species,
                         "secondary_labels": str([extra] if extra else [])})
    for k in range(unlabelled):
        species = str(rng.choice(names))
        audio = synth_recording(species, rng.uniform(*seconds), sample_rate, rng)
        write_audio(out_dir / "unlabelled" / f"soundscape_{k:03d}.wav", audio, sample_rate)
    csv_path = out_dir / "labels.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    return csv_path
