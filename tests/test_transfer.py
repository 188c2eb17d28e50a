"""Distillation from teachers and training from a pretrained model."""
import numpy as np
import pytest

from utils import steps
from utils.model_io import load_model
from utils.store import Store
from utils.training import select_chunks
from utils.transfer import blend_targets, teacher_scores

pytestmark = pytest.mark.backend  # also run on JAX by `make test`


@pytest.fixture(scope="module")
def teacher(trained):
    """The session's tiny trained run serves as the teacher (and the pretrained start)."""
    return trained, steps.run_dir(trained) / "best.keras"


def test_teacher_scores_follow_the_student_class_order(teacher):
    s, path = teacher
    store = Store(steps.store_root(s))
    model, meta = load_model(path)
    classes = list(reversed(meta["classes"])) + ["unknown"]
    chunks = select_chunks(store.index, "train", meta["classes"], {}, False)
    scores = teacher_scores([str(path)], store, chunks.shards, chunks.rows, classes, meta["spec"])
    direct = np.asarray(model.predict(store.images(chunks.shards, chunks.rows)[..., None], verbose=0))
    assert np.allclose(scores[:, :-1], direct[:, ::-1], atol=1e-5) and (scores[:, -1] == 0).all()
    soft = teacher_scores([str(path)], store, chunks.shards, chunks.rows, meta["classes"],
                          meta["spec"], temperature=3.0)
    assert np.allclose(soft.sum(axis=1), 1, atol=1e-5) and soft.max() < direct.max()
    assert np.allclose(blend_targets(np.eye(3)[:1], np.full((1, 3), 1 / 3), 0.5), [[2 / 3, 1 / 6, 1 / 6]])


def test_student_trains_from_teachers_and_from_a_pretrained_start(teacher):
    s, path = teacher
    student = s.replace(RUN_NAME="student", TEACHER=[str(path)], TEACHER_WEIGHT=0.7, EPOCHS=2,
                        PRETRAINED=str(path), FREEZE_PRETRAINED=True, EARLY_STOPPING=0)
    assert steps.train_step(student)["epochs"] == 2
    before, _ = load_model(path)
    after, _ = load_model(path.parent.parent / "student" / "last.keras")
    frozen = after.get_layer("stem_conv").get_weights()[0]
    assert np.array_equal(frozen, before.get_layer("stem_conv").get_weights()[0])
    assert not np.array_equal(after.get_layer("scores").get_weights()[0],
                              before.get_layer("scores").get_weights()[0])


def test_a_teacher_with_other_spectrograms_is_refused(teacher, tmp_path):
    s, path = teacher
    other = s.replace(IMAGE_WIDTH=32, RUN_NAME="mismatch", TEACHER=[str(path)])
    steps.spec_step(other)
    with pytest.raises(ValueError, match="other spectrograms .*width"):
        steps.train_step(other)
    with pytest.raises(ValueError, match="other spectrograms .*width.*cannot teach or start"):
        steps.train_step(other.replace(TEACHER=[], PRETRAINED=str(path)))
