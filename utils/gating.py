"""Rule-based signal/noise estimate of a spectrogram chunk (BirdCLEF 2018 baseline).

A pixel counts as signal when it is louder than 1.25x its row (frequency band) median and 1.15x
its column (time frame) median; isolated pixels are removed with a 3x3 median blur and gaps closed
with a 3x3 morphological closing. The estimate is the fraction of signal pixels: chunks below a
threshold hold no call and go to the noise set.
"""
from __future__ import annotations

import cv2
import numpy as np

ROW_FACTOR = 1.25
COLUMN_FACTOR = 1.15
_KERNEL = np.ones((3, 3), np.uint8)


def signal_fraction(images: np.ndarray) -> np.ndarray:
    """(n, height, width) images in [0, 1] -> (n,) fraction of signal pixels."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        images = images[None]
    row_median = np.median(images, axis=2, keepdims=True)
    column_median = np.median(images, axis=1, keepdims=True)
    mask = ((images >= row_median * ROW_FACTOR) & (images >= column_median * COLUMN_FACTOR)
            & (images > 0)).astype(np.uint8)
    out = np.empty(len(images), np.float64)
    for i, m in enumerate(mask):
        m = cv2.medianBlur(m, 3)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _KERNEL)
        out[i] = m.mean()
    return out


def mostly_noise_recordings(index, share: float = 0.5) -> dict[str, dict[str, float]]:
    """Recordings whose stored chunks the gate marked as noise at ``share`` or more, by class:
    label -> {recording: share}. A song that never stops (cicadas, crickets, frog choruses) has
    few pixels above its own row medians, so this detector of calls that stand out takes it for
    noise, and the user should know before those chunks are left out of training. ``index`` is
    a store index (label, recording and noise columns)."""
    shares = index.groupby(["label", "recording"])["noise"].mean()
    out: dict[str, dict[str, float]] = {}
    for (label, recording), s in shares[shares >= share].items():
        out.setdefault(str(label), {})[str(recording)] = round(float(s), 3)
    return dict(sorted(out.items(), key=lambda item: -len(item[1])))
