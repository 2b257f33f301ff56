"""The ``greedyprune`` command. Thin: parse, call one library function, print, map errors.

Each front end registers its own arguments through a small module with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; bad input (``ValueError``/``TypeError``/
``FileNotFoundError`` raised by the library) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command path -> (module with add_arguments/run, help)
_COMMANDS = {
    ("verify", "two-layer"): (
        "greedyprune.sims._cli_two_layer",
        "two-layer mean-field networks: rate curves and verdicts",
    ),
    ("verify", "deep"): (
        "greedyprune.sims._cli_deep",
        "deep mean-field networks and real data: layer-wise greedy",
    ),
    ("prune",): (
        "greedyprune.prune._cli_prune",
        "prune a torchvision CNN by greedy channel selection",
    ),
    ("compare",): (
        "greedyprune.prune._cli_compare",
        "greedy vs other pruning criteria at equal MACs",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"greedyprune: error: {message} (see --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="greedyprune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module, help_) in _COMMANDS.items():
        if len(path) == 1:
            p = sub.add_parser(path[0], help=help_)
        else:
            if path[0] not in groups:
                g = sub.add_parser(path[0], help=f"{path[0]} subcommands")
                groups[path[0]] = g.add_subparsers(
                    dest="subcommand", required=True, parser_class=_Parser
                )
            p = groups[path[0]].add_parser(path[1], help=help_)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not (module + ".").startswith(exc.name + "."):
                raise  # a missing dependency inside the module is a real error
            p.set_defaults(_missing=module)
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _say(text: str) -> None:
    """Write to stderr once: on rank 0 of a distributed run (every rank meets the same error)."""
    from greedyprune.dist import is_main

    if is_main():
        sys.stderr.write(text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", None):
        sys.stderr.write(
            f"greedyprune: error: this command is not available in this build ({args._missing})\n"
        )
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        _say(f"greedyprune: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(
            "greedyprune: interrupted; finished results are saved, run again to resume\n"
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
