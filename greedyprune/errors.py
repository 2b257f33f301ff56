"""Bad input: one error type and the checkers that raise it, at the bottom of the house.

Every value a caller passes is checked where it enters, by one of the checkers below, and a value
the library refuses raises :class:`GreedypruneError` (a ``ValueError``), or
:class:`GreedypruneTypeError` (also a ``TypeError``) when its type is wrong. The message has one
wording::

    NAME=VALUE must be WHAT; FIX

and the error carries ``name``, the argument's Python name, so that the command line writes it
as its flag (``n_eval=0`` becomes ``--n-eval=0``) through a table, and any other exception is a
bug, shown with its traceback. This module imports nothing of the package.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SEED_MAX",
    "GreedypruneError",
    "GreedypruneFileError",
    "GreedypruneTypeError",
    "check_bool",
    "check_choice",
    "check_device",
    "check_fits",
    "check_int",
    "check_number",
    "check_path",
    "check_range",
    "check_seeds",
    "check_type",
    "refuse",
    "with_fields",
]


class GreedypruneError(ValueError):
    """A value the library refuses. ``name``: the argument (its Python name) or None."""

    def __init__(self, message: str, *, name: str | None = None):
        # raised again in the main process by a DataLoader whose worker raised it: the message
        # then carries the worker's traceback; keep the original line
        head, sep, original = str(message).rpartition(f"{type(self).__name__}: ")
        if sep and "Original Traceback" in head:
            message = original.strip()
        super().__init__(message)
        self.name = name if name is not None else _leading_name(message)


class GreedypruneTypeError(GreedypruneError, TypeError):
    """A value of the wrong type (a ``GreedypruneError`` that is also a ``TypeError``)."""


class GreedypruneFileError(GreedypruneError, FileNotFoundError):
    """A file or folder the user named that is not there (a ``GreedypruneError`` that is also a
    ``FileNotFoundError``)."""


def _leading_name(message: str) -> str | None:
    """The argument a message starts with (``tol=-1 must ...``, ``tol must ...``), if any."""
    words = str(message).split(None, 1)
    head = words[0].split("=", 1)[0] if words else ""
    return head if head.isidentifier() else None


def _show(value) -> str:
    """A number or a string whole; anything else cut at 80 characters, and a value whose repr
    spans lines (a module, a big tensor) as its type name, so that a message stays one line."""
    text = repr(value)
    if "\n" in text:
        return f"<{type(value).__name__}>"
    return text if isinstance(value, (float, str)) or len(text) <= 80 else text[:77] + "..."


def refuse(
    name: str,
    value,
    must: str,
    fix: str | None = None,
    *,
    wrong_type: bool = False,
    argument: str | None = None,
):
    """The error for ``name=value`` (not raised): ``NAME=VALUE must be MUST; FIX``. ``argument``:
    the argument the error names when ``name`` is a part of it (``x.shape`` of ``x``)."""
    text = f"{name}={_show(value)} must be {must}"
    if fix:
        text += f"; {fix}"
    cls = GreedypruneTypeError if wrong_type else GreedypruneError
    return cls(text, name=argument if argument is not None else name)


def check_bool(name: str, value) -> bool:
    """``value`` as a bool: True or False (a numpy bool too); a truthy string such as ``"no"``
    would otherwise silently mean True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise refuse(name, value, "True or False", wrong_type=True)


def check_type(name: str, value, types: type | tuple[type, ...], what: str):
    """``value`` when it is an instance of ``types``; else the type error ``NAME=VALUE must be
    WHAT`` (``what`` in words: "an nn.Module", "a tensor [m, d]")."""
    if isinstance(value, types):
        return value
    raise refuse(name, value, what, wrong_type=True)


def with_fields(job: str, cls, settings, knobs: Mapping[str, Any], others=None):
    """A settings object (a dataclass ``cls`` that checks itself when made): ``settings`` (None:
    ``cls`` made from the keywords) with the keywords that are ``cls``'s fields replaced, and the
    keywords left over. ``others``: {class name: field names} of other objects the caller takes
    keywords for; any other keyword is refused, naming ``job`` (the function) and the fields."""
    import dataclasses

    own = {f.name for f in dataclasses.fields(cls)}
    others = dict(others or {})
    unknown = sorted(set(knobs) - own - {n for names in others.values() for n in names})
    if unknown:
        where = [f"{cls.__name__} ({', '.join(sorted(own))})"]
        where += [f"{name} ({', '.join(sorted(names))})" for name, names in others.items()]
        raise GreedypruneTypeError(
            f"{job}() got unknown keywords {unknown}; pass fields of {' or of '.join(where)}"
        )
    if settings is not None:
        check_type("settings", settings, cls, f"a {cls.__name__} or None")
    mine = {k: v for k, v in knobs.items() if k in own}
    rest = {k: v for k, v in knobs.items() if k not in own}
    if settings is None:
        return cls(**mine), rest
    return (dataclasses.replace(settings, **mine) if mine else settings), rest


def check_int(
    name: str,
    value,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fix: str | None = None,
) -> int:
    """``value`` as an int within ``minimum..maximum`` (either end optional); a bool is refused,
    a numpy integer taken. ``fix``: the hint after the message (``"or None for all"``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise refuse(name, value, f"an int{_bounds(minimum, maximum)}", fix, wrong_type=True)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise refuse(name, value, f"an int{_bounds(minimum, maximum)}", fix)
    return value


def check_number(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    finite: bool = True,
    fix: str | None = None,
) -> float:
    """``value`` (an int or a float, not a bool) as a float: ``minimum <= value <= maximum`` and
    ``above < value < below`` where given; NaN always refused, inf unless ``finite=False``.
    ``fix``: the hint after the message."""
    what = "a finite number" if finite else "a number"
    parts = [f">= {minimum}"] if minimum is not None else []
    parts += [f"> {above}"] if above is not None else []
    parts += [f"<= {maximum}"] if maximum is not None else []
    parts += [f"< {below}"] if below is not None else []
    what += (" " + " and ".join(parts)) if parts else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refuse(name, value, what, fix, wrong_type=True)
    v = float(value)
    bad = math.isnan(v) or (finite and math.isinf(v))
    bad = bad or (minimum is not None and v < minimum) or (maximum is not None and v > maximum)
    bad = bad or (above is not None and not v > above) or (below is not None and not v < below)
    if bad:
        raise refuse(name, value, what, fix)
    return v


SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes seeds up to this


def check_seeds(name: str, value) -> tuple[int, ...]:
    """``value`` (one seed or an iterable of them) as a tuple of distinct ints in
    ``0..SEED_MAX``, first occurrences kept in order; at least one."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise refuse(name, value, "a seed or a list of seeds", wrong_type=True)
    seeds: dict[int, None] = {}
    for i, s in enumerate(value):
        seeds[check_int(f"{name}[{i}]", s, minimum=0, maximum=SEED_MAX)] = None
    if not seeds:
        raise refuse(name, value, "at least one seed")
    return tuple(seeds)


def check_choice(name: str, value, choices: Iterable):
    """``value`` when it is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        listing = ", ".join(repr(c) for c in choices)
        raise refuse(name, value, f"one of {listing}")
    return value


def check_range(name: str, value, *, minimum: float | None = None) -> tuple[float, float]:
    """``value`` as a pair ``(low, high)`` of finite numbers with ``low < high`` (and
    ``low >= minimum`` where given)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise refuse(name, value, "a pair (low, high)", wrong_type=True)
    pair = tuple(value)
    if len(pair) != 2:
        raise refuse(name, value, "a pair (low, high)")
    low = check_number(f"{name}[0]", pair[0], minimum=minimum)
    high = check_number(f"{name}[1]", pair[1])
    if not low < high:
        raise refuse(name, value, "a pair (low, high) with low < high")
    return low, high


def check_device(name: str, value) -> str:
    """``value`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device`` or None for the CPU) as
    a string; refused when it is not a device or names a CUDA device this machine lacks."""
    import torch

    if value is None:
        return "cpu"
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise refuse(name, str(value), "a device", "pass 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise refuse(
                name,
                str(value),
                "a device this machine has",
                "no CUDA device is available; pass 'cpu'",
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise refuse(name, str(value), f"one of this machine's {count} CUDA device(s)")
    return str(dev)


def check_path(name: str, value, *, kind: str = "file") -> Path:
    """``value`` (a str or a path) as a ``Path`` to an existing ``kind`` ("file" or "dir")."""
    if not isinstance(value, (str, os.PathLike)):
        raise refuse(name, value, "a path", wrong_type=True)
    path = Path(value)
    exists = path.is_file() if kind == "file" else path.is_dir()
    if not exists:
        raise refuse(name, str(path), f"an existing {kind}", "check the path")
    return path


def memory_bytes() -> int:
    """This machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(name: str, value, nbytes: float, what: str) -> None:
    """Refuse ``name=value`` when ``what`` (one allocation the run cannot avoid, ``nbytes`` by a
    conservative count: a lower bound of what the run needs) exceeds this machine's memory;
    checked before anything is allocated or written."""
    total = memory_bytes()
    if total and nbytes > total:
        raise refuse(
            name,
            value,
            f"small enough that {what} fits in memory",
            f"it needs at least {nbytes / 2**30:.1f} GiB, this machine has {total / 2**30:.1f} GiB",
        )


def _bounds(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
