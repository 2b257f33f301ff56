"""``--set KEY=VALUE`` and ``--config FILE.toml``: override fields of a preset's settings.

One parser and validator for every subcommand whose preset is made of setting dataclasses
(``verify two-layer``: ``Setting``; ``verify deep``: ``DeepSetting``). A value is parsed by the
field's annotated type: ``int``, ``float`` (finite), ``bool`` (``true``/``false``), ``str``,
``X | None`` (``none``) and ``tuple[X, ...]`` (a comma list, e.g. ``2,4,8``). A key applies to
every setting of the preset unless prefixed by one setting's name (``interior.m=40``).

The config file is TOML: a flat table of keys (``m = 40``, ``activation = "sigmoid"``,
``sizes = [2, 4, 8]``); a table named after a setting (``[interior]``, or the dotted key
``interior.m = 40``) applies to that setting only. Overrides are applied in order: the config
file's (in file order) first, then each ``--set`` (left to right), so ``--set`` wins.

Every problem raises :class:`SettingError` (a ``ValueError``) with one line naming the ``--set``
or the config file and key; the CLI prints it as is and exits 2, before any run folder exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from greedyprune.errors import GreedypruneError

__all__ = ["SettingError", "apply_overrides", "describe_fields", "overrides_from_args"]

# fields no override may change: the setting's label (unit ids and tables key on it) and the
# free-form extras
_NEVER = {"name": "it is the setting's label", "extra": "it is not a setting value"}


class SettingError(GreedypruneError):
    """A bad ``--set`` / ``--config`` entry: the message is one line, ready for the user."""


@dataclasses.dataclass(frozen=True)
class Override:
    """One ``[scope.]key = value``; ``source`` names it in errors (``--set m=x``, ``cfg.toml: m``)."""

    scope: str | None
    key: str
    value: Any  # text from --set, or a TOML value
    source: str


def _split_key(key: str) -> tuple[str | None, str]:
    scope, _, name = key.strip().rpartition(".")
    return (scope or None), name


def parse_set(text: str) -> Override:
    """``--set [SCOPE.]KEY=VALUE`` -> :class:`Override` (the value stays text)."""
    key, eq, value = text.partition("=")
    scope, name = _split_key(key)
    if not eq or not name:
        raise SettingError(f"--set {text!r} must be KEY=VALUE, e.g. --set m=40")
    return Override(scope, name, value.strip(), f"--set {key.strip()}")


def load_config(path: str | Path) -> list[Override]:
    """The overrides of a TOML config file, in file order."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise SettingError(f"--config {path}: reading TOML needs Python 3.11 or newer") from None
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingError(f"--config {path}: no such file") from None
    except OSError as exc:
        raise SettingError(f"--config {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"--config {path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingError(
            f"--config {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, dict):
                    raise SettingError(
                        f"--config {path}: [{key}.{sub}] nests too deep; use a flat table of "
                        f"keys, or one table per setting"
                    )
                out.append(Override(key, sub, v, f"--config {path}: {key}.{sub}"))
        else:
            out.append(Override(None, key, value, f"--config {path}: {key}"))
    return out


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or none"
    if origin is tuple:
        return f"comma list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(tp, value) -> Any:
    """``value`` (text, or a TOML value) as a ``tp``; ValueError(description) when it is not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if isinstance(value, str) and value.strip().lower() in ("none", "null"):
            return None
        return _convert(args[0], value)
    if origin is tuple:
        (elem, *_rest) = typing.get_args(tp)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise GreedypruneError("")
        return tuple(_convert(elem, v) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise GreedypruneError("")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            return int(value.strip())
        raise GreedypruneError("")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
        elif isinstance(value, str):
            v = float(value.strip())
        else:
            raise GreedypruneError("")
        if not math.isfinite(v):
            raise GreedypruneError("")
        return v
    if tp is str:
        if isinstance(value, str):
            return value.strip()
        raise GreedypruneError("")
    raise GreedypruneError("")


def _fields(cls) -> dict[str, Any]:
    """Settable field name -> type of a setting dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name not in _NEVER}


def describe_fields(cls, never: Mapping[str, str] | None = None) -> str:
    """``m (int), lr (float), ...``: the settable keys of ``cls``, for --help."""
    return ", ".join(
        f"{k} ({_type_name(t)})" for k, t in _fields(cls).items() if k not in (never or {})
    )


def apply_overrides(
    settings: Sequence[Any],
    overrides: Sequence[Override],
    *,
    never: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Any, ...]:
    """``settings`` (frozen dataclasses with a ``name``) with ``overrides`` applied in order.

    never: keys a subcommand does not let override (key -> why, e.g. ``"use --data"``).
    choices: allowed values of string keys the dataclass does not check itself.
    Each bad scope, key or value raises :class:`SettingError`.
    """
    settings = list(settings)
    if not settings:
        return ()
    cls = type(settings[0])
    fields = _fields(cls)
    forbidden = {**_NEVER, **(never or {})}
    names = [s.name for s in settings]
    changes: list[dict[str, tuple[Any, str]]] = [{} for _ in settings]
    for o in overrides:
        if o.scope is not None and o.scope not in names:
            raise SettingError(
                f"{o.source}: {o.scope!r} is not a setting of this preset; prefix with one of "
                f"{', '.join(names)}, or none for all"
            )
        if o.key in forbidden:
            raise SettingError(f"{o.source}: {o.key} cannot be set ({forbidden[o.key]})")
        if o.key not in fields:
            close = difflib.get_close_matches(o.key, list(fields), n=3)
            hint = (
                f"did you mean {' or '.join(close)}?"
                if close
                else f"valid keys: {', '.join(k for k in fields if k not in forbidden)}"
            )
            raise SettingError(f"{o.source}: {o.key!r} is not a setting; {hint}")
        tp = fields[o.key]
        try:
            value = _convert(tp, o.value)
        except (ValueError, TypeError):
            raise SettingError(f"{o.source}: {o.value!r} is not a valid {_type_name(tp)}") from None
        allowed = (choices or {}).get(o.key)
        if allowed is not None and value not in allowed:
            raise SettingError(f"{o.source}: {value!r} is not one of {', '.join(allowed)}")
        for i, s in enumerate(settings):
            if o.scope is None or s.name == o.scope:
                changes[i][o.key] = (value, o.source)  # a later override of a key wins
    # one replace per setting, so the setting checks the final values together (--set width=128
    # --set sizes=2,128 is fine in either order)
    for i, s in enumerate(settings):
        if not changes[i]:
            continue
        try:
            settings[i] = dataclasses.replace(s, **{k: v for k, (v, _) in changes[i].items()})
        except (ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())
            sources = [src for k, (_, src) in changes[i].items() if re.search(rf"\b{k}\b", reason)]
            sources = sources or [src for _, src in changes[i].values()]
            raise SettingError(f"{', '.join(dict.fromkeys(sources))}: {reason}") from None
    return tuple(settings)


def overrides_from_args(config: str | None, sets: Sequence[str] | None) -> list[Override]:
    """The overrides of ``--config FILE`` then each ``--set`` (so ``--set`` wins)."""
    out = load_config(config) if config else []
    return out + [parse_set(t) for t in sets or ()]
