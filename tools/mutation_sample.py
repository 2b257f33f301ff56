"""Mutation score of greedyprune/select and greedyprune/theory, estimated from a random sample.

A full ``mutmut run`` over both packages (about 4,700 mutants) takes hours on two cores. A uniform
random sample of K mutants (fixed seed) gives the score with a binomial interval at a fraction of
the cost. Run from the repository root with the project's virtual environment:

    python tools/mutation_sample.py --sample 600 --seed 0     # `make mutate-sample`

It generates the mutants if needed (``[tool.mutmut]`` in pyproject.toml says which files and which
tests), runs the sampled ones, and prints the killed fraction with a 95% Wilson interval, the
count per file and every survivor's name (``mutmut show NAME`` prints its diff). Results are
written to ``mutants/sample-<seed>-<K>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def _results() -> dict[str, str]:
    """Every mutant's name -> status ("killed", "survived", "not checked", ...)."""
    out = subprocess.run(
        [MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    status = {}
    for line in out.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep:
            status[name] = state
    return status


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (mid - half, mid + half)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sample", type=int, default=600, help="mutants to run (default: 600)")
    p.add_argument("--seed", type=int, default=0, help="the sample's seed (default: 0)")
    p.add_argument("--jobs", type=int, default=2, help="mutmut's --max-children (default: 2)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep mutants/ and its results (mutmut keeps a result while the mutated function is "
        "unchanged, even when the tests changed: without --reuse mutants/ is deleted first)",
    )
    args = p.parse_args()
    if args.sample < 1:
        p.error("--sample must be >= 1")
    if not args.reuse:
        shutil.rmtree("mutants", ignore_errors=True)
    if not Path("mutants").is_dir():  # generate only: a pattern no mutant matches
        subprocess.run([MUTMUT, "run", "no-such-mutant*"], check=False)
    names = sorted(_results())
    if not names:
        sys.exit("no mutants found: check [tool.mutmut] in pyproject.toml")
    sample = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))
    subprocess.run([MUTMUT, "run", "--max-children", str(args.jobs), *sample], check=False)
    status = _results()
    states = Counter(status.get(n, "missing") for n in sample)
    killed = states["killed"] + states["timeout"]
    checked = sum(v for k, v in states.items() if k not in ("not checked", "missing"))
    lo, hi = wilson(killed, checked)
    per_file: dict[str, Counter] = {}
    for n in sample:
        per_file.setdefault(n.split(".x")[0], Counter())[status.get(n, "missing")] += 1
    survivors = [n for n in sample if status.get(n) not in ("killed", "timeout")]
    report = {
        "mutants": len(names),
        "sample": len(sample),
        "seed": args.seed,
        "states": dict(states),
        "score": killed / checked if checked else math.nan,
        "score_95ci": [lo, hi],
        "per_file": {f: dict(c) for f, c in sorted(per_file.items())},
        "survivors": survivors,
    }
    Path("mutants", f"sample-{args.seed}-{len(sample)}.json").write_text(
        json.dumps(report, indent=1)
    )
    print(json.dumps({k: v for k, v in report.items() if k != "survivors"}, indent=1))
    print(
        f"killed {killed} of {checked} sampled mutants: {killed / max(1, checked):.1%} "
        f"(95% interval {lo:.1%} .. {hi:.1%}); survivors:"
    )
    print("\n".join(survivors))


if __name__ == "__main__":
    main()
