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
    # A file's last chunk is zero-padded, and its padding is all floor. Counted in the row medians
    # it pulls them to 0 once it fills half the chunk, and every sound pixel then passes: a tail
    # of steady song became "signal" while the rest of its file was noise. The medians and the
    # fraction are taken over the columns that hold sound.
    live = images.max(axis=1) > 0                                   # (n, width)
    heard = live.any(axis=1)                    # chunks with any sound at all
    padded = ~live.all(axis=1)                  # padded tails (or silence): rare, redone alone
    row_median = np.median(images, axis=2, keepdims=True)
    for i in np.flatnonzero(padded & heard):
        row_median[i] = np.median(images[i][:, live[i]], axis=1, keepdims=True)
    column_median = np.median(images, axis=1, keepdims=True)
    mask = ((images >= row_median * ROW_FACTOR) & (images >= column_median * COLUMN_FACTOR)
            & (images > 0)).astype(np.uint8)
    out = np.zeros(len(images), np.float64)
    for i, m in enumerate(mask):
        if not heard[i]:
            continue  # all floor: nothing to hear
        m = cv2.medianBlur(m, 3)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _KERNEL)
        out[i] = m[:, live[i]].mean() if padded[i] else m.mean()  # no copy for a full chunk
    return out


def mostly_noise_recordings(index, threshold: float, share: float = 0.5) -> dict[str, dict[str, float]]:
    """Recordings of whose stored chunks the gate scored ``share`` or more below ``threshold``
    (noise), by class: label -> {recording: share}. A song that never stops (cicadas, crickets,
    frog choruses) has few pixels above its own row medians, so this detector of calls that stand
    out takes it for noise, and the user should know what it judged so. ``index`` is a store
    index (label, recording and s2n columns); the gate's verdict is read from s2n, since
    MIN_SIGNAL_SHARE may have kept some of those chunks as signal."""
    shares = (index["s2n"] < threshold).groupby([index["label"], index["recording"]]).mean()
    out: dict[str, dict[str, float]] = {}
    for (label, recording), s in shares[shares >= share].items():
        out.setdefault(str(label), {})[str(recording)] = round(float(s), 3)
    return dict(sorted(out.items(), key=lambda item: -len(item[1])))
