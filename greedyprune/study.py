"""One runner for every study: run folder, device check, threads, resume, claims, summary.

A :class:`Study` says *what* to run: the config that names the run (``config.json``), its units of
work (each with a stable id and a function returning result rows), the claims judged on the
results and an optional summary table. :func:`run_study` does the rest, the same way for every
front end (``verify two-layer``, ``verify deep``, ``compare``):

1. check the device (before anything is written; a front end runs its own checks of the input
   before it calls :func:`run_study`, so bad input never leaves a folder behind),
2. open the run folder (:class:`greedyprune.runs.RunDir`: a folder holding another config is
   refused, so a resume never mixes settings),
3. run the units not yet in ``results.csv``, in order, each one's rows appended in one atomic write
   (an interrupted run resumes at the first unfinished unit; no row is lost or doubled), with
   torch pinned to ``cpu_threads`` threads on the CPU,
4. judge the claims on the whole results table (``verdicts.csv``), write the summary
   (``summary.csv``) and ``manifest.json`` (config, unit count, processes, seconds of this call,
   torch).

Under ``torchrun`` (an initialised ``torch.distributed`` process group) every rank calls
:func:`run_study` with the same study: rank 0 alone makes (or checks) the folder and writes the
rows, verdicts, summary and manifest; every rank runs every unit left to do (a unit may use
collectives: distributed fine-tuning, sharded selection), in the same order, because the ranks take
rank 0's list of finished units; and every rank returns rank 0's tables. A bad ``out`` or a folder
of other settings stops every rank with rank 0's message (:func:`greedyprune.dist.from_main`).

A front end is then a short definition of units over this; see ``greedyprune.sims.two_layer``,
``greedyprune.sims.deep`` and ``greedyprune.prune.compare``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from greedyprune import errors
from greedyprune.dist import from_main
from greedyprune.errors import GreedypruneError, refuse
from greedyprune.runs import RunDir, open_run

__all__ = ["Study", "StudyResult", "check_device", "cpu_threads", "run_study"]

Rows = Iterable[Mapping[str, Any]]
Unit = tuple[str, Callable[[], Rows]]


@dataclass(frozen=True)
class Study:
    """What a run does.

    name: a label for progress and log lines (``"two-layer quick"``).
    config: the run's ``config.json``: what must be equal to resume in the same folder.
    units: ``units(device) -> [(unit_id, fn), ...]`` in run order, ``fn() -> rows`` (dicts); the
        device is :func:`check_device`'s answer. Unit ids are stable (they mark a unit done in
        ``results.csv``) and unique within a study.
    claims: :class:`greedyprune.theory.Claim` s judged on the results by
        :func:`greedyprune.theory.check` (``verdicts.csv``); none: no verdicts.
    n_range: the n range of the claims' fits (None: each claim's own, or all n).
    summary: ``summary(results) -> DataFrame`` written as ``summary.csv``; None: no summary.
    cpu_threads: torch threads while the units run on the CPU (None: leave torch's setting).
    belongs: ``belongs(unit_id) -> bool``, the unit ids a folder of this study may hold (when
        its units vary between calls with one config); None: exactly this call's. A row of any
        other unit is refused, naming the file and line.
    """

    name: str
    config: Mapping[str, Any]
    units: Callable[[str], Iterable[Unit]]
    claims: Sequence[Any] = ()
    n_range: tuple[float, float] | None = None
    summary: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    cpu_threads: int | None = None
    belongs: Callable[[str], bool] | None = None


@dataclass
class StudyResult:
    """What :func:`run_study` returns: the tables it wrote and the run folder."""

    results: pd.DataFrame
    verdicts: pd.DataFrame
    summary: pd.DataFrame | None
    run: RunDir = field(repr=False)


def check_device(device) -> str:
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device`` or None for the CPU) as
    a string (:func:`greedyprune.errors.check_device`)."""
    return errors.check_device("device", device)


@contextlib.contextmanager
def cpu_threads(device: str, threads: int | None) -> Iterator[None]:
    """Run torch on ``threads`` CPU threads inside the block when ``device`` is the CPU (restored
    after); ``threads=None`` leaves the setting alone.

    The mean-field studies want 1: every tensor is small (m <= a few hundred points, N <= 10^4
    neurons), so an op takes microseconds and OpenMP's synchronisation costs more than it saves
    (with OMP_NUM_THREADS=2 on a busy 2-core machine training ran 10-30x slower than on one).
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None and str(device).startswith("cpu"):
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _units(study: Study, device: str) -> list[Unit]:
    units = [(str(u), fn) for u, fn in study.units(device)]
    seen: set[str] = set()
    for u, _ in units:
        if u in seen:
            raise GreedypruneError(f"study {study.name!r}: unit id {u!r} occurs twice")
        seen.add(u)
    return units


def run_study(
    study: Study,
    out: str | os.PathLike,
    *,
    device=None,
    progress: bool | None = False,
    log: Callable[[str], None] | None = None,
    n_boot: int = 1000,
) -> StudyResult:
    """Run ``study`` into the folder ``out``, resuming its finished units, and judge its claims.

    device: where the units run (checked first, before the folder is made).
    progress: a bar over the units on stderr (None: when stderr is a terminal); rank 0 only.
    log: called with ``"[i/total] unit: seconds"`` after each unit run here (on rank 0 only).
    n_boot: bootstrap re-samples behind each verdict's interval.
    Writes ``results.csv`` (each unit's rows with a ``unit`` column), ``verdicts.csv`` (when the
    study has claims), ``summary.csv`` (when it has a summary) and ``manifest.json``. In a
    ``torch.distributed`` job every rank must call it; see the module's docstring.
    """
    import torch
    from tqdm.auto import tqdm

    import greedyprune.theory as theory
    from greedyprune.dist import is_main, world_size

    if not isinstance(study, Study):
        raise refuse("study", study, "a Study", wrong_type=True)
    n_boot = errors.check_int("n_boot", n_boot, minimum=10)  # 1000 for reported intervals
    device = check_device(device)
    units = _units(study, device)
    run = open_run(out, study.config)  # rank 0 writes; the other ranks read
    ids = {u for u, _ in units}
    belongs = study.belongs if study.belongs is not None else ids.__contains__
    done = from_main(lambda: run.done_units(belongs=belongs))  # every rank: the same units
    todo = [(i, u, fn) for i, (u, fn) in enumerate(units) if u not in done]
    main = is_main()
    t0 = time.perf_counter()
    bar = tqdm(
        todo,
        desc=study.name,
        disable=(not main) or (None if progress is None else not progress),
    )
    with cpu_threads(device, study.cpu_threads):
        for i, unit, fn in bar:
            bar.set_postfix_str(unit)
            t = time.perf_counter()
            run.append(unit, fn())  # a no-op on the ranks other than 0
            if log is not None and main:
                log(f"[{i + 1}/{len(units)}] {unit}: {time.perf_counter() - t:.1f}s")

    def finish() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
        results = run.read()
        verdicts = pd.DataFrame()
        if study.claims:
            kw = {} if study.n_range is None else {"n_range": study.n_range}
            verdicts = theory.check(results, list(study.claims), n_boot=n_boot, **kw)
            run.write_table(verdicts, "verdicts")
        summary = None
        if study.summary is not None:
            summary = study.summary(results)
            run.write_table(summary, "summary")
        run.write_json(
            "manifest.json",
            dict(
                config=study.config,
                units=len(units),
                processes=world_size(),
                seconds_this_call=time.perf_counter() - t0,
                torch=torch.__version__,
            ),
        )
        return results, verdicts, summary

    results, verdicts, summary = from_main(finish)  # rank 0's tables on every rank
    run.release()  # the folder is free for another job (this object still reads it)
    return StudyResult(results, verdicts, summary, run)
