"""Saving and loading models together with what they were trained on.

A model file is a native ``.keras`` archive with extra members: ``bioacoustics.json``, the class
list and the spectrogram settings of training, and ``calibration.npy``, a few training chunks that
an int8 export calibrates its activation ranges on (utils.runtime). Test and submission code reads
both from the file, so they cannot score with other settings than the model was trained with, and a
model copied alone still has what its export needs. Loading uses Keras safe mode (no pickled or
arbitrary code from the file).
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from utils.fileio import atomic_path

META_MEMBER = "bioacoustics.json"
CALIBRATION_MEMBER = "calibration.npy"


class ModelFileError(ValueError):
    pass


def save_model(model, path: str | Path, meta: dict[str, Any], calibration: np.ndarray | None = None
               ) -> None:
    """Save atomically: a reader never sees a half-written model file. ``calibration``: uint8
    spectrogram chunks (n, height, width) of the training data, kept for an int8 export."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"models are saved in the native .keras format, not {path.name}")
    with atomic_path(path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        model.save(keras_tmp)
        with zipfile.ZipFile(keras_tmp, "a") as archive:
            archive.writestr(META_MEMBER, json.dumps(meta, indent=2, sort_keys=True))
            if calibration is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(calibration, np.uint8), allow_pickle=False)
                archive.writestr(CALIBRATION_MEMBER, buffer.getvalue(), zipfile.ZIP_DEFLATED)
        keras_tmp.replace(tmp)


def read_model_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model not found: {path}")
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: only native .keras model files are loaded")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(META_MEMBER))
    except KeyError:
        raise ModelFileError(f"{path}: not a model of this suite (no {META_MEMBER})") from None
    except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: damaged model file ({exc})") from None


def read_calibration(path: str | Path) -> np.ndarray | None:
    """The uint8 training chunks saved with a model, or None (a model saved without them)."""
    read_model_meta(path)  # the same checks and errors as for the metadata
    with zipfile.ZipFile(path) as archive:
        if CALIBRATION_MEMBER not in archive.namelist():
            return None
        return np.load(io.BytesIO(archive.read(CALIBRATION_MEMBER)), allow_pickle=False)


def load_model(path: str | Path):
    """(keras model, metadata) from a file written by :func:`save_model`."""
    import keras

    import utils.models  # noqa: F401  (registers the custom layers a model file may name)

    meta = read_model_meta(path)
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return model, meta
