"""The ``greedyprune`` command. Thin: parse, call one library function, print, map errors.

Each front end registers its own arguments through a small module with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; bad input (the library's one error type,
``GreedypruneError``) becomes one line on stderr and exit code 2, with the library's Python
argument names (``n_eval=0``) written as the subcommand's flags (``--n-eval=0``). Any other
exception is a bug: its traceback is shown and the exit code is 1.
A front end may define ``FLAG_NAMES`` (library name -> flag) where the two differ.

The flags every subcommand shares have one grammar, defined here: ``--out DIR``, ``--seeds
0,1,2`` (a comma list), ``--device cpu|cuda|cuda:N`` and ``--progress/--no-progress``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from greedyprune.errors import SEED_MAX, GreedypruneError

DESCRIPTION = (
    "Greedy forward selection of subnetworks (Ye et al., ICML 2020): check the paper's claims "
    "on mean-field networks (verify) and prune torchvision CNNs (prune, compare). "
    "Run 'greedyprune COMMAND --help' for a command's flags."
)

# command path -> (module with add_arguments/run, help)
_COMMANDS = {
    ("verify", "two-layer"): (
        "greedyprune.sims.two_layer.cli",
        "two-layer mean-field networks: rate curves and verdicts",
    ),
    ("verify", "deep"): (
        "greedyprune.sims.deep.cli",
        "deep mean-field networks and real data: layer-wise greedy",
    ),
    ("verify", "two-layer-knee"): (
        "greedyprune.sims.two_layer.sweep",
        "two-layer: Proposition B's crossover n* against greedy's measured knee (settings sweep)",
    ),
    ("verify", "two-layer-budget"): (
        "greedyprune.sims.two_layer.budget",
        "two-layer: the pretraining steps greedy needs at a fixed n, against the data size m",
    ),
    ("prune",): (
        "greedyprune.prune.cli.prune",
        "prune a torchvision CNN by greedy channel selection",
    ),
    ("compare",): (
        "greedyprune.prune.cli.compare",
        "greedy vs other pruning criteria at equal MACs",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"greedyprune: error: {message} (see --help)\n")
        sys.exit(2)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after a flag's help, except where there is nothing useful to show:
    no default (``None``), an off switch, a suppressed default, or a help that states it already."""

    def _get_help_string(self, action):
        help_ = action.help or ""
        if (
            "%(default)" in help_
            or "default" in help_
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return help_
        return help_ + " (default: %(default)s)"


def _version() -> str:
    from greedyprune._version import __version__

    return __version__


# -- the shared grammar --------------------------------------------------------------------------


def seeds_type(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2``: integers >= 0, each once (a repeated seed would run twice)."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r} must be comma-separated integers, e.g. 0,1,2"
        ) from None
    if not values or any(not 0 <= s <= SEED_MAX for s in values):
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r} must list integers in 0..2^63-1 (a generator's seed), e.g. 0,1,2"
        )
    return tuple(dict.fromkeys(values))


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def device_type(text: str) -> str:
    """``--device cpu|cuda|cuda:N``."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"--device {text!r} is not a device; pass cpu, cuda or cuda:N (e.g. cuda:1)"
        )
    return text


def add_out(parser: argparse.ArgumentParser, default: str, **kwargs) -> None:
    """``--out DIR``: the run folder; ``default`` says in words what it is when not given."""
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"run folder; an interrupted run resumes in it (default: {default})",
        **kwargs,
    )


def add_seeds(parser: argparse.ArgumentParser, help_: str, default=None) -> None:
    """``--seeds 0,1,2``: a comma list of seeds (integers >= 0)."""
    parser.add_argument("--seeds", type=seeds_type, default=default, metavar="S,...", help=help_)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda|cuda:N``, default cpu."""
    parser.add_argument(
        "--device",
        type=device_type,
        default="cpu",
        metavar="cpu|cuda|cuda:N",
        help="where tensors live",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress``, default: on when stderr is a terminal."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: on when stderr is a terminal)",
    )


def add_settings(
    parser: argparse.ArgumentParser, cls, example: str, scopes: str, table: str, **never
) -> None:
    """``--set [SETTING.]KEY=VALUE`` (repeatable) and ``--config FILE.toml``: override fields of
    the preset's settings (``cls``, a setting dataclass); see :mod:`greedyprune.overrides`.
    example: one ``KEY=VALUE``; scopes: the preset's settings in words; table: one's name.
    never: keys this command does not let override, each with why (e.g. ``data="use --data"``)."""
    from greedyprune.overrides import describe_fields

    parser.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="[SETTING.]KEY=VALUE",
        help=f"override one field of the preset's settings, e.g. --set {example}; repeatable, "
        f"applied left to right after --config. Without a prefix it applies to every setting "
        f"of the preset ({scopes}); a prefix selects one. Booleans are true/false, lists are "
        f"comma lists, 'none' clears an optional value. Keys: "
        + describe_fields(cls, never).replace("%", "%%"),
    )
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        default=None,
        help="TOML file of overrides applied before --set: a flat table of keys (m = 40, "
        "activation = 'sigmoid', lists as [2, 4]); a table named after a setting "
        f"([{table}]) applies to that setting only",
    )


def resolve_progress(progress: bool | None) -> bool:
    """``--progress``'s value: None (neither flag given) is on when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


# -- errors --------------------------------------------------------------------------------------


def _flag_names(parser: argparse.ArgumentParser, extra: dict[str, str] | None) -> dict[str, str]:
    """Python name -> flag spelling, from the parser's own options (visible spellings first)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest in (argparse.SUPPRESS, "help"):
            continue
        if action.help == argparse.SUPPRESS and action.dest in names:
            continue  # a hidden alias: the visible flag names the value
        names[action.dest] = longs[0]
    names.update(extra or {})
    return names


def flag_message(message: str, flags: dict[str, str]) -> str:
    """``message`` on one line, with the library's argument names written as flags through the
    table ``flags`` (Python name -> flag), word by word: the first word's name (``n_eval`` or
    ``n_eval=0``), any word ``name=...``, and any snake_case word that is a flag's Python name.
    A name inside a longer word (a path, a quoted value) is left alone."""
    words = " ".join(str(message).split()).split(" ")
    return " ".join(_flag_word(w, flags, first=i == 0) for i, w in enumerate(words))


def _flag_word(word: str, flags: dict[str, str], *, first: bool) -> str:
    core = word.lstrip("([")
    lead = word[: len(word) - len(core)]
    name, sep, rest = core.partition("=")
    tail = ""
    if not sep:
        bare = name.rstrip(",;:.)]")
        name, tail = bare, name[len(bare) :]
    base, bracket, index = name.partition("[")  # an item of a sequence: crop_scale[0]=nan
    if base in flags and (first or sep or "_" in base):
        return f"{lead}{flags[base]}{bracket}{index}{sep}{rest}{tail}"
    return word


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="greedyprune", description=DESCRIPTION)
    parser.add_argument(
        "--version",
        action="version",
        version=f"greedyprune {_version()}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module, help_) in _COMMANDS.items():
        if len(path) == 1:
            p = sub.add_parser(
                path[0], help=help_, description=help_, formatter_class=_HelpFormatter
            )
        else:
            if path[0] not in groups:
                g = sub.add_parser(path[0], help=f"{path[0]} subcommands")
                groups[path[0]] = g.add_subparsers(
                    dest="subcommand", required=True, parser_class=_Parser
                )
            p = groups[path[0]].add_parser(
                path[1], help=help_, description=help_, formatter_class=_HelpFormatter
            )
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not (module + ".").startswith(exc.name + "."):
                raise  # a missing dependency inside the module is a real error
            p.set_defaults(_missing=module)
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _flags=_flag_names(p, getattr(mod, "FLAG_NAMES", None)))
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
    except GreedypruneError as exc:  # bad input; anything else is a bug and keeps its traceback
        from greedyprune.overrides import SettingError

        text = str(exc)
        if not isinstance(exc, SettingError):  # that one names its --set/--config already
            text = flag_message(text, getattr(args, "_flags", {}))
        _say(f"greedyprune: error: {text}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(
            "greedyprune: interrupted; finished results are saved, run again to resume\n"
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
