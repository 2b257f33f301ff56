"""Run folders: a config, long-format result tables, atomic writes, and resume.

A run folder holds ``config.json`` and any number of CSV tables (``results.csv`` by default).
Work is split into *units* (for example one experiment at one seed); each unit's rows are appended
in one atomic write together with a ``unit`` column, so the table itself is the record of what is
done: an interrupted run, started again with the same config, skips the finished units and never
loses or duplicates a row.

``versions.json`` records the software each session ran with (torch, torchvision, greedyprune, the
git commit): a new entry whenever those change on resume, so a folder written under two versions
says so instead of refusing the resume.

In a ``torch.distributed`` job (``torchrun``) the processes share one folder: :func:`open_run` has
rank 0 make or check it (the writer) and the other ranks open it as readers, and
:func:`greedyprune.dist.from_main` hands every rank rank 0's answer to a question about it (which units are done),
so the ranks never part ways on what is in the folder. Without a process group both are plain
calls.
"""

from __future__ import annotations

import atexit
import csv
import functools
import io
import json
import logging
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Hashable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from greedyprune.errors import GreedypruneError, GreedypruneFileError

__all__ = [
    "RunDir",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint_file",
    "open_run",
    "software_versions",
    "unique",
]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, in first-seen order (duplicate seeds or methods run once)."""
    return list(dict.fromkeys(items))


def _umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The file gets the permissions a plain ``open(path, "wb")`` would give it: those of the file it
    replaces, or ``0o666`` less the umask for a new one (not the ``0o600`` of a temporary file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def load_checkpoint_file(
    path: str | os.PathLike, *, map_location: Any = None, keys: Iterable[str] = ()
) -> Any:
    """``torch.load(path, weights_only=True)``, with a damaged file reported as one line.

    Any failure to read the file (truncated, not a torch file, not loadable without unpickling
    code), or a loaded object that is not a dict holding every name in ``keys``, raises
    ``ValueError("'<path>' is damaged (...); delete it and run again to restart that step")``.
    A missing file raises ``FileNotFoundError``.
    """
    import torch

    path = Path(path)
    keys = list(keys)
    if not path.is_file():
        raise GreedypruneFileError(f"{str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds (pickle, zip, runtime) for a bad file
        first = (str(exc).strip().splitlines() or [""])[0].strip()
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:157] + "..."
        raise GreedypruneError(_damaged(path, reason)) from None
    if keys:
        missing = [k for k in keys if not isinstance(obj, Mapping) or k not in obj]
        if missing:
            raise GreedypruneError(_damaged(path, f"lacks {', '.join(map(str, missing))}"))
    return obj


def _damaged(path: Path, reason: str) -> str:
    return f"{str(path)!r} is damaged ({reason}); delete it and run again to restart that step"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(timeout: float = 2.0) -> str | None:
    """The commit of the git checkout holding this package (None if not one, or git fails)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str | None]:
    """The versions a run records: torch, torchvision, greedyprune and the git commit (or None)."""
    from greedyprune._version import __version__

    return {
        "torch": _package_version("torch"),
        "torchvision": _package_version("torchvision"),
        "greedyprune": __version__,
        "git_commit": _git_commit(),
    }


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


# Files a run writes besides config.json and versions.json: found without a config.json, they
# would be adopted by a run under unknown settings.
_RUN_SUFFIXES = (".csv", ".json", ".pt", ".safetensors")


def _complete_part(text: str) -> tuple[str, list[str] | None]:
    """Split a CSV text into its complete records and a last record left partial.

    A last record is partial when the text does not end in a line break (a write cut short), when
    it has another field count than the header, or when it cannot be parsed (a quote left open,
    say: cut short inside a quoted field that holds a line break). Returns
    ``(text of the complete records, the partial record's fields or None)``; a partial header
    gives ``("", its fields)``.
    """
    consumed = 0
    ends: list[tuple[list[str], int]] = []  # each record and the offset where it ends

    def lines():
        nonlocal consumed
        for line in io.StringIO(text, newline=""):
            consumed += len(line)
            yield line

    try:
        for rec in csv.reader(lines(), strict=True):  # strict: a quote left open is an error
            ends.append((rec, consumed))
    except csv.Error:  # in the last record: a torn write; elsewhere: left to pandas
        if consumed < len(text):
            return text, None
        start = ends[-1][1] if ends else 0
        # its fields as far as they go (the unit's name may be among them)
        fields = next(csv.reader(io.StringIO(text[start:], newline="")), [])
        return text[:start], fields
    while ends and not ends[-1][0]:
        ends.pop()  # trailing blank lines
    if not ends:
        return "", None
    last, end = ends[-1]
    whole = text[:end].endswith(("\n", "\r"))
    if whole and (len(ends) == 1 or len(last) == len(ends[0][0])):
        return text, None
    return (text[: ends[-2][1]] if len(ends) > 1 else ""), last


# Files every opening writes; a folder holding only these has no result of its run yet.
LOCK_NAME = ".lock"
_BOOKKEEPING = frozenset({"config.json", "versions.json", "manifest.json", LOCK_NAME})

# The run folders this process holds the lock of: resolved path -> [fd, number of RunDirs].
_HELD: dict[str, list[int]] = {}


def _owner(fd: int) -> dict:
    """The lock file's record (pid, host, since); {} when empty or unreadable."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8")
        record = json.loads(text) if text.strip() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def take_lock(folder: Path) -> str:
    """Hold ``folder/.lock`` for this process (one writer per run folder): an ``flock`` on the
    file, which the system drops when the process ends, and a record of the owner in it. A folder
    held by another live process, or recorded by a process on another host (whose lock this host
    cannot see), is refused naming the owner; a record left by a process of this host that has
    ended (a crash) is taken over with a warning. Re-entrant within a process. Returns the key
    for :func:`release_lock`."""
    import datetime
    import fcntl
    import socket

    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    lock = folder / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = _owner(fd)
        os.close(fd)
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', 'this host')}"
        raise GreedypruneError(
            f"out={str(folder)!r} is in use by another job ({who}, since "
            f"{owner.get('since', '?')}); wait for it to end or pass another --out",
            name="out",
        ) from None
    owner, host = _owner(fd), socket.gethostname()
    if owner.get("host") not in (None, host):
        os.close(fd)
        raise GreedypruneError(
            f"out={str(folder)!r} is recorded as in use by pid {owner.get('pid')} on host "
            f"{owner['host']}, which this host cannot check; if no job runs there, clear it with "
            f"`rm {str(lock)!r}` and run again",
            name="out",
        )
    if owner.get("pid") not in (None, os.getpid()):
        log.warning(
            "out=%r was held by pid %s, which has ended without releasing it; taking it over",
            str(folder),
            owner.get("pid"),
        )
    since = datetime.datetime.now().isoformat(timespec="seconds")
    record = json.dumps({"pid": os.getpid(), "host": host, "since": since}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode("utf-8"), 0)
    _HELD[key] = [fd, 1]
    return key


def release_lock(key: str, *, every: bool = False) -> None:
    """Drop one hold of the lock taken by :func:`take_lock` (all of them with ``every``); the last
    one empties the record and unlocks. The file stays: removing it would let a process that
    opened it before the removal lock a file no one else sees."""
    held = _HELD.get(key)
    if held is None:
        return
    held[1] = 0 if every else held[1] - 1
    if held[1] > 0:
        return
    del _HELD[key]
    try:
        os.ftruncate(held[0], 0)
    except OSError:
        pass
    os.close(held[0])  # closing the descriptor drops the flock


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        release_lock(key, every=True)


class RunDir:
    """A run folder at ``path`` for one configuration.

    Parameters
    ----------
    path: the folder; created if missing.
    config: the run's settings (JSON-serialisable). If the folder already holds a different
        ``config.json``, a ``ValueError`` says so: resuming under other settings would mix results.
        A folder holding tables or other run files but no ``config.json`` is refused too.
    writer: False for a reader that checks the config and reads tables but never writes (the
        ranks other than 0 of a distributed run): its writes are no-ops.

    Construction either leaves a folder with ``config.json`` (and ``versions.json``) or raises
    ``ValueError`` and leaves nothing it made: a place that cannot be written (``PermissionError``,
    ``NotADirectoryError``, a read-only file system...) is reported as one line naming ``out=``.
    """

    def __init__(self, path: str | os.PathLike, config: Mapping[str, Any], *, writer: bool = True):
        self.path = Path(path)
        self.writer = bool(writer)
        self.config = _jsonable(dict(config))
        self._warned: set[tuple[str, int]] = set()
        self._lock: str | None = None
        try:
            self._open()
        except BaseException as exc:
            self.release()
            if not isinstance(exc, OSError):
                raise
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise GreedypruneError(
                f"out={str(self.path)!r} cannot be written ({reason}); pass an --out in a "
                f"folder you can write to"
            ) from None

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise GreedypruneError(
                f"out={str(self.path)!r} exists and is not a folder; pass another --out"
            )
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            if self.writer:
                self._lock = take_lock(self.path)
            self._check_config(cfg_file)
            if self.writer:
                self._record_versions()
            return
        if self.path.is_dir():
            found = sorted(
                p.name
                for p in self.path.iterdir()
                if p.suffix in _RUN_SUFFIXES and p.name != "versions.json"
            )
            if found:
                shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
                raise GreedypruneError(
                    f"out={str(self.path)!r} holds {shown} but no config.json, so the settings "
                    f"behind them are unknown; pass a new --out or delete the folder"
                )
        if not self.writer:
            return
        versions = software_versions()  # before anything is written
        made = []  # the folders made here, deepest first
        p = self.path
        while not p.exists():
            made.append(p)
            if p.parent == p:
                break
            p = p.parent
        self.path.mkdir(parents=True, exist_ok=True)
        had_lock = (self.path / LOCK_NAME).exists()
        self._lock = take_lock(self.path)  # another job may be making the same folder
        if cfg_file.exists():  # it was, and wrote its settings first
            self._check_config(cfg_file)
            return
        try:
            self.write_json("config.json", self.config)
            self._record_versions(versions)
        except BaseException:
            try:  # config.json was not there before: any found now is this one's
                cfg_file.unlink()
            except OSError:
                pass
            self.release()
            if not had_lock:  # the lock file is this one's too
                (self.path / LOCK_NAME).unlink(missing_ok=True)
            for d in made:
                try:
                    d.rmdir()
                except OSError:
                    break
            raise

    def release(self) -> None:
        """Drop this object's hold of the folder's lock (also when it is garbage collected, and
        at the end of the process); a job calls it when it is done."""
        if getattr(self, "_lock", None) is not None:
            release_lock(self._lock)
            self._lock = None

    def __del__(self):
        self.release()

    def _check_config(self, cfg_file: Path) -> None:
        try:
            old = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            old = None
        if not isinstance(old, dict):
            raise GreedypruneError(
                f"{str(cfg_file)!r} is damaged (not a JSON object); pass a new --out or delete "
                f"the folder"
            )
        if old != self.config:
            changed = sorted(
                k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k)
            )
            made = sorted(p.name for p in self.path.iterdir() if p.name not in _BOOKKEEPING)
            if not made:  # a run stopped before its first result: nothing would be mixed
                if self.writer:
                    self.write_json("config.json", self.config)
                    log.warning(
                        "out=%r held a run with other settings (differs in: %s) that stopped "
                        "before writing any result; starting it afresh with these settings",
                        str(self.path),
                        ", ".join(changed),
                    )
                return
            shown = ", ".join(made[:3]) + (", ..." if len(made) > 3 else "")
            raise GreedypruneError(
                f"out={str(self.path)!r} holds a run with other settings (differs in: "
                f"{', '.join(changed)}) and what it wrote ({shown}); pass a new --out or the "
                f"same settings to resume"
            )

    def _record_versions(self, versions: Mapping[str, Any] | None = None) -> None:
        """Add this session's software to ``versions.json`` if it differs from the last entry."""
        versions = dict(software_versions() if versions is None else versions)
        p = self.path / "versions.json"
        sessions: list = []
        if p.is_file():
            try:
                sessions = json.loads(p.read_text(encoding="utf-8")).get("sessions", [])
            except (ValueError, UnicodeDecodeError, AttributeError):
                sessions = []  # a damaged record is started afresh; it is not worth a refusal
            if not isinstance(sessions, list):
                sessions = []
        if sessions and sessions[-1] == versions:
            return
        self.write_json("versions.json", {"sessions": [*sessions, versions]})

    def versions(self) -> list[dict[str, Any]]:
        """The software of each session that wrote here (oldest first; see ``versions.json``)."""
        try:
            sessions = json.loads((self.path / "versions.json").read_text(encoding="utf-8"))
            return list(sessions["sessions"])
        except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
            return []  # none recorded yet, or a damaged record

    def table_path(self, table: str = "results") -> Path:
        return self.path / f"{table}.csv"

    def _read(self, table: str, *, as_text: bool = False) -> pd.DataFrame:
        """The table's complete rows (as written, every cell a string, if ``as_text``).

        A partial last row (a write cut short by a crash elsewhere) is left out together with
        every row of its unit, so that unit counts as not done and is run again; the next
        ``append`` writes the table without it. When the partial row's unit cannot be told (its
        name may be cut short), the last complete unit is left out too: it may be the same one.
        """
        p = self.table_path(table)
        if not p.is_file() or p.stat().st_size == 0:
            return pd.DataFrame()
        text = p.read_text(encoding="utf-8", errors="replace")
        good, partial = _complete_part(text)
        try:
            if not good.strip():
                df = pd.DataFrame()
            elif as_text:
                df = pd.read_csv(io.StringIO(good), dtype=str, keep_default_na=False)
            else:
                df = pd.read_csv(io.StringIO(good))
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            detail = " ".join(str(exc).split())[:160]
            raise GreedypruneError(
                f"{str(p)!r} is damaged ({detail}); fix or delete that line, or delete the file "
                f"to run its units again"
            ) from None
        if partial is None:
            return df
        bad = None
        if "unit" in df.columns:
            units = pd.read_csv(
                io.StringIO(good), dtype=str, keep_default_na=False, usecols=["unit"]
            )["unit"]
            i = list(df.columns).index("unit")
            if len(partial) > i + 1:  # a field follows the unit's, so its name is whole
                bad = partial[i]
            elif len(units):
                bad = units.iloc[-1]
            if bad is not None:
                df = df[(units != bad).to_numpy()].reset_index(drop=True)
        key = (table, len(text))
        if key not in self._warned:
            self._warned.add(key)
            log.warning(
                "%s ends in a partial row (a write cut short); it is left out and %s run again",
                p,
                f"unit {bad!r} is" if bad is not None else "its unit is",
            )
        return df

    def read(self, table: str = "results") -> pd.DataFrame:
        """The table as a DataFrame (empty if nothing was written yet)."""
        return self._read(table)

    def done_units(
        self, table: str = "results", belongs: Callable[[str], bool] | None = None
    ) -> set[str]:
        """The units whose rows the table holds; a table that is not one this class wrote (no
        ``unit`` column, a row without a unit, or, given ``belongs``, a unit for which it is
        false) is refused, naming the file and the line."""
        df = self._read(table, as_text=True)
        if df.empty:
            return set()
        p = self.table_path(table)
        if "unit" not in df.columns:
            raise GreedypruneError(
                f"{str(p)!r} has no 'unit' column, so it was not written by a run; move it away "
                f"or delete it to run its units again"
            )
        empty = (df["unit"].astype(str).str.strip() == "").to_numpy().nonzero()[0]
        if len(empty):
            raise GreedypruneError(
                f"{str(p)!r} line {int(empty[0]) + 2} has no unit; fix or delete that line, or "
                f"delete the file to run its units again"
            )
        units = df["unit"].astype(str)
        if belongs is not None:
            foreign = [i for i, u in enumerate(units) if not belongs(u)]
            if foreign:
                raise GreedypruneError(
                    f"{str(p)!r} line {foreign[0] + 2} holds unit {units.iloc[foreign[0]]!r}, "
                    "which is not one of this run's; the file is another run's or edited by "
                    "hand: move it away, or delete that line"
                )
        return set(units)

    def append(
        self, unit: str, records: Iterable[Mapping[str, Any]], table: str = "results"
    ) -> None:
        """Append one unit's rows atomically; rows of a unit already present are replaced."""
        new = pd.DataFrame([dict(r, unit=str(unit)) for r in records])
        if new.empty or not self.writer:
            return
        # Finished rows are carried over as the text they were written as, so a later unit
        # (with other columns, say) never rewrites them (an int column read back as float).
        old = self._read(table, as_text=True)
        if not old.empty and "unit" in old.columns:
            old = old[old["unit"].astype(str) != str(unit)]
        df = pd.concat([old, new], ignore_index=True) if not old.empty else new
        self.write_table(df, table)

    def write_table(self, df: pd.DataFrame, table: str) -> Path:
        p = self.table_path(table)
        if self.writer:
            atomic_write_text(p, df.to_csv(index=False))
        return p

    def read_json(self, name: str) -> Any:
        """The JSON file ``name`` of the folder; a damaged one is refused naming it and the fix."""
        p = self.path / name
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            detail = " ".join(str(exc).split())[:120]
            raise GreedypruneError(
                f"{str(p)!r} is damaged ({detail}); delete it to redo the step that wrote it"
            ) from None

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path / name
        if self.writer:
            atomic_write_text(p, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")
        return p


def open_run(path: str | os.PathLike, config: Mapping[str, Any]) -> RunDir:
    """``RunDir(path, config)`` for every process of a job: rank 0 makes the folder (or checks it,
    to resume) and writes; the other ranks then open it as readers (``writer=False``), whose writes
    are no-ops. A ``ValueError`` of rank 0 (see :class:`RunDir`) is raised on every rank (see
    :func:`from_main`). Without a process group: ``RunDir(path, config)``.
    """
    from greedyprune.dist import from_main, world_size

    if world_size() == 1:
        return RunDir(path, config)
    made: list[RunDir] = []
    from_main(lambda: made.append(RunDir(path, config)))
    return made[0] if made else RunDir(path, config, writer=False)
