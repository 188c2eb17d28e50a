"""Every submission writer's output passes its checker, and each checker catches what it must."""
import numpy as np
import pandas as pd
import pytest

from utils import formats as fm

CODES = ["amerob", "barswa", "comrav"]


def soundscape(recording="7019_COR_20190904", duration=12.0, seed=0):
    """5-s windows of a 12-s file: [0, 5), [5, 10), and the partial [10, 12)."""
    starts = np.arange(0, duration, 5.0)
    scores = np.random.default_rng(seed).random((len(starts), len(CODES)))
    return fm.FileScores(recording, starts, np.minimum(starts + 5, duration), scores)


def test_birdclef2018_monophone_top_100():
    files = [fm.FileScores("m1", np.zeros(1), np.ones(1), np.array([[0.2, 0.7, 0.1]]))]
    text = fm.birdclef2018_mono(files, CODES)
    assert text.splitlines() == ["m1;barswa;0.700000;1", "m1;amerob;0.200000;2", "m1;comrav;0.100000;3"]
    assert fm.check_birdclef2018_mono(text, CODES) == []
    swapped = text.replace(";1\n", ";9\n")
    assert "ranks" in fm.check_birdclef2018_mono(swapped, CODES)[0]
    assert "unknown" in fm.check_birdclef2018_mono(text.replace("barswa", "dodo"), CODES)[0]


def test_birdclef2018_soundscape_keeps_the_last_partial_window():
    text = fm.birdclef2018_soundscape([soundscape("s1")], CODES, top=2)
    spans = [line.split(";")[1] for line in text.splitlines()]
    assert spans == ["00:00:00-00:00:05"] * 2 + ["00:00:05-00:00:10"] * 2 + ["00:00:10-00:00:12"] * 2
    assert fm.check_birdclef2018_soundscape(text, CODES, {"s1": 12.0}) == []
    # the 2018 script's bug: the partial window dropped
    dropped = "".join(line + "\n" for line in text.splitlines() if "00:00:10-" not in line)
    assert "last partial window is missing" in fm.check_birdclef2018_soundscape(dropped, CODES, {"s1": 12.0})[0]
    assert fm.hms(3725.2) == "01:02:06"


def test_kaggle2021_row_ids_threshold_and_nocall():
    f = soundscape()
    f.scores = np.array([[0.9, 0.6, 0.1], [0.1, 0.2, 0.3], [0.1, 0.1, 0.55]])
    text = fm.kaggle2021([f], CODES, threshold=0.5)
    table = pd.read_csv(pd.io.common.StringIO(text))
    assert table["row_id"].tolist() == ["7019_COR_5", "7019_COR_10", "7019_COR_15"]
    assert table["birds"].tolist() == ["amerob barswa", "nocall", "comrav"]
    assert fm.check_kaggle2021(text, CODES, ["7019_COR_5", "7019_COR_10", "7019_COR_15"]) == []
    assert "missing" in fm.check_kaggle2021(text, CODES, ["7019_COR_5"])[0]
    assert fm.check_kaggle2021(text.replace("nocall", ""), CODES)  # an empty cell is wrong


def test_kaggle_probability_columns_follow_the_challenge_order():
    f = soundscape("soundscape_1")
    columns = ["comrav", "zebfin", "amerob"]  # the challenge's order; zebfin unknown to the model
    text, missing = fm.kaggle_probabilities([f], CODES, columns)
    table = pd.read_csv(pd.io.common.StringIO(text))
    assert missing == ["zebfin"] and list(table.columns) == ["row_id", *columns]
    assert table["row_id"].tolist() == ["soundscape_1_5", "soundscape_1_10", "soundscape_1_15"]
    assert np.allclose(table["comrav"], f.scores[:, 2], atol=1e-6) and (table["zebfin"] == 0).all()
    assert fm.check_kaggle_probabilities(text, columns, table["row_id"].tolist()) == []
    assert fm.check_kaggle_probabilities(text, ["amerob", "comrav", "zebfin"])  # wrong order


def test_users_formats_carry_detections_above_the_minimum_score():
    f = soundscape("site A")
    f.scores = np.array([[0.9, 0.05, 0.1], [0.1, 0.2, 0.3], [0.1, 0.1, 0.55]])
    csv = fm.detections_csv([f], CODES, min_score=0.25)
    table = pd.read_csv(pd.io.common.StringIO(csv))
    assert table[["start", "end", "class"]].values.tolist() == [
        [0.0, 5.0, "amerob"], [5.0, 10.0, "comrav"], [10.0, 12.0, "comrav"]]
    assert fm.check_detections_csv(csv, CODES, 0.25) == []
    raven = fm.raven_table(f, CODES, 0.25, fmin=500, fmax=15000)
    assert fm.check_raven_table(raven, CODES, 0.25) == []
    assert raven.splitlines()[1].split("\t")[:5] == ["1", "Spectrogram 1", "1", "0.0", "5.0"]
    labels = fm.audacity_labels(f, CODES, 0.25)
    assert labels.splitlines()[0] == "0.000\t5.000\tamerob (0.900)"
    assert fm.check_audacity_labels(labels, CODES) == []
    assert fm.check_audacity_labels("1.0 2.0 amerob\n", CODES)  # spaces instead of tabs


@pytest.mark.parametrize("bad, message", [("0.0,5.0,amerob,1.5", "outside"), ("3.0,1.0,amerob,0.5", "ends before")])
def test_detections_checker_catches_bad_rows(bad, message):
    text = "file,start,end,class,score\nx," + bad + "\n"
    assert message in " ".join(fm.check_detections_csv(text, CODES))


def test_topn_rows_ranked_by_score():
    files = [fm.FileScores(r, np.zeros(1), np.ones(1), np.array([s]))
             for r, s in (("r1", [0.1, 0.7, 0.2]), ("r2", [0.5, 0.1, 0.4]))]
    text = fm.topn_csv(files, ["a", "b", "c"], 2)
    assert text.splitlines()[1:] == ["r1,b,0.7,1", "r1,c,0.2,2", "r2,a,0.5,1", "r2,c,0.4,2"]
    assert fm.check_topn_csv(text, ["a", "b", "c"], 2) == []


@pytest.mark.parametrize("body, problem", [
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,zz,0.4,2\n", "unknown classes"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,b,0.6,2\n", "descending"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,b,0.4,3\n", "ranks"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,a,0.4,2\n", "twice"),
    ("rec,class,score,rank\nr1,a,0.5,1\n", "columns"),
])
def test_topn_checker_finds_broken_files(body, problem):
    assert any(problem in p for p in fm.check_topn_csv(body, ["a", "b", "c"], 2))
