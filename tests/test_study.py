"""greedyprune.study: one runner for every study (run folder, device, threads, resume, claims)."""

import json

import pandas as pd
import pytest
import torch

from greedyprune.study import Study, check_device, run_study
from greedyprune.theory import Claim, check

SIZES = (1, 2, 4, 8, 16, 32)
CLAIMS = (
    Claim("steep", "loss ~ n^-2", "rate", "m", predicted_slope=-2.0, tolerance=0.1),
    Claim(
        "shallow",
        "loss ~ n^-1",
        "rate",
        "m",
        predicted_slope=-1.0,
        tolerance=0.1,
        direction="about",
    ),
)


def _rows(seed: int) -> list[dict]:
    """Exact power laws: loss = (1 + seed) n^-2, so every seed's slope is -2."""
    return [
        dict(experiment="rate", method="m", n=n, seed=seed, loss_train=(1.0 + seed) * n**-2.0)
        for n in SIZES
    ]


class Units:
    """Units ``seed0..seedK``; counts the calls of each and can fail one (an interruption)."""

    def __init__(self, seeds=(0, 1, 2)):
        self.seeds = seeds
        self.calls: dict[str, int] = {}
        self.fail: str | None = None
        self.devices: list[str] = []
        self.threads: list[int] = []

    def __call__(self, device):
        self.devices.append(device)
        for seed in self.seeds:
            yield f"seed{seed}", lambda seed=seed: self._run(seed)

    def _run(self, seed):
        unit = f"seed{seed}"
        self.calls[unit] = self.calls.get(unit, 0) + 1
        self.threads.append(torch.get_num_threads())
        if unit == self.fail:
            raise KeyboardInterrupt  # Ctrl-C in the middle of this unit
        return _rows(seed)


def _study(units, **kw) -> Study:
    fields = dict(name="test", config={"kind": "test"}, units=units, claims=CLAIMS)
    return Study(**{**fields, **kw})


def test_a_finished_unit_is_not_run_again_on_resume(tmp_path):
    units = Units()
    units.fail = "seed1"
    with pytest.raises(KeyboardInterrupt):
        run_study(_study(units), tmp_path, n_boot=20)
    assert units.calls == {"seed0": 1, "seed1": 1}
    units.fail = None
    run_study(_study(units), tmp_path, n_boot=20)
    assert units.calls == {"seed0": 1, "seed1": 2, "seed2": 1}  # seed0 was done: not run again
    ran = []
    run_study(_study(units), tmp_path, n_boot=20, log=ran.append)
    assert units.calls == {"seed0": 1, "seed1": 2, "seed2": 1} and ran == []


def test_each_units_rows_are_written_once(tmp_path):
    units = Units()
    units.fail = "seed2"
    with pytest.raises(KeyboardInterrupt):
        run_study(_study(units), tmp_path, n_boot=20)
    units.fail = None
    ran = []
    for _ in range(2):
        done = run_study(_study(units), tmp_path, n_boot=20, log=ran.append)
    assert len(ran) == 1 and ran[0].startswith("[3/3] seed2: ")
    on_disk = pd.read_csv(tmp_path / "results.csv")
    for table in (on_disk, done.results):
        assert table.groupby("unit").size().to_dict() == {f"seed{s}": len(SIZES) for s in (0, 1, 2)}
        assert not table.duplicated(["unit", "n"]).any()
        for s in (0, 1, 2):
            rows = table[table.unit == f"seed{s}"].sort_values("n")
            assert list(rows["loss_train"]) == [r["loss_train"] for r in _rows(s)]


def test_unit_ids_must_be_unique(tmp_path):
    def units(device):
        return [("a", lambda: _rows(0)), ("a", lambda: _rows(1))]

    with pytest.raises(ValueError, match="unit id 'a' occurs twice"):
        run_study(_study(units), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_claims_are_judged_on_the_whole_results_table(tmp_path):
    """Two sessions each run part of the units: the verdicts of the second are those of the whole
    table (every seed), fitted over the study's n range, and written to verdicts.csv."""
    units = Units()
    units.fail = "seed1"
    with pytest.raises(KeyboardInterrupt):
        run_study(_study(units, n_range=(2, 16)), tmp_path, n_boot=50)
    units.fail = None
    done = run_study(_study(units, n_range=(2, 16)), tmp_path, n_boot=50)
    v = done.verdicts.set_index("claim")
    assert list(v.index) == ["steep", "shallow"]
    assert (v["n_seeds"] == 3).all()  # seed0 from the first session, seeds 1 and 2 from this one
    assert (v["n_min"] == 2).all() and (v["n_max"] == 16).all()
    # every seed's slope is exactly -2: the interval is -2 up to rounding
    assert v.loc["steep", "measured_slope"] == pytest.approx(-2.0, abs=1e-9)
    assert v.loc["steep", "verdict"] == "holds" and v.loc["shallow", "verdict"] == "fails"
    expected = check(pd.read_csv(tmp_path / "results.csv"), CLAIMS, n_range=(2, 16), n_boot=50)
    pd.testing.assert_frame_equal(done.verdicts, expected)
    on_disk = pd.read_csv(tmp_path / "verdicts.csv")
    assert list(on_disk["verdict"]) == ["holds", "fails"]


def test_summary_manifest_and_config(tmp_path):
    units = Units(seeds=(0, 1))

    def summary(results):
        return results.groupby("n", as_index=False)["loss_train"].mean()

    done = run_study(_study(units, summary=summary, claims=()), tmp_path, n_boot=20)
    assert done.verdicts.empty and not (tmp_path / "verdicts.csv").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "summary.csv"), done.summary)
    assert list(done.summary["n"]) == list(SIZES)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"] == {"kind": "test"} and manifest["units"] == 2
    assert json.loads((tmp_path / "config.json").read_text()) == {"kind": "test"}
    with pytest.raises(ValueError, match="other settings"):
        run_study(_study(units, config={"kind": "other"}), tmp_path)


def test_the_device_is_checked_before_the_folder_is_made(tmp_path):
    units = Units()
    with pytest.raises(ValueError, match="device='tpu'"):
        run_study(_study(units), tmp_path / "run", device="tpu")
    assert not (tmp_path / "run").exists() and units.calls == {}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            run_study(_study(units), tmp_path / "run", device="cuda")
        assert not (tmp_path / "run").exists()
    assert check_device(None) == "cpu" and check_device(torch.device("cpu")) == "cpu"
    run_study(_study(units), tmp_path / "run", n_boot=20)
    assert units.devices == ["cpu"]  # the units are built for the checked device


def test_cpu_threads_are_pinned_while_the_units_run_and_restored(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        units = Units(seeds=(0, 1))
        run_study(_study(units, cpu_threads=1, claims=()), tmp_path / "one", device="cpu")
        assert units.threads == [1, 1] and torch.get_num_threads() == 2
        units = Units(seeds=(0,))
        run_study(_study(units, claims=()), tmp_path / "left", device="cpu")
        assert units.threads == [2]  # cpu_threads=None leaves torch's setting
    finally:
        torch.set_num_threads(before)


# -- two processes (gloo on the CPU) ---------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _InStep(Units):
    """Units whose every call is a collective, as compare's are (distributed fine-tuning): the
    ranks must run the same units in the same order, or the sums come out wrong (or they hang)."""

    def __init__(self, seeds=(0, 1, 2)):
        super().__init__(seeds)
        self.sums: list[float] = []

    def _run(self, seed):
        import torch.distributed as tdist

        t = torch.tensor([float(seed)])
        tdist.all_reduce(t)
        self.sums.append(float(t))
        return super()._run(seed)


def _two_ranks_worker(rank, world, port, out, record):
    import datetime

    import torch.distributed as tdist

    import greedyprune.runs as runs

    torch.set_num_threads(1)
    tdist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=20),  # a rank left waiting fails the test soon
    )
    got: dict = {"rank": rank}
    try:
        if rank > 0:

            def no_writes(path, data):
                raise AssertionError(f"rank {rank} wrote {path}")

            runs.atomic_write_bytes = no_writes  # only rank 0 may write the folder

        def summary(results):
            return results.groupby("n", as_index=False)["loss_train"].mean()

        # A first session finishes seed0 only.
        first = _InStep(seeds=(0,))
        run_study(_study(first, claims=()), out, n_boot=20)
        # The second session has seeds 0-2. Rank 1 sees the folder late (a stale view of a shared
        # file system): it takes rank 0's list of finished units, so it runs what rank 0 runs.
        if rank > 0:
            runs.RunDir.done_units = lambda self, table="results": set()
        units = _InStep()
        ran: list[str] = []
        done = run_study(_study(units, summary=summary), out, n_boot=20, log=ran.append)
        got.update(
            first=first.calls,
            calls=units.calls,
            sums=units.sums,
            logged=len(ran),
            results=done.results.to_json(),
            verdicts=done.verdicts.to_json(),
            summary=done.summary.to_json(),
        )
        # Other settings in the same folder: rank 0's refusal stops every rank, with its words.
        try:
            run_study(_study(Units(), config={"kind": "other"}), out, n_boot=20)
        except ValueError as exc:
            got["refused"] = str(exc)
    finally:
        with open(f"{record}/rank{rank}.json", "w") as fh:
            json.dump(got, fh)
        tdist.destroy_process_group()


@pytest.mark.usefixtures("one_torch_thread")
def test_two_ranks_run_the_same_units_and_rank_0_alone_writes(tmp_path):
    import torch.multiprocessing as mp

    out, record = tmp_path / "run", tmp_path / "record"
    record.mkdir()
    mp.spawn(_two_ranks_worker, args=(2, _free_port(), str(out), str(record)), nprocs=2)
    r0, r1 = (json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["first"] == {"seed0": 1}
        assert r["calls"] == {"seed1": 1, "seed2": 1}  # seed0 was done: run by neither rank
        assert r["sums"] == [2.0, 4.0]  # both ranks were in the same unit at each collective
    assert r0["logged"] == 2 and r1["logged"] == 0  # log lines from rank 0 only
    for key in ("results", "verdicts", "summary"):
        assert r1[key] == r0[key], key  # every rank returns rank 0's tables
    assert "other settings" in r0["refused"] and r1["refused"] == r0["refused"]
    table = pd.read_csv(out / "results.csv")
    assert table.groupby("unit").size().to_dict() == {f"seed{s}": len(SIZES) for s in (0, 1, 2)}
    assert list(pd.read_csv(out / "verdicts.csv")["claim"]) == ["steep", "shallow"]
    assert json.loads((out / "manifest.json").read_text())["processes"] == 2
    assert json.loads((out / "config.json").read_text()) == {"kind": "test"}
