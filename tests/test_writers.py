import numpy as np
import pytest

from utils.writers import check_topn_csv, topn_table, write_topn_csv

CLASSES = ["a", "b", "c"]


def test_topn_rows_ranked_by_score(tmp_path):
    table = topn_table(["r1", "r2"], np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]]), CLASSES, 2)
    assert table.values.tolist() == [["r1", "b", 0.7, 1], ["r1", "c", 0.2, 2],
                                     ["r2", "a", 0.5, 1], ["r2", "c", 0.4, 2]]
    write_topn_csv(tmp_path / "s.csv", table)
    assert check_topn_csv(tmp_path / "s.csv", CLASSES, 2) == []


@pytest.mark.parametrize("body, problem", [
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,zz,0.4,2\n", "unknown classes"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,b,0.6,2\n", "descending"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,b,0.4,3\n", "ranks"),
    ("recording,class,score,rank\nr1,a,0.5,1\nr1,a,0.4,2\n", "twice"),
    ("rec,class,score,rank\nr1,a,0.5,1\n", "columns"),
])
def test_checker_finds_broken_files(tmp_path, body, problem):
    (tmp_path / "s.csv").write_text(body)
    assert any(problem in p for p in check_topn_csv(tmp_path / "s.csv", CLASSES, 2))
