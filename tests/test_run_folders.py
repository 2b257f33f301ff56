"""Run folders: config guard, atomic appends keyed by unit, resume without loss or duplicates."""

import errno
import json
import logging
import os
import re
import socket
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

import greedyprune
from greedyprune import runs
from greedyprune.runs import (
    RunDir,
    atomic_write_text,
    load_checkpoint_file,
    software_versions,
    unique,
)


def test_config_written_and_guarded(tmp_path):
    run = RunDir(tmp_path / "r", {"preset": "quick", "seeds": 2})
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {
        "preset": "quick",
        "seeds": 2,
    }
    RunDir(tmp_path / "r", {"preset": "quick", "seeds": 2})  # same settings: resume is allowed
    assert run.read().empty
    run.append("u", [{"n": 1}])  # a result: other settings would now mix with it
    with pytest.raises(ValueError, match=r"seeds\) and what it wrote \(results.csv\)"):
        RunDir(tmp_path / "r", {"preset": "quick", "seeds": 3})


def test_a_run_that_wrote_no_result_does_not_block_other_settings(tmp_path, caplog):
    """A crash before the first result leaves config.json (and versions.json, manifest.json):
    a rerun with other settings takes the folder over and says so; one result makes it refuse."""
    RunDir(tmp_path / "r", {"seeds": 2}).write_json("manifest.json", {})
    with caplog.at_level("WARNING", logger="greedyprune.runs"):
        run = RunDir(tmp_path / "r", {"seeds": 3})
    assert "stopped before writing any result" in caplog.text and "seeds" in caplog.text
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {"seeds": 3}
    run.append("u", [{"n": 1}])
    with pytest.raises(ValueError, match="other settings"):
        RunDir(tmp_path / "r", {"seeds": 2})
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {"seeds": 3}


def test_out_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        RunDir(f, {})


def test_append_by_unit_replaces_and_never_duplicates(tmp_path):
    run = RunDir(tmp_path, {})
    run.append("a", [{"n": 1, "loss": 0.5}, {"n": 2, "loss": 0.25}])
    run.append("b", [{"n": 1, "loss": 0.4}])
    assert run.done_units() == {"a", "b"}
    # Re-running a unit (for example after a crash between its work and the next unit) replaces it.
    run.append("a", [{"n": 1, "loss": 0.5}, {"n": 2, "loss": 0.25}])
    df = run.read()
    assert len(df) == 3
    assert sorted(df["unit"]) == ["a", "a", "b"]
    # A fresh RunDir on the same folder sees the same finished units (resume).
    assert RunDir(tmp_path, {}).done_units() == {"a", "b"}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    p = tmp_path / "x.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_write_table_roundtrip(tmp_path):
    run = RunDir(tmp_path, {})
    df = pd.DataFrame({"claim": ["a"], "measured_slope": [-1.9]})
    run.write_table(df, "verdicts")
    assert run.read("verdicts").equals(df)


def test_finished_rows_are_kept_byte_for_byte(tmp_path):
    """Resume keeps what is done: later units (and a fresh RunDir on the folder) never rewrite the
    text of a finished unit's rows, floats included."""
    rows = [{"x": 0.1 + 0.2, "y": 1 / 3, "z": 2.5e-17, "name": "a,b", "n": 3}]
    run = RunDir(tmp_path, {"seeds": 2})
    run.append("u0", rows)
    first = run.table_path().read_text().splitlines()
    run.append("u1", [{"x": 1e300, "y": -0.0, "z": float("nan"), "name": "c", "n": 4}])
    resumed = RunDir(tmp_path, {"seeds": 2})
    assert resumed.done_units() == {"u0", "u1"}
    resumed.append("u2", [{"x": 7.0, "y": 0.7, "z": 0.07, "name": "d", "n": 5}])
    assert resumed.table_path().read_text().splitlines()[:2] == first
    assert resumed.read().loc[0, "x"] == 0.1 + 0.2


def test_a_later_unit_with_other_columns_leaves_finished_rows_as_written(tmp_path):
    run = RunDir(tmp_path / "r", {"a": 1})
    run.append("u0", [{"n": 3, "x": 0.5}])
    first = (tmp_path / "r" / "results.csv").read_text().splitlines()[1]
    run.append("u1", [{"x": 0.25}])
    # the int 3 must not come back as 3.0 because u1 left its column empty
    assert (tmp_path / "r" / "results.csv").read_text().splitlines()[1] == first
    assert run.done_units() == {"u0", "u1"}


# --- 1, 8: an --out that cannot be written is one line, and leaves nothing half made ---------


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert len(msg.splitlines()) == 1, msg
    return msg


@pytest.mark.parametrize("where", ["below_a_file", "sys"])
def test_an_unwritable_out_is_one_line_naming_out(tmp_path, where):
    if where == "sys":
        out = Path("/sys/greedyprune-test/run")
        if not Path("/sys").is_dir():
            pytest.skip("needs a /sys (a file system nobody can make folders in)")
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "sub"
    with pytest.raises(ValueError) as exc:
        RunDir(out, {"a": 1})
    msg = _one_line(exc)
    assert f"out={str(out)!r}" in msg and "cannot be written" in msg and "--out" in msg
    assert not out.exists()


def _failing_writes(monkeypatch, fail_on):
    """atomic_write_text raising ENOSPC when it writes a file named ``fail_on``."""
    real = runs.atomic_write_text

    def write(path, text):
        if Path(path).name == fail_on:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(runs, "atomic_write_text", write)


@pytest.mark.parametrize("fail_on", ["config.json", "versions.json"])
def test_a_failed_construction_removes_what_it_made(tmp_path, monkeypatch, fail_on):
    _failing_writes(monkeypatch, fail_on)
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError) as exc:
        RunDir(out, {"a": 1})
    assert "No space left on device" in _one_line(exc)
    assert list(tmp_path.iterdir()) == []  # every folder it made is gone
    # A folder that was there before stays, without a config.json to be resumed from.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="cannot be written"):
        RunDir(tmp_path / "mine", {"a": 1})
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    RunDir(out, {"a": 2})  # the same folder, other settings: nothing of the failed run is left
    assert json.loads((out / "config.json").read_text()) == {"a": 2}


def test_a_damaged_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"a": ')
    with pytest.raises(ValueError) as exc:
        RunDir(tmp_path, {"a": 1})
    assert "config.json" in _one_line(exc) and "damaged" in str(exc.value)


# --- 2: tables without a config.json are refused, not adopted -----------------------------------


@pytest.mark.parametrize("name", ["results.csv", "layers.csv", "base.safetensors", "finetune.pt"])
def test_run_files_without_a_config_are_refused(tmp_path, name):
    (tmp_path / name).write_text("unit,x\nu0,1\n")
    with pytest.raises(ValueError) as exc:
        RunDir(tmp_path, {"a": 1})
    msg = _one_line(exc)
    assert f"holds {name} but no config.json" in msg
    assert "pass a new --out or delete the folder" in msg
    assert not (tmp_path / "config.json").exists()
    with pytest.raises(ValueError, match=r"no config\.json"):
        RunDir(tmp_path, {"a": 1}, writer=False)


def test_other_files_without_a_config_are_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".hidden.csv.123.tmp").write_text("x")
    RunDir(tmp_path, {"a": 1})
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 1}


# --- 3: a partial last row is left out and its unit run again -----------------------------------


def _run_with(path, units):
    run = RunDir(path, {"a": 1})
    for unit, rows in units:
        run.append(unit, rows)
    return run


U0 = ("u0", [{"n": 1, "loss": 0.5}, {"n": 2, "loss": 0.25}])
U1 = ("u1", [{"n": 1, "loss": 0.4}, {"n": 2, "loss": 0.125}])
U2 = ("u2", [{"n": 1, "loss": 0.3}, {"n": 2, "loss": 0.0625}])


@pytest.mark.parametrize(
    "tail",
    [
        "1,0.3,u2\n2,0.06",  # a second row cut short before its unit
        "1,0.3,u2\n2,0.0625,u",  # cut inside the unit's name ('u' would count as done)
        "1,0.3,u2\n2,0.0625\n",  # a line with too few fields
        "1,0.3,u2\n2,0.0625,u2,7,8\n",  # or too many
    ],
)
def test_a_partial_last_row_is_left_out_and_its_unit_rerun(tmp_path, caplog, tail):
    clean = _run_with(tmp_path / "clean", [U0, U1, U2]).table_path().read_text()
    run = _run_with(tmp_path / "r", [U0, U1])
    before = run.table_path().read_text()
    # Another tool appending u2 row by row crashed mid-write.
    run.table_path().write_text(before + tail)
    with caplog.at_level(logging.WARNING, logger="greedyprune.runs"):
        resumed = RunDir(tmp_path / "r", {"a": 1})
        assert resumed.done_units() == {"u0", "u1"}
        df = resumed.read()
    assert list(df["unit"]) == ["u0", "u0", "u1", "u1"]
    assert df["n"].dtype.kind == "i"  # the partial row does not turn the ints into floats
    assert "partial row" in caplog.text and "results.csv" in caplog.text
    resumed.append(*U2)  # the unit run again: the table is as a clean run writes it
    assert resumed.table_path().read_text() == clean
    assert resumed.table_path().read_text().startswith(before)


def test_a_partial_row_whose_unit_can_be_read_leaves_the_others(tmp_path):
    run = _run_with(tmp_path, [U0, ("u1", [{"n": 1, "loss": 0.4, "note": "x"}])])
    text = run.table_path().read_text()
    assert text.splitlines()[0] == "n,loss,unit,note"
    run.table_path().write_text(text + "2,0.1,u2,partia")
    assert run.done_units() == {"u0", "u1"}
    # Cut inside a quoted field that holds a line break: the text ends in a line break, yet the
    # row is not whole (an open quote).
    run.table_path().write_text(text + '2,0.1,u2,"two\n')
    assert run.done_units() == {"u0", "u1"}
    assert list(run.read()["unit"]) == ["u0", "u0", "u1"]
    run.append("u2", [{"n": 2, "loss": 0.1, "note": "two\nlines"}])
    assert run.read().loc[3, "note"] == "two\nlines"
    assert run.table_path().read_text().startswith(text)


def test_a_partial_header_is_an_empty_table(tmp_path):
    run = RunDir(tmp_path, {})
    run.table_path().write_text("n,lo")
    assert run.read().empty and run.done_units() == set()
    run.append("u0", [{"n": 1, "loss": 0.5}])
    assert run.table_path().read_text() == "n,loss,unit\n1,0.5,u0\n"


def test_whole_tables_are_read_as_before(tmp_path):
    """Blank trailing lines, CRLF line ends and quoted line breaks are no partial rows."""
    run = RunDir(tmp_path, {})
    run.table_path().write_text('n,note,unit\r\n1,"a\nb",u0\r\n2,c,u1\r\n\n', newline="")
    assert run.done_units() == {"u0", "u1"}
    assert list(run.read()["note"]) == ["a\nb", "c"]


# --- 4: a damaged checkpoint is one line naming the file and the fix ----------------------------


def test_load_checkpoint_file_reports_a_damaged_file(tmp_path):
    good = tmp_path / "finetune.pt"
    torch.save({"model": {"w": torch.ones(3)}, "epoch": 2}, good)
    state = load_checkpoint_file(good, keys=["model", "epoch"])
    assert state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.ones(3))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint\nbut text\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for bad in (cut, junk, empty):
        with pytest.raises(ValueError) as exc:
            load_checkpoint_file(bad)
        msg = _one_line(exc)
        assert msg.startswith(f"{str(bad)!r} is damaged (")
        assert msg.endswith("; delete it and run again to restart that step")
    with pytest.raises(ValueError, match=r"damaged \(lacks optimizer\)"):
        load_checkpoint_file(good, keys=["model", "optimizer"])
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(tmp_path / "none.pt")


def test_load_checkpoint_file_unpickles_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    p = tmp_path / "evil.pt"
    torch.save(Evil(), p)
    with pytest.raises(ValueError, match="is damaged"):
        load_checkpoint_file(p)


# --- 5: the software of each session is recorded ------------------------------------------------


def test_versions_are_recorded_per_session(tmp_path, monkeypatch):
    import torchvision

    run = RunDir(tmp_path, {"a": 1})
    sessions = run.versions()
    assert sessions == json.loads((tmp_path / "versions.json").read_text())["sessions"]
    assert len(sessions) == 1
    v = sessions[0]
    assert set(v) == {"torch", "torchvision", "greedyprune", "git_commit"}
    assert v["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert v["torchvision"].split("+")[0] == torchvision.__version__.split("+")[0]
    assert v["greedyprune"] == greedyprune.__version__
    config = (tmp_path / "config.json").read_bytes()
    recorded = (tmp_path / "versions.json").read_bytes()
    RunDir(tmp_path, {"a": 1})  # a resume under the same software changes no file
    assert (tmp_path / "versions.json").read_bytes() == recorded
    # A newer torch on resume: allowed, and recorded as a second session; config.json unchanged.
    monkeypatch.setattr(runs, "software_versions", lambda: {**v, "torch": "99.0"})
    RunDir(tmp_path, {"a": 1})
    assert [s["torch"] for s in RunDir(tmp_path, {"a": 1}).versions()] == [v["torch"], "99.0"]
    assert (tmp_path / "config.json").read_bytes() == config
    # A reader (the other ranks of a distributed run) records nothing.
    monkeypatch.setattr(runs, "software_versions", lambda: {**v, "torch": "100.0"})
    reader = RunDir(tmp_path, {"a": 1}, writer=False)
    assert [s["torch"] for s in reader.versions()] == [v["torch"], "99.0"]


def test_git_commit_of_the_checkout(monkeypatch):
    root = Path(runs.__file__).resolve().parent.parent
    software_versions.cache_clear()  # the checkout's HEAD may have moved since it was cached
    commit = software_versions()["git_commit"]
    if (root / ".git").exists():
        expected = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert commit == expected and re.fullmatch(r"[0-9a-f]{40}", commit)
    else:
        assert commit is None

    def hangs(*args, **kwargs):
        assert kwargs.get("timeout") is not None
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(runs.Path, "exists", lambda self: True)
    for fake in (hangs, missing):
        monkeypatch.setattr(runs.subprocess, "run", fake)
        assert runs._git_commit() is None


# --- 6: duplicates run once ---------------------------------------------------------------------


def test_unique_keeps_the_first_of_each_in_order():
    assert unique([3, 1, 3, 2, 1]) == [3, 1, 2]
    assert unique(iter(["greedy", "l1", "greedy"])) == ["greedy", "l1"]
    assert unique([]) == []


# --- 7: atomically written files get the permissions a plain open() gives ----------------------


@pytest.mark.skipif(not hasattr(os, "umask") or os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
        RunDir(tmp_path / "run", {}).append("u0", [{"x": 1}])
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~mask
    for name in ("atomic.txt", "run/config.json", "run/versions.json", "run/results.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    # Like open(), rewriting a file keeps its permissions.
    os.chmod(tmp_path / "atomic.txt", 0o640)
    atomic_write_text(tmp_path / "atomic.txt", "y")
    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == 0o640


def test_a_foreign_or_damaged_table_is_refused_naming_the_file(tmp_path):
    """Garbage in results.csv is not adopted as finished work: the file (and line) is named."""
    run = RunDir(tmp_path / "r", {"a": 1})
    path = tmp_path / "r" / "results.csv"
    path.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"results\.csv' has no 'unit' column"):
        run.done_units()
    path.write_text("n,unit\n1,a\n2,\n3,c\n")
    with pytest.raises(ValueError, match=r"results\.csv' line 3 has no unit"):
        run.done_units()
    path.write_text("n,unit\n1,a\n2,b,x,y\n3,c\n")
    with pytest.raises(ValueError, match=r"results\.csv' is damaged \(.*line 3"):
        run.done_units()
    path.write_text("n,unit\n1,a\n")
    assert run.done_units() == {"a"}


def test_a_damaged_json_file_is_named(tmp_path):
    run = RunDir(tmp_path / "r", {"a": 1})
    run.write_json("summary.json", {"x": 1})
    assert run.read_json("summary.json") == {"x": 1}
    (tmp_path / "r" / "summary.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"summary\.json' is damaged .*; delete it"):
        run.read_json("summary.json")


# -- one writer per folder -------------------------------------------------------------------


def _hold_in_child(folder, ready, stop):
    from greedyprune.runs import RunDir

    run = RunDir(folder, {"a": 1})
    ready.set()
    stop.wait(30)
    run.release()


def test_a_second_process_is_refused_naming_the_owner(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_in_child, args=(tmp_path / "r", ready, stop))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ValueError, match=rf"in use by another job \(pid {child.pid} on "):
            RunDir(tmp_path / "r", {"a": 1})
    finally:
        stop.set()
        child.join(30)
    run = RunDir(tmp_path / "r", {"a": 1})  # released: free again
    run.release()


def test_the_lock_is_reentrant_and_released_by_the_last_holder(tmp_path):
    import greedyprune.runs as runs

    a = RunDir(tmp_path / "r", {"a": 1})
    b = RunDir(tmp_path / "r", {"a": 1})  # the same process: allowed
    lock = tmp_path / "r" / runs.LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    a.release()
    assert lock.read_text() != ""  # b still holds it
    b.release()
    assert lock.read_text() == "" and not runs._HELD


def test_a_dead_owner_is_taken_over_and_another_host_refused(tmp_path, caplog):
    import greedyprune.runs as runs

    RunDir(tmp_path / "r", {"a": 1}).release()
    lock = tmp_path / "r" / runs.LOCK_NAME
    host = socket.gethostname()
    lock.write_text(json.dumps({"pid": 2**22 + 17, "host": host, "since": "then"}))  # a crash
    with caplog.at_level("WARNING", logger="greedyprune.runs"):
        run = RunDir(tmp_path / "r", {"a": 1})
    assert f"held by pid {2**22 + 17}, which has ended" in caplog.text
    run.release()
    lock.write_text(json.dumps({"pid": 5, "host": host + "-elsewhere", "since": "then"}))
    with pytest.raises(ValueError, match=r"on host .*-elsewhere.* clear it with `rm "):
        RunDir(tmp_path / "r", {"a": 1})
    assert not runs._HELD


def _race_writer(folder, first, count, start):
    """A job: opens the folder (waiting while the other holds it), appends its units, ends."""
    from greedyprune.runs import RunDir

    start.wait(60)
    while True:
        try:
            run = RunDir(folder, {"a": 1})
            break
        except ValueError:
            continue  # the other job holds it: try again
    for i in range(first, first + count):
        run.append(f"u{i}", [{"i": i}])
    run.release()


def test_two_racing_writers_lose_no_row(tmp_path):
    import multiprocessing as mp

    RunDir(tmp_path / "r", {"a": 1}).release()
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_race_writer, args=(tmp_path / "r", k * 40, 40, start)) for k in (0, 1)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert RunDir(tmp_path / "r", {"a": 1}).done_units() == {f"u{i}" for i in range(80)}
