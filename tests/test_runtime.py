"""The LiteRT runtime: exported once, checked against Keras, the same scores in worker processes."""
import importlib.util
import os

import numpy as np
import pytest

from utils import steps
from utils.audio import write_audio
from utils.inference import load_ensemble, score_files
from utils.runtime import BATCH, LiteRTScorer, choose_runtime, exported_path, litert_possible

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
    (again,), _ = load_ensemble([model_file], runtime="auto")
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
