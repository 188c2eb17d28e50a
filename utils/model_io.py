"""Saving and loading models together with what they were trained on.

A model file is a native ``.keras`` archive with one extra member, ``bioacoustics.json``: the class
list and the spectrogram settings of training. Test and submission code reads both from the file,
so they cannot score with other settings than the model was trained with. Loading uses Keras safe
mode (no pickled or arbitrary code from the file).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from utils.fileio import atomic_path

META_MEMBER = "bioacoustics.json"


class ModelFileError(ValueError):
    pass


def save_model(model, path: str | Path, meta: dict[str, Any]) -> None:
    """Save atomically: a reader never sees a half-written model file."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"models are saved in the native .keras format, not {path.name}")
    with atomic_path(path) as tmp:
        keras_tmp = tmp.with_suffix(".keras")
        model.save(keras_tmp)
        with zipfile.ZipFile(keras_tmp, "a") as archive:
            archive.writestr(META_MEMBER, json.dumps(meta, indent=2, sort_keys=True))
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


def load_model(path: str | Path):
    """(keras model, metadata) from a file written by :func:`save_model`."""
    import keras

    import utils.models  # noqa: F401  (registers the custom layers a model file may name)

    meta = read_model_meta(path)
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    return model, meta
