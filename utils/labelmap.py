"""Label names <-> challenge codes, and the class list a challenge expects.

A class map is a CSV with a ``code`` column (eBird code, ClassId...) and any of
``scientific_name``, ``common_name``, ``label``: a model label equal to any of those names maps to
the row's code. Kaggle's ``taxonomy.csv`` works as it is (``primary_label`` is the code).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

CODE_COLUMNS = ("code", "primary_label", "ClassId", "species_code")
NAME_COLUMNS = ("label", "scientific_name", "common_name", "species", "sci_name", "com_name")


def _table(path) -> pd.DataFrame:
    if hasattr(path, "read"):  # an open file
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class table not found: {path}")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def load_class_map(path: str | Path) -> dict[str, str]:
    """name -> code for every name column of the table (and code -> code)."""
    table = _table(path)
    code = next((c for c in CODE_COLUMNS if c in table.columns), None)
    if code is None:
        raise ValueError(f"{path}: a class map needs one of the columns {', '.join(CODE_COLUMNS)}")
    mapping: dict[str, str] = {}
    for column in (*[c for c in NAME_COLUMNS if c in table.columns], code):
        for name, value in zip(table[column], table[code]):
            if name.strip():
                mapping.setdefault(name.strip(), value.strip())
    return mapping


def to_codes(labels: list[str], mapping: dict[str, str] | None) -> list[str]:
    """The model's labels as challenge codes (labels themselves without a map)."""
    if not mapping:
        return list(labels)
    missing = [label for label in labels if label not in mapping]
    if missing:
        raise ValueError(f"{len(missing)} model classes are not in CLASS_MAP: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return [mapping[label] for label in labels]


def load_class_list(path: str | Path) -> list[str]:
    """The challenge's class order: a sample submission's columns after row_id, a taxonomy's
    ``primary_label`` (or other code) column, or a one-column list."""
    table = _table(path)
    if "row_id" in table.columns:
        return [c for c in table.columns if c != "row_id"]
    code = next((c for c in CODE_COLUMNS if c in table.columns), None)
    if code is not None:
        return table[code].str.strip().tolist()
    if table.shape[1] == 1:
        return [table.columns[0], *table.iloc[:, 0].str.strip()]  # no header: the first line is a class
    raise ValueError(f"{path}: expected a sample submission (row_id + classes), a taxonomy with a "
                     f"{'/'.join(CODE_COLUMNS)} column, or a one-column class list")
