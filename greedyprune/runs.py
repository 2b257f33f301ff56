"""Run folders: a config, long-format result tables, atomic writes, and resume.

A run folder holds ``config.json`` and any number of CSV tables (``results.csv`` by default).
Work is split into *units* (for example one experiment at one seed); each unit's rows are appended
in one atomic write together with a ``unit`` column, so the table itself is the record of what is
done: an interrupted run, started again with the same config, skips the finished units and never
loses or duplicates a row.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_text"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


class RunDir:
    """A run folder at ``path`` for one configuration.

    Parameters
    ----------
    path: the folder; created if missing.
    config: the run's settings (JSON-serialisable). If the folder already holds a different
        ``config.json``, a ``ValueError`` says so: resuming under other settings would mix results.
    writer: False for a reader that checks the config and reads tables but never writes (the
        ranks other than 0 of a distributed run): its writes are no-ops.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], *, writer: bool = True):
        self.path = Path(path)
        self.writer = bool(writer)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(
                f"out={str(self.path)!r} exists and is not a folder; pass another --out"
            )
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
        self.config = _jsonable(dict(config))
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            old = json.loads(cfg_file.read_text())
            if old != self.config:
                changed = sorted(
                    k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
                )
                raise ValueError(
                    f"out={str(self.path)!r} holds a run with other settings (differs in: "
                    f"{', '.join(changed)}); pass a new --out or the same settings to resume"
                )
        elif self.writer:
            self.write_json("config.json", self.config)

    def table_path(self, table: str = "results") -> Path:
        return self.path / f"{table}.csv"

    def read(self, table: str = "results") -> pd.DataFrame:
        """The table as a DataFrame (empty if nothing was written yet)."""
        p = self.table_path(table)
        if not p.exists() or p.stat().st_size == 0:
            return pd.DataFrame()
        return pd.read_csv(p)

    def done_units(self, table: str = "results") -> set[str]:
        df = self.read(table)
        if df.empty or "unit" not in df.columns:
            return set()
        return set(df["unit"].astype(str))

    def append(
        self, unit: str, records: Iterable[Mapping[str, Any]], table: str = "results"
    ) -> None:
        """Append one unit's rows atomically; rows of a unit already present are replaced."""
        new = pd.DataFrame([dict(r, unit=str(unit)) for r in records])
        if new.empty or not self.writer:
            return
        # Finished rows are carried over as the text they were written as, so a later unit
        # (with other columns, say) never rewrites them (an int column read back as float).
        p = self.table_path(table)
        has_rows = p.exists() and p.stat().st_size > 0
        old = pd.read_csv(p, dtype=str, keep_default_na=False) if has_rows else pd.DataFrame()
        if not old.empty and "unit" in old.columns:
            old = old[old["unit"].astype(str) != str(unit)]
        df = pd.concat([old, new], ignore_index=True) if not old.empty else new
        self.write_table(df, table)

    def write_table(self, df: pd.DataFrame, table: str) -> Path:
        p = self.table_path(table)
        if self.writer:
            atomic_write_text(p, df.to_csv(index=False))
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path / name
        if self.writer:
            atomic_write_text(p, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")
        return p
