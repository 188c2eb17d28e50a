import zipfile

import numpy as np
import pytest

from utils.model_io import ModelFileError, load_model, read_calibration, read_model_meta, save_model
from utils.models import build_model

pytestmark = pytest.mark.backend  # also run on JAX by `make test`


def test_model_round_trip_keeps_classes_settings_and_predictions(tmp_path):
    model = build_model("resnet", (16, 32, 1), 3, filters=[4, 8], dropout=0.0)
    meta = {"classes": ["a", "b", "c"], "spec": {"height": 16, "width": 32}}
    save_model(model, tmp_path / "m.keras", meta)
    loaded, loaded_meta = load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((2, 16, 32, 1)).astype("float32")
    assert loaded_meta == meta
    assert np.allclose(model.predict_on_batch(x), loaded.predict_on_batch(x), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary files left


def test_calibration_chunks_travel_in_the_model_file(tmp_path):
    model = build_model("resnet", (16, 32, 1), 3, filters=[4, 8])
    chunks = np.random.default_rng(0).integers(0, 256, (5, 16, 32), dtype=np.uint8)
    save_model(model, tmp_path / "with.keras", {"classes": ["a", "b", "c"]}, chunks)
    save_model(model, tmp_path / "without.keras", {"classes": ["a", "b", "c"]})
    got = read_calibration(tmp_path / "with.keras")
    assert got.dtype == np.uint8 and np.array_equal(got, chunks)
    assert read_calibration(tmp_path / "without.keras") is None
    loaded, meta = load_model(tmp_path / "with.keras")  # Keras ignores the extra member
    assert meta["classes"] == ["a", "b", "c"] and loaded.input_shape == model.input_shape
    with pytest.raises(ModelFileError, match="model not found"):
        read_calibration(tmp_path / "missing.keras")


def test_only_native_keras_files_of_this_suite_load(tmp_path):
    model = build_model("resnet", (16, 32, 1), 2, filters=[4])
    with pytest.raises(ModelFileError, match="native .keras"):
        save_model(model, tmp_path / "m.h5", {})
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ModelFileError, match="only native .keras"):
        read_model_meta(tmp_path / "m.pkl")
    model.save(tmp_path / "plain.keras")
    with pytest.raises(ModelFileError, match="not a model of this suite"):
        load_model(tmp_path / "plain.keras")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(tmp_path / "broken.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as z:
        assert "bioacoustics.json" not in z.namelist()
