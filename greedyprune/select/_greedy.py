"""The greedy forward selection loop (Ye et al. 2020), with its stochastic and corrective variants."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from greedyprune.errors import GreedypruneError, GreedypruneTypeError, check_choice, refuse

from ._checks import check_bool, check_positive_int
from ._objectives import FeatureObjective, Objective
from ._selection import Selection
from ._simplex import solve_simplex_gram

__all__ = ["candidates_per_step", "greedy_select", "make_generator", "stop_rule"]

StopRule = Callable[[int, float], bool]
StepHook = Callable[[int, int, float], None]


def make_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """A CPU generator from a generator, a seed, or None (a fresh, randomly seeded one)."""
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    if generator is None:
        g.seed()
    elif isinstance(generator, int) and not isinstance(generator, bool):
        g.manual_seed(generator)
    else:
        raise refuse(
            "generator", generator, "a torch.Generator, an int seed or None", wrong_type=True
        )
    return g


def candidates_per_step(candidates, n_candidates: int, n: int) -> int | None:
    """How many candidates to score per step: None (all), or s from an int or ("eps", eps)."""
    if candidates is None:
        return None
    if isinstance(candidates, tuple) and len(candidates) == 2 and candidates[0] == "eps":
        eps = candidates[1]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise refuse("candidates", candidates, "('eps', eps) with 0 < eps < 1")
        return max(1, math.ceil(n_candidates / n * math.log(1 / eps)))
    if isinstance(candidates, numbers.Integral) and not isinstance(candidates, bool):
        return check_positive_int("candidates", int(candidates))
    raise refuse(
        "candidates", candidates,
        "None (score all), an int s >= 1 (s random candidates per step) or ('eps', eps) for "
        "s = (N/n) log(1/eps)",
    )  # fmt: skip


def stop_rule(stop) -> StopRule | None:
    """None, a loss threshold (stop once the loss is at or below it), or ``callable(step, loss)``."""
    if stop is None or callable(stop):
        return stop
    if isinstance(stop, (int, float)) and not isinstance(stop, bool):
        if not math.isfinite(stop):
            raise refuse("stop", stop, "a finite loss threshold")
        threshold = float(stop)
        return lambda step, loss: loss <= threshold
    raise refuse(
        "stop", stop, "None, a loss threshold or a callable(step, loss) -> bool", wrong_type=True
    )


def _declares(objective, flag: str) -> bool:
    """Whether ``objective`` declares the optional capability ``flag`` (see :class:`Objective`).

    An objective that does not define the flag (one that follows the protocol without subclassing
    it) has the protocol's default, False; only the value True turns a capability on.
    """
    return getattr(objective, flag, False) is True


def _check_corrective(objective) -> None:
    if not _declares(objective, "supports_corrective"):
        raise GreedypruneTypeError(
            f"weights='corrective' needs an objective that declares supports_corrective = True, "
            f"as the squared losses do (SquaredLoss, FactoredSquaredLoss, GramLoss); "
            f"{type(objective).__name__} does not declare it (the capability needs "
            f"simplex_terms, set_weights and linesearch_losses): use weights='average'"
        )


def _check_objective(objective) -> None:
    for attr in ("n_candidates", "losses", "add", "current_loss"):
        if not hasattr(objective, attr):
            raise refuse(
                "objective", objective,
                f"a greedyprune.select.Objective (missing {attr!r})", wrong_type=True,
            )  # fmt: skip
    if getattr(objective, "size", 0) != 0:
        raise GreedypruneError(
            f"objective already holds {objective.size} neurons; call objective.reset() first"
        )


def _device_of(objective) -> torch.device:
    dev = getattr(objective, "device", None)
    return torch.device(dev) if dev is not None else torch.device("cpu")


def _general_step(objective, step, corrective, replacement, taken, s, gen, device, lowest=False):
    """One step through ``objective.losses``: ``(index, loss, candidates evaluated)``."""
    N = int(objective.n_candidates)
    score = objective.linesearch_losses if corrective and step > 1 else objective.losses
    pool = None if replacement else torch.nonzero(~taken).flatten()
    pool_size = N if pool is None else pool.numel()
    if s is None or s >= pool_size:
        if pool is None or pool_size == N:
            cand = None
            scores = score(None)
        elif isinstance(objective, FeatureObjective):
            # One product over all rows, then rule out what is taken: cheaper than gathering rows.
            cand = None
            scores = score(None).clone()
            scores[taken] = torch.inf
        else:
            cand = pool
            scores = score(cand)
        evaluated = pool_size
    else:
        if lowest:
            pick = torch.arange(s, device=device)
        else:
            pick = torch.randperm(pool_size, generator=gen)[:s].to(device)
        cand = pick if pool is None else pool[pick]
        cand, _ = torch.sort(cand)
        scores = score(cand)
        evaluated = cand.numel()
    j = int(torch.argmin(scores))
    loss = float(scores[j])
    if not math.isfinite(loss):
        # argmin propagates NaN; only here, off the fast path, look past it.
        scores = torch.nan_to_num(scores, nan=torch.inf, posinf=torch.inf)
        j = int(torch.argmin(scores))
        loss = float(scores[j])
        if not math.isfinite(loss):
            raise FloatingPointError(f"every candidate's loss is NaN or inf at step {step}")
    i = j if cand is None else int(cand[j])
    return i, loss, evaluated


def greedy_select(
    objective: Objective,
    n: int,
    *,
    replacement: bool = True,
    candidates=None,
    stop=None,
    on_step: StepHook | None = None,
    generator: torch.Generator | int | None = None,
    weights: str = "average",
    candidate_order: str = "random",
    progress: bool = False,
) -> Selection:
    """Grow a subnetwork one neuron at a time, each time adding the neuron that lowers the loss most.

    objective: scores "current subnetwork + candidate i" (see :class:`Objective`); it must be empty.
    n: the number of steps (the subnetwork's size, counting repeats).
    replacement: True is the theory's version (a neuron may be picked again; the subnetwork is the
        average over the multiset); False never picks a neuron twice (the authors' practice).
    candidates: None scores every candidate each step; an int s scores s candidates drawn at random
        (stochastic greedy, without replacement within the step); ``("eps", eps)`` sets
        s = ceil((N / n) log(1 / eps)). Ties go to the lowest index.
    candidate_order: with ``candidates`` s below the open pool, "random" (stochastic greedy, the
        default) draws the s candidates at random; "lowest-index" takes the s open candidates of
        lowest index (what the authors' CNN code ends up doing, see docs/prune.md).
    stop: end early: a loss threshold, or ``callable(step, loss) -> bool`` (True stops); it is
        called once per step, after the step's loss has reached the host and after ``on_step``.
        It should be a pure predicate: put side effects in ``on_step``.
    on_step: None or ``callable(step, index, loss)``, called once per step for side effects
        (logging, swapping an objective's batch...), with the values the Selection records
        (``order[step-1]``, ``losses[step-1]``). Order within step k: the pick is scored, committed
        (``objective.add``), re-weighted (corrective), recorded; then ``on_step(k, i, loss)``; then
        ``stop(k, loss)``; then step k+1 scores. So ``stop`` may read state ``on_step`` just set,
        and what ``on_step`` changes in the objective is seen by step k+1's scoring.
    generator: torch.Generator or int seed for the candidate draws.
    weights: "average" (counts / n) or "corrective" (fully-corrective Frank-Wolfe, the follow-up's
        variant; objectives declaring ``supports_corrective`` only, see :class:`Objective`, others
        raise TypeError up front): from step 2 on, candidates are scored by
        exact line search from the current subnetwork, and after each pick the weights of all
        selected neurons are re-solved by least squares over the simplex. Its loss never rises.
    Returns a :class:`Selection`; ``losses[k-1]`` is the loss after step k.

    Exact greedy (``candidates`` None or >= N, ``weights="average"``) on an objective declaring
    ``supports_fused_step`` (``SquaredLoss``, ``ShardedSquaredLoss``) takes its fused step
    ``best_addition``: for a ``SquaredLoss`` one ``addmv`` over the cached ``[N, m]`` features and
    one ``argmin``, no chunking.
    """
    _check_objective(objective)
    N = int(objective.n_candidates)
    n = check_positive_int("n", n)
    replacement = check_bool("replacement", replacement)
    progress = check_bool("progress", progress)
    if not replacement and n > N:
        raise GreedypruneError(
            f"n={n} exceeds the {N} candidates; without replacement pass n <= {N} or replacement=True"
        )
    check_choice("weights", weights, ("average", "corrective"))
    corrective = weights == "corrective"
    if corrective:
        _check_corrective(objective)
    if on_step is not None and not callable(on_step):
        raise refuse("on_step", on_step, "None or a callable(step, index, loss)", wrong_type=True)
    s = candidates_per_step(candidates, N, n)
    check_choice("candidate_order", candidate_order, ("random", "lowest-index"))
    lowest = candidate_order == "lowest-index"
    should_stop = stop_rule(stop)
    gen = make_generator(generator) if s is not None else None
    device = _device_of(objective)

    taken = torch.zeros(N, dtype=torch.bool, device=device)
    # The squared-loss fast path scores every open candidate in one fused call; closed candidates
    # (no replacement) carry +inf in ``blocked`` so no mask or gather is needed per step. s >= N
    # scores every open candidate too, so it takes the same path and picks exactly the same.
    exact = s is None or s >= N
    fused = exact and not corrective and _declares(objective, "supports_fused_step")
    blocked = None
    if fused and not replacement:
        blocked = torch.zeros(N, dtype=objective.dtype, device=device)
    order: list[int] = []
    losses: list[float] = []
    evaluations = 0
    mix = torch.zeros(N, dtype=torch.float64)
    for step in tqdm(range(1, n + 1), desc="greedy", disable=not progress, leave=False):
        if fused:
            i, loss = objective.best_addition(blocked)
            if math.isfinite(loss):
                evaluations += N if replacement else N - len(order)
            else:
                # argmin propagates NaN: from here on, score through the general path.
                fused = False
                if blocked is not None:
                    taken = torch.isinf(blocked)
        if not fused:
            i, loss, evaluated = _general_step(
                objective, step, corrective, replacement, taken, s, gen, device, lowest
            )
            evaluations += evaluated
        objective.add(i)
        if blocked is not None and fused:
            blocked[i] = torch.inf
        elif not replacement:
            taken[i] = True
        order.append(i)
        if corrective:
            k = len(order)
            mix *= (k - 1) / k
            mix[i] += 1.0 / k
            support = torch.nonzero(mix > 0).flatten()
            gram, lin, const = objective.simplex_terms(support.to(device))
            w = solve_simplex_gram(gram, lin, const, init=mix[support].to(gram))
            mix = torch.zeros(N, dtype=torch.float64)
            mix[support] = w.double().cpu()
            objective.set_weights(support, w)
            loss = objective.current_loss()
        losses.append(loss)
        if on_step is not None:
            on_step(step, i, loss)
        if should_stop is not None and should_stop(step, loss):
            break
    method = "greedy" + ("_corrective" if corrective else "") + ("" if replacement else "_norepl")
    sel = Selection.from_order(
        order,
        losses,
        N,
        evaluations=evaluations,
        method=method,
        weights=mix if corrective else None,
    )
    sel.info = {
        "replacement": replacement,
        "candidates_per_step": s,
        "weights": weights,
        "candidate_order": candidate_order,
    }
    return sel
