"""The distributed kernel (greedyprune/dist.py) against one-process greedy, on 2 gloo processes.

One module-level job spawns 2 ranks (``torch.multiprocessing``, gloo over TCP on 127.0.0.1, a
60 s collective timeout and a 150 s deadline on the whole job); each rank runs every case below and
saves what it got; the tests compare with one-process references computed here. Exact ties are
made with small integer features (every score is then an exact integer, whatever the order of the
arithmetic), so the tie rule is tested, not the rounding of a matrix-vector product.
"""

from __future__ import annotations

import datetime
import socket
import time

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as tmp

from greedyprune import dist as gd
from greedyprune import select as gs
from greedyprune.select import Selection, SquaredLoss, greedy_select

WORLD = 2
DEADLINE_S = 150.0


# -- data ------------------------------------------------------------------------------------------
def make_data(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [N, m(, c)] and target of a case (deterministic in the case's seed)."""
    g = torch.Generator().manual_seed(case["seed"])
    m, c = case["m"], case.get("c")
    shape = (m,) if c is None else (m, c)
    if case["kind"] == "integer_twice":
        # The same integer rows twice: rows i and i + M tie exactly at every step.
        a = torch.randint(-3, 4, (case["N"] // 2, *shape), generator=g).double()
        t = torch.randint(-2, 3, shape, generator=g).double()
        return torch.cat([a, a]), t
    dtype = case.get("dtype", torch.float64)
    f = torch.randn(case["N"], *shape, generator=g, dtype=dtype)
    t = 0.5 * torch.randn(shape, generator=g, dtype=dtype)
    return f, t


def shards_of(case: dict) -> list[tuple[int, int]]:
    """Each rank's global rows (lo, hi)."""
    if case.get("shards") is not None:
        return case["shards"]
    out = []
    for r in range(WORLD):
        lo, count = gd.shard_range(case["N"], r, WORLD)
        out.append((lo, lo + count))
    return out


CASES = [
    # exact greedy ("central"), float64, even and uneven shards, with and without replacement
    dict(name="even_repl", kind="randn", N=37, m=6, seed=0, n=30, repl=True),
    dict(name="even_norepl", kind="randn", N=37, m=6, seed=0, n=30, repl=False),
    dict(name="uneven_repl", kind="randn", N=23, m=5, seed=1, n=40, repl=True, shards=[(0, 5), (5, 23)]),
    dict(name="uneven_all", kind="randn", N=23, m=5, seed=1, n=23, repl=False, shards=[(0, 5), (5, 23)]),
    dict(name="seed7", kind="randn", N=64, m=12, seed=7, n=25, repl=True),
    dict(name="float32", kind="randn", N=50, m=16, seed=3, n=20, repl=True, dtype=torch.float32),
    dict(name="classes", kind="randn", N=20, m=5, c=3, seed=4, n=12, repl=False),
    # rank 0 holds the upper half: a tie must go to the lower global index, i.e. to rank 1
    dict(name="ties_repl", kind="integer_twice", N=24, m=4, seed=2, n=20, repl=True, shards=[(12, 24), (0, 12)]),
    dict(name="ties_norepl", kind="integer_twice", N=24, m=4, seed=2, n=15, repl=False, shards=[(12, 24), (0, 12)]),
    # stochastic greedy: the same draws on every rank from a shared seed
    dict(name="stochastic", kind="randn", N=40, m=6, seed=5, n=15, repl=True, candidates=7, generator=11),
    # no generator: rank 0 draws the seed, every rank uses it (no one-process reference)
    dict(name="stochastic_shared_seed", kind="randn", N=40, m=6, seed=5, n=15, repl=False, candidates=7, noref=True),
    # GreeDi
    dict(name="greedi_repl", kind="randn", N=40, m=6, seed=6, n=10, repl=True, method="greedi"),
    dict(name="greedi_norepl", kind="randn", N=40, m=6, seed=6, n=10, repl=False, method="greedi"),
    dict(name="greedi_local15", kind="randn", N=31, m=5, seed=8, n=10, repl=True, method="greedi", local_n=15),
    dict(name="greedi_twice", kind="integer_twice", N=30, m=4, seed=9, n=12, repl=True, method="greedi"),
    dict(name="greedi_twice_norepl", kind="integer_twice", N=30, m=4, seed=9, n=12, repl=False, method="greedi"),
]  # fmt: skip
BY_NAME = {c["name"]: c for c in CASES}


def run_case(case: dict, rank: int) -> Selection:
    f, t = make_data(case)
    lo, hi = shards_of(case)[rank]
    return gs.sharded_greedy_select(
        f[lo:hi],
        t,
        case["n"],
        row_offset=lo if case.get("shards") is not None else None,
        replacement=case["repl"],
        method=case.get("method", "central"),
        candidates=case.get("candidates"),
        generator=case.get("generator"),
        local_n=case.get("local_n"),
    )


def _error_of(fn) -> str:
    try:
        fn()
    except ValueError as e:
        return str(e)
    return "no error"


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        results = {}
        for case in CASES:
            sel = run_case(case, rank)
            results[case["name"]] = {**sel.to_dict(), "order": sel.order, "losses": sel.losses}
        one = torch.ones(1, 3, dtype=torch.float64)
        results["error_shard_range"] = _error_of(lambda: gd.shard_range(1))
        # One row for two ranks: rank 1's shard is empty.
        results["error_objective"] = _error_of(
            lambda: gs.ShardedSquaredLoss(one[rank : rank + 1], torch.zeros(3, dtype=torch.float64))
        )
        results["rank"], results["world_size"] = gd.rank(), gd.world_size()
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """What each of the 2 ranks returned for every case."""
    out = tmp_path_factory.mktemp("dist")
    ctx = tmp.start_processes(
        _worker, args=(_free_port(), str(out)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD}-rank job did not finish within {DEADLINE_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def reference(case: dict) -> Selection:
    f, t = make_data(case)
    return greedy_select(
        SquaredLoss(f, t),
        case["n"],
        replacement=case["repl"],
        candidates=case.get("candidates"),
        generator=case.get("generator"),
    )


def slow_loss(f: torch.Tensor, t: torch.Tensor, rows: list[int]) -> float:
    """0.5 * mean over the data (and outputs summed) of (average of the rows - target)^2."""
    avg = f.double()[rows].mean(0)
    return float(0.5 * (avg - t.double()).pow(2).reshape(f.shape[1], -1).sum(1).mean())


def greedi_reference(case: dict) -> tuple[list[int], str]:
    """GreeDi simulated in one process: greedy per shard, greedy on the union, best of both."""
    f, t = make_data(case)
    n, repl = case["n"], case["repl"]
    local_n = case.get("local_n") or n
    locals_, union = [], set()
    for lo, hi in shards_of(case):
        sel = greedy_select(
            SquaredLoss(f[lo:hi], t), local_n if repl else min(local_n, hi - lo), replacement=repl
        )
        locals_.append([lo + i for i in sel.order.tolist()])
        union.update(locals_[-1])
    idx = sorted(union)
    sel = greedy_select(SquaredLoss(f[idx], t), n, replacement=repl)
    best, chosen = [idx[i] for i in sel.order.tolist()], "union"
    best_loss = slow_loss(f, t, best)
    for q, order in enumerate(locals_):
        if len(order) >= n and slow_loss(f, t, order[:n]) < best_loss - 1e-12:
            best, best_loss, chosen = order[:n], slow_loss(f, t, order[:n]), f"local:{q}"
    return best, chosen


CENTRAL = [
    c["name"] for c in CASES if c.get("method", "central") == "central" and not c.get("noref")
]
NOREF = [c["name"] for c in CASES if c.get("noref")]
GREEDI = [c["name"] for c in CASES if c.get("method") == "greedi"]


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CENTRAL)
def test_central_picks_what_one_process_picks(ranks, name):
    case = BY_NAME[name]
    ref = reference(case)
    for r, res in enumerate(ranks):
        got = res[name]
        assert got["order"].tolist() == ref.order.tolist(), f"rank {r}: order differs"
        assert torch.allclose(got["losses"], ref.losses, rtol=1e-5, atol=0)
        assert got["counts"] == ref.counts.tolist()
        assert got["evaluations"] == ref.evaluations
        assert got["n_candidates"] == case["N"]


@pytest.mark.parametrize("name", CENTRAL + NOREF + GREEDI)
def test_every_rank_returns_the_same_record(ranks, name):
    a, b = ranks[0][name], ranks[1][name]
    assert a["order"].tolist() == b["order"].tolist()
    assert torch.equal(a["losses"], b["losses"])
    assert a["weights"] == b["weights"] and a["info"] == b["info"]


@pytest.mark.parametrize("name", CENTRAL + NOREF + GREEDI)
def test_losses_match_a_slow_reference(ranks, name):
    case = BY_NAME[name]
    f, t = make_data(case)
    got = ranks[0][name]
    order = got["order"].tolist()
    assert all(0 <= i < case["N"] for i in order)
    if not case["repl"]:
        assert len(set(order)) == len(order)
    slow = [slow_loss(f, t, order[:k]) for k in range(1, len(order) + 1)]
    assert torch.allclose(got["losses"], torch.tensor(slow, dtype=torch.float64), rtol=1e-5)


def test_ties_go_to_the_lowest_global_index(ranks):
    # Rows i and i + 12 are equal; rank 0 holds 12..23: one process never picks the upper copy.
    # Without replacement an upper copy comes only after its lower copy is taken.
    order = ranks[0]["ties_repl"]["order"].tolist()
    assert max(order) < 12, order
    order = ranks[0]["ties_norepl"]["order"].tolist()
    assert all(i < 12 or i - 12 in order[:k] for k, i in enumerate(order)), order


@pytest.mark.parametrize("name", GREEDI)
def test_greedi_equals_its_one_process_simulation(ranks, name):
    best, chosen = greedi_reference(BY_NAME[name])
    got = ranks[0][name]
    assert got["order"].tolist() == best
    assert got["info"]["distributed"]["chosen"] == chosen
    assert got["method"] == "greedi" + ("" if BY_NAME[name]["repl"] else "_norepl")


def test_greedi_on_duplicated_shards_is_central_greedy(ranks):
    # Both shards hold the same rows: the union holds central greedy's picks twice, and its ties
    # go to rank 0's copies, so GreeDi returns exactly central greedy's selection.
    for name in ("greedi_twice", "greedi_twice_norepl"):
        case = BY_NAME[name]
        ref = reference(case)
        assert ranks[0][name]["order"].tolist() == ref.order.tolist()


def test_world_size_larger_than_rows_is_a_clear_error(ranks):
    for res in ranks:
        for key in ("error_shard_range", "error_objective"):
            assert "world size 2 is larger than the 1 rows" in res[key], res[key]
    assert [res["rank"] for res in ranks] == [0, 1]
    assert all(res["world_size"] == WORLD for res in ranks)


# -- one process (no process group) ------------------------------------------------------------------
@pytest.mark.parametrize("repl", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_process_greedi_and_central_are_greedy(seed, repl):
    case = dict(kind="randn", N=30, m=5, seed=seed)
    f, t = make_data(case)
    ref = greedy_select(SquaredLoss(f, t), 20, replacement=repl)
    for method in ("central", "greedi"):
        sel = gs.sharded_greedy_select(f, t, 20, replacement=repl, method=method)
        assert sel.order.tolist() == ref.order.tolist(), method
        assert torch.allclose(sel.losses, ref.losses, rtol=1e-12)


def test_shard_range_tiles_the_rows():
    for N, W in [(10, 3), (7, 7), (100, 8)]:
        parts = [gd.shard_range(N, r, W) for r in range(W)]
        assert [lo for lo, _ in parts] == [sum(c for _, c in parts[:r]) for r in range(W)]
        assert sum(c for _, c in parts) == N and min(c for _, c in parts) >= N // W
    with pytest.raises(ValueError, match="world size 9 is larger than the 8 rows"):
        gd.shard_range(8, 0, 9)


def test_one_process_helpers_and_argument_errors():
    assert (gd.rank(), gd.world_size(), gd.is_main(), gd.is_distributed()) == (0, 1, True, False)
    with gd.main_first():
        pass
    f, t = make_data(dict(kind="randn", N=5, m=3, seed=0))
    with pytest.raises(ValueError, match="method"):
        gs.sharded_greedy_select(f, t, 2, method="tree")
    with pytest.raises(ValueError, match="local_n=1 must be >= n=2"):
        gs.sharded_greedy_select(f, t, 2, method="greedi", local_n=1)
    with pytest.raises(ValueError, match="tile rows"):
        gs.ShardedSquaredLoss(f, t, row_offset=1)
    with pytest.raises(ValueError, match="n_total=6"):
        gs.ShardedSquaredLoss(f, t, n_total=6)
