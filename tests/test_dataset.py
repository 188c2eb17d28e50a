import json
from pathlib import Path
from collections import Counter

import numpy as np
import pytest

from utils.audio import write_audio
from utils.dataset import (RawItem, assign_splits, load_recordings, parse_label_list, scan_csv,
                           scan_folders, sort_dataset)


def wav(path, seconds=1.0, sr=8000):
    write_audio(path, np.random.default_rng(0).normal(0, 0.1, int(seconds * sr)), sr)
    return path


@pytest.mark.parametrize("text, expected", [
    ("['a b', 'c']", ["a b", "c"]), ("a;b", ["a", "b"]), ("", []), ("[]", []), ("x|y", ["x", "y"]),
])
def test_secondary_label_formats(text, expected):
    assert parse_label_list(text) == expected


def test_split_is_stratified_by_recording():
    items = [RawItem(f"{label}{i}.wav", label) for label, n in (("a", 10), ("b", 2), ("c", 1))
             for i in range(n)]
    split = assign_splits(items, 0.2, seed=1)
    counts = Counter((i.label, i.split) for i in split)
    assert counts[("a", "val")] == 2 and counts[("a", "train")] == 8
    assert counts[("b", "val")] == 1 and counts[("b", "train")] == 1
    assert counts[("c", "train")] == 1
    again = assign_splits([RawItem(i.source, i.label) for i in items], 0.2, seed=1)
    assert [i.split for i in again] == [i.split for i in split]


def test_given_splits_are_kept():
    items = [RawItem("a.wav", "x", split="test"), RawItem("b.wav", "x"), RawItem("c.wav", "x")]
    assert [i.split for i in assign_splits(items, 0.5, 0)][0] == "test"


def test_csv_with_splits_secondary_labels_and_bad_rows(tmp_path):
    for name in ("a", "b", "c", "d"):
        wav(tmp_path / "audio" / f"{name}.wav")
    (tmp_path / "list.csv").write_text(
        "file,species,others,split\n"
        "audio/a.wav,Sp A,\"['Sp B']\",train\naudio/b.wav,Sp B,,validation\n"
        "audio/c.wav,Sp A,,test\naudio/d.wav,Sp B,,unlisted\naudio/e.wav,,,train\n")
    items, skipped = scan_csv(tmp_path / "list.csv", "file", "species", "others", "split")
    assert [(i.label, i.split, i.background) for i in items] == [
        ("Sp A", "train", ["Sp B"]), ("Sp B", "val", []), ("Sp A", "test", [])]
    assert [s["reason"] for s in skipped] == ["split 'unlisted' is not train/val/test", "empty label"]
    with pytest.raises(ValueError, match="no column 'path'"):
        scan_csv(tmp_path / "list.csv")


@pytest.mark.parametrize("mode", ["copy", "symlink", "move"])
def test_sorting_modes_and_rerun(tmp_path, mode):
    raw = tmp_path / "raw"
    for label in ("Parus major", "../evil", "a/b"):
        for k in range(2):
            wav(raw / label.replace("/", "_").replace("..", "dots") / f"rec {k}.wav")
    items = scan_folders(raw)
    for item, label in zip(items, ["Parus major"] * 2 + ["a/b"] * 2 + ["../evil"] * 2):
        item.label = label  # labels that are not folder names
    items = assign_splits(items, 0.5, seed=0)
    out = tmp_path / "dataset"
    summary = sort_dataset(items, out, mode)
    assert summary["sorted"] == 6 and not summary["problems"]
    records = load_recordings(out)
    assert len(records) == 6 and len({r.id for r in records}) == 6  # "rec 0" exists in 3 classes
    for record in records:
        path = record.path(out)
        assert path.exists() and path.parent.parent.parent == out
        assert ".." not in record.file.split("/")
    assert {r.primary for r in records} == {"Parus major", "../evil", "a/b"}
    assert any(not Path(i.source).exists() for i in items) == (mode == "move")
    assert sort_dataset(items, out, mode)["already_done"] == 6


def test_unreadable_and_missing_files_are_reported_not_sorted(tmp_path):
    (tmp_path / "raw" / "x").mkdir(parents=True)
    (tmp_path / "raw" / "x" / "broken.wav").write_bytes(b"garbage")
    wav(tmp_path / "raw" / "x" / "fine.wav")
    items = assign_splits(scan_folders(tmp_path / "raw") + [RawItem(str(tmp_path / "gone.wav"), "x")],
                          0.0, 0)
    summary = sort_dataset(items, tmp_path / "ds", "copy")
    assert summary["sorted"] == 1
    reasons = sorted(p["reason"].split(" (")[0] for p in summary["problems"])
    assert reasons == ["file not found", "unreadable audio"]
    meta = json.loads(next((tmp_path / "ds" / "metadata").glob("*.json")).read_text())
    assert meta["primary"] == "x" and meta["sample_rate"] == 8000 and meta["duration"] == 1.0


def test_csv_group_column_reaches_the_metadata(tmp_path):
    for name in ("a", "b"):
        wav(tmp_path / "audio" / f"{name}.wav")
    (tmp_path / "list.csv").write_text("path,label,author\naudio/a.wav,x,Ann\naudio/b.wav,y,\n")
    items, _ = scan_csv(tmp_path / "list.csv", group_column="author")
    sort_dataset(assign_splits(items, 0.0, seed=0), tmp_path / "dataset")
    assert {r.id: r.group for r in load_recordings(tmp_path / "dataset")} == {"a": "Ann", "b": ""}
    with pytest.raises(ValueError, match="no column 'site'"):
        scan_csv(tmp_path / "list.csv", group_column="site")


def test_a_file_listed_twice_is_sorted_once_and_reported(tmp_path):
    wav(tmp_path / "audio" / "a.wav")
    wav(tmp_path / "audio" / "b.wav")
    (tmp_path / "list.csv").write_text("path,label\naudio/a.wav,x\naudio/b.wav,x\naudio/a.wav,y\n")
    items, _ = scan_csv(tmp_path / "list.csv")
    summary = sort_dataset(assign_splits(items, 0.0, seed=0), tmp_path / "dataset")
    assert summary["sorted"] == 2
    assert [p["reason"] for p in summary["problems"]] == [
        "listed more than once; kept the first listing (label 'x')"]
    assert {r.id: r.primary for r in load_recordings(tmp_path / "dataset")} == {"a": "x", "b": "x"}
