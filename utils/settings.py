"""Experiment settings: defaults file, then an override file, then KEY=VALUE pairs.

Settings files are plain Python (nanoGPT style): every UPPER_CASE name is a setting. The
defaults file defines the keys and their types (from an annotation, or else from the default
value); override files and ``--set`` may only change existing keys, with values of the right
type. The result is an immutable :class:`Settings` mapping that scripts read once and pass on.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A settings file or override that cannot be used; the message names the key."""


def read_settings_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (values, annotations) of the UPPER_CASE names a settings file defines.

    ``.json`` files (a saved run configuration) are read as data, anything else is run as Python.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"settings file not found: {path}")
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        values = data.get("settings", data)
        return {k: v for k, v in values.items() if k.isupper()}, {}
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__settings__"}
    try:
        # dont_inherit: this module's `from __future__ import annotations` would turn the file's
        # type annotations into strings
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True),
             namespace)
    except Exception as exc:  # a broken override file must name itself
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    values = {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}
    return values, dict(namespace.get("__annotations__", {}))


def describe_type(spec: Any) -> str:
    if spec is Any:
        return "any value"
    origin = typing.get_origin(spec)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(spec))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(spec))
    if spec is type(None):
        return "None"
    if origin is not None:
        return str(spec).replace("typing.", "")
    return getattr(spec, "__name__", str(spec))


_NO_MATCH = object()


def coerce(value: Any, spec: Any) -> Any:
    """Return ``value`` converted to ``spec`` (int -> float, list <-> tuple), or _NO_MATCH."""
    if spec is Any:
        return value
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is typing.Literal:
        return value if value in args and type(value) in {type(a) for a in args} else _NO_MATCH
    if origin in (typing.Union, types.UnionType):
        for option in args:
            converted = coerce(value, option)
            if converted is not _NO_MATCH:
                return converted
        return _NO_MATCH
    if spec is type(None):
        return None if value is None else _NO_MATCH
    if spec is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if spec is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO_MATCH
    if spec is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO_MATCH
    if spec is str:
        return value if isinstance(value, str) else _NO_MATCH
    if spec in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _NO_MATCH
        container = origin or spec
        if not args:
            return container(value)
        if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return _NO_MATCH
            items = [coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [coerce(v, args[0]) for v in value]
        return _NO_MATCH if any(i is _NO_MATCH for i in items) else container(items)
    if spec is dict or origin is dict:
        if not isinstance(value, dict):
            return _NO_MATCH
        if not args:
            return dict(value)
        out = {}
        for k, v in value.items():
            ck, cv = coerce(k, args[0]), coerce(v, args[1])
            if ck is _NO_MATCH or cv is _NO_MATCH:
                return _NO_MATCH
            out[ck] = cv
        return out
    return value if isinstance(value, spec) else _NO_MATCH


def inferred_type(default: Any) -> Any:
    """The type a default implies: list[int] for [16, 32]; any value for None."""
    if default is None:
        return Any
    if isinstance(default, (list, tuple)) and default:
        kinds = {type(v) for v in default}
        if len(kinds) == 1:
            kind = kinds.pop()
            return list[kind] if isinstance(default, list) else tuple[kind, ...]
    return type(default)


def parse_override(pair: str) -> tuple[str, str]:
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
    return key.strip(), raw.strip()


def _literal_candidates(raw: str) -> list[Any]:
    """A --set value is read as a Python literal where it is one, and as text otherwise."""
    try:
        return [ast.literal_eval(raw), raw]
    except (ValueError, SyntaxError):
        return [raw]


class Settings(Mapping):
    """Immutable, validated settings; read as ``s.KEY`` or ``s["KEY"]``."""

    def __init__(self, values: Mapping[str, Any], specs: Mapping[str, Any], sources: list[str]):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_specs", dict(specs))
        object.__setattr__(self, "sources", list(sources))

    # Mapping protocol
    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise ConfigError(unknown_key_message(key, self._values)) from None

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self[key]

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Settings are read-only: use .replace(KEY=value) for a changed copy")

    def __repr__(self) -> str:
        return f"Settings({len(self)} keys from {self.sources})"

    def replace(self, _source: str = "replace()", **changes: Any) -> "Settings":
        values = dict(self._values)
        for key, value in changes.items():
            values[key] = validate(key, value, self._specs, self._values)
        return Settings(values, self._specs, self.sources + [_source])

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._values, default=str))

    def differences(self, saved: Mapping[str, Any], keys: Iterable[str],
                    paths: Iterable[str] = (), before: Mapping[str, Any] | None = None) -> list[str]:
        """How these settings differ on ``keys`` from ``saved`` (a saved run's settings):
        "KEY old -> new", or "KEY (not a setting then)" where ``saved`` lacks the key (a setting
        added since may have had another default then), unless ``before`` gives the value that
        did what the code did before the key existed. Saved values are validated as settings
        first, so a list saved for a tuple is no difference; the ``paths`` keys are compared as
        the folders or files they name, so "data/x" and its absolute spelling are the same."""
        saved = {**(before or {}), **saved}
        keys, paths = sorted(keys), set(paths)
        out = [f"{k} (not a setting then)" for k in keys if k not in saved]
        known = [k for k in keys if k in saved]
        then = self.replace("saved settings", **{k: saved[k] for k in known})

        def same(k):
            if k in paths and then[k] and self[k]:
                return Path(then[k]).resolve() == Path(self[k]).resolve()
            return then[k] == self[k]
        return out + [f"{k} {then[k]!r} -> {self[k]!r}" for k in known if not same(k)]

    def fingerprint(self, keys: list[str] | None = None) -> str:
        chosen = {k: self._values[k] for k in (keys or sorted(self._values))}
        blob = json.dumps(chosen, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def unknown_key_message(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key.upper(), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting {key}{hint}"


def validate(key: str, value: Any, specs: Mapping[str, Any], known: Mapping[str, Any]) -> Any:
    if key not in known:
        raise ConfigError(unknown_key_message(key, known))
    converted = coerce(value, specs[key])
    if converted is _NO_MATCH:
        raise ConfigError(f"bad value for {key}: {value!r} (expected {describe_type(specs[key])})")
    return converted


def load_settings(defaults_file: str | Path, config_file: str | Path | None = None,
                  overrides: typing.Iterable[str] = ()) -> Settings:
    """Defaults, then an optional override file, then ``KEY=VALUE`` overrides, in that order."""
    defaults, annotations = read_settings_file(defaults_file)
    specs = {k: annotations.get(k, inferred_type(v)) for k, v in defaults.items()}
    values = dict(defaults)
    sources = [str(defaults_file)]
    if config_file:
        file_values, _ = read_settings_file(config_file)
        for key, value in file_values.items():
            try:
                values[key] = validate(key, value, specs, defaults)
            except ConfigError as exc:
                raise ConfigError(f"{config_file}: {exc}") from None
        sources.append(str(config_file))
    for pair in overrides:
        key, raw = parse_override(pair)
        if key not in defaults:
            raise ConfigError(unknown_key_message(key, defaults))
        for candidate in _literal_candidates(raw):
            converted = coerce(candidate, specs[key])
            if converted is not _NO_MATCH:
                values[key] = converted
                break
        else:
            raise ConfigError(f"bad value for {key}: {raw!r} (expected {describe_type(specs[key])})")
        sources.append(f"--set {key}={raw}")
    return Settings(values, specs, sources)


def save_settings(settings: Settings, path: str | Path) -> None:
    """Write the effective settings as JSON (loadable again with ``--config``)."""
    from utils.fileio import atomic_write_text

    payload = {"sources": settings.sources, "settings": settings.to_dict()}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
