"""The LiteRT runtime: exported once, checked against Keras, the same scores in worker processes;
the int8 export: calibrated on the chunks a model file carries, checked, used where faster."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from utils import steps
from utils.audio import write_audio
from utils.inference import load_ensemble, score_files
from utils.model_io import read_calibration
from utils.runtime import (BATCH, LiteRTScorer, choose_runtime, exported_path, litert_possible,
                           int8_path, machine_name, runtime_name, top_class_agreement)
from utils.spectrogram import model_input

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None or
                                os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                                reason="LiteRT needs ai-edge-litert and the TensorFlow backend")


@pytest.fixture(scope="module")
def model_file(trained):
    return steps.run_dir(trained) / "best.keras"


def test_runtime_choice():
    assert litert_possible() == ""
    assert choose_runtime("auto") == "litert" and choose_runtime("keras") == "keras"
    with pytest.raises(ValueError, match="SCORING_RUNTIME must be one of"):
        choose_runtime("onnx")


def test_export_is_checked_reused_and_scores_like_keras(model_file):
    (keras_member,), _ = load_ensemble([model_file], runtime="keras")
    (member,), _ = load_ensemble([model_file], runtime="litert")
    assert member.runtime_file == str(exported_path(model_file)) and not keras_member.runtime_file
    made = os.stat(member.runtime_file).st_mtime_ns
    (again,), _ = load_ensemble([model_file], runtime="auto", int8=False)
    assert again.runtime_file == member.runtime_file and os.stat(member.runtime_file).st_mtime_ns == made
    images = np.random.default_rng(1).random((BATCH * 2 + 5, *member.model.input_shape[1:]), np.float32)
    litert = LiteRTScorer(member.runtime_file).predict_on_batch(images)
    assert litert.shape == (len(images), len(member.meta["classes"]))
    assert np.abs(litert - np.asarray(member.model.predict_on_batch(images))).max() < 1e-4


@pytest.mark.parametrize("workers", [1, 2])
def test_scoring_in_workers_equals_keras(trained, model_file, tmp_path, workers):
    (member,), _ = load_ensemble([model_file], runtime="litert")
    rng = np.random.default_rng(2)
    paths = []
    for k, seconds in enumerate((0.5, 3.0, 9.0)):
        paths.append(tmp_path / f"{k}.wav")
        write_audio(paths[-1], rng.normal(0, 0.1, int(seconds * trained.SAMPLE_RATE)), trained.SAMPLE_RATE)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    paths.insert(1, broken)
    expected = list(score_files(member.model, member.params, paths))
    got = list(score_files(None, member.params, paths, workers=workers, segment_seconds=4.0,
                           runtime_file=member.runtime_file))
    assert [g.path for g in got] == [str(p) for p in paths]
    assert got[1].scores is None and got[1].error == expected[1].error
    for a, b in zip(expected[::2] + expected[3:], got[::2] + got[3:]):
        assert np.array_equal(a.starts, b.starts)
        assert np.abs(a.scores - b.scores).max() < 1e-4


def test_a_read_only_model_folder_exports_to_the_temporary_folder(model_file, monkeypatch):
    import utils.runtime

    assert exported_path(model_file).parent == model_file.parent
    # as on Kaggle, where models come from a read-only input folder (root could write anyway)
    monkeypatch.setattr(utils.runtime.os, "access", lambda path, mode: False)
    target = exported_path(model_file)
    assert target.parent.name.startswith("bioacoustics-litert-") and target.name.startswith("best.")


def test_added_input_channels_export_and_score_like_keras(tmp_path):
    """The background channel's median and the position ramp run in LiteRT's own kernels (a median
    by sorting did not: its export fell back to Keras)."""
    from utils.models import build_model
    from utils.runtime import export_litert, score_difference

    shape = (32, 64, 1)
    model = build_model("resnet", shape, 3, filters=[8, 16], head="frequency_global",
                        background_channel=True, frequency_channel=True)
    model.save(tmp_path / "m.keras")
    exported = export_litert(model, tmp_path / "m.keras", shape)
    assert score_difference(model, exported, shape) < 1e-4


def test_trained_models_carry_training_chunks_for_calibration(trained, model_file):
    from utils.store import Store

    chunks = read_calibration(model_file)
    store = Store(steps.store_root(trained))
    train = store.index[(store.index["split"] == "train") & ~store.index["noise"]]
    assert chunks.dtype == np.uint8 and len(chunks) == min(32, len(train))
    stored = np.round(store.images(train["shard"].to_numpy(), train["row"].to_numpy()) * 255)
    assert all((stored == chunk).all(axis=(1, 2)).any() for chunk in chunks)  # training chunks, each
    for other in (model_file.with_name("last.keras"), *model_file.parent.glob("snapshots/*.keras")):
        assert np.array_equal(read_calibration(other), chunks)


def test_top_class_agreement_forgives_swaps_of_near_equal_scores():
    reference = np.array([[0.90, 0.05, 0.05], [0.34, 0.33, 0.33], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1]])
    scores = np.array([[0.80, 0.10, 0.10], [0.30, 0.36, 0.34], [0.4, 0.6, 0.0], [0.2, 0.7, 0.1]])
    assert top_class_agreement(reference, scores) == 0.75  # only the third, 0.2 apart, disagrees


@pytest.fixture
def model_copy(model_file, tmp_path):
    """The trained model in a folder of its own, so that its exports start afresh."""
    return shutil.copy(model_file, tmp_path / "best.keras")


def test_auto_uses_the_int8_export_only_where_faster_and_keeps_its_verdict(model_copy, monkeypatch):
    import utils.runtime

    monkeypatch.setattr(utils.runtime, "seconds_per_chunk",
                        lambda path, images: 1.0 if str(path).endswith(".int8.tflite") else 2.0)
    (member,), _ = load_ensemble([model_copy], runtime="auto")
    assert member.runtime_file == str(int8_path(exported_path(model_copy)))
    assert runtime_name(member.runtime_file) == "litert-int8" and runtime_name("") == "keras"
    verdict = int8_path(exported_path(model_copy)).with_suffix(".json")
    assert json.loads(verdict.read_text()) == {"use": True, "speedup": 2.0, "machine": machine_name()}
    images = model_input(read_calibration(model_copy))
    int8 = LiteRTScorer(member.runtime_file).predict_on_batch(images)
    assert top_class_agreement(np.asarray(member.model.predict_on_batch(images)), int8) >= 0.9
    monkeypatch.setattr(utils.runtime, "seconds_per_chunk", lambda *a: pytest.fail("timed again"))
    (again,), _ = load_ensemble([model_copy], runtime="auto")
    assert again.runtime_file == member.runtime_file
    (evaluated,), _ = load_ensemble([model_copy], runtime="auto", int8=False)  # test.py's scores
    assert evaluated.runtime_file == str(exported_path(model_copy))
    assert runtime_name(evaluated.runtime_file) == "litert"
    # the model folder copied to a machine with another CPU: timed again there, not trusted
    monkeypatch.setattr(utils.runtime, "machine_name", lambda: "another CPU, 64 cores")
    monkeypatch.setattr(utils.runtime, "seconds_per_chunk",
                        lambda path, images: 3.0 if str(path).endswith(".int8.tflite") else 2.0)
    (elsewhere,), _ = load_ensemble([model_copy], runtime="auto")
    assert elsewhere.runtime_file == str(exported_path(model_copy))
    assert json.loads(verdict.read_text()) == {"use": False, "speedup": 0.67,
                                               "machine": "another CPU, 64 cores"}


def test_auto_keeps_the_float_export_where_int8_is_slower(model_copy, monkeypatch):
    import utils.runtime

    monkeypatch.setattr(utils.runtime, "seconds_per_chunk",
                        lambda path, images: 1.0 if str(path).endswith(".int8.tflite") else 1.05)
    (member,), _ = load_ensemble([model_copy], runtime="auto")
    assert member.runtime_file == str(exported_path(model_copy))
    assert json.loads(int8_path(exported_path(model_copy)).with_suffix(".json").read_text())["use"] is False


def test_an_int8_export_that_changes_top_classes_is_not_used(model_copy, monkeypatch):
    import utils.runtime

    monkeypatch.setattr(utils.runtime, "INT8_AGREEMENT", 1.01)  # no export can pass
    with pytest.raises(ValueError, match="keeps the top class of only"):
        load_ensemble([model_copy], runtime="litert-int8")
    assert not int8_path(exported_path(model_copy)).exists()
    (member,), _ = load_ensemble([model_copy], runtime="auto")
    assert member.runtime_file == str(exported_path(model_copy))
    verdict = json.loads(int8_path(exported_path(model_copy)).with_suffix(".json").read_text())
    assert verdict["use"] is False and "top class" in verdict["reason"]


def test_int8_needs_calibration_chunks(tmp_path):
    from utils.model_io import save_model
    from utils.models import build_model

    model = build_model("resnet", (32, 64, 1), 3, filters=[8, 16])
    save_model(model, tmp_path / "m.keras", {"classes": ["a", "b", "c"]})  # as before they were kept
    with pytest.raises(ValueError, match="no calibration chunks"):
        load_ensemble([tmp_path / "m.keras"], runtime="litert-int8")
    (member,), _ = load_ensemble([tmp_path / "m.keras"], runtime="auto")
    assert member.runtime_file == str(exported_path(tmp_path / "m.keras"))
