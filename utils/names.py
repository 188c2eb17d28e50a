"""Turning labels and file names into safe folder/file names.

A label such as ``../x``, ``a/b`` or ``CON`` must never become a path outside the dataset or an
unusable name; two labels that differ only in case must not share a folder on case-insensitive
file systems. The original label is always kept in the metadata; only folder names are changed.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_NAME_LENGTH = 80
_UNSAFE = re.compile(r"[^\w\-. ,()'+&]", flags=re.UNICODE)
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def safe_name(label: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file-system-safe single path component for ``label``; raises ValueError if it is empty."""
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"empty label {label!r} cannot name a class")
    text = unicodedata.normalize("NFKC", label).strip()
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"_+", "_", text).strip(" .")
    if not text or set(text) <= {"_", "."}:
        text = "label_" + short_hash(label)
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    if len(text.encode("utf-8")) > max_length:
        keep = text.encode("utf-8")[: max_length - 9].decode("utf-8", "ignore").rstrip(" .")
        text = f"{keep}_{short_hash(label)}"
    return text


def unique_names(labels) -> dict[str, str]:
    """Map each distinct label to a safe name, unique even on case-insensitive file systems."""
    mapping: dict[str, str] = {}
    taken: dict[str, str] = {}
    for label in sorted(set(labels)):
        name = safe_name(label)
        if name.casefold() in taken and taken[name.casefold()] != label:
            name = safe_name(f"{name}_{short_hash(label)}")
        taken[name.casefold()] = label
        mapping[label] = name
    return mapping
