"""Recipes: every knob of a pruning run, named as a set.

``authors`` is the procedure of the authors' released MobileNetV2 code (Ye et al. 2020), knob by
knob (docs/prune.md lists each with where it comes from); ``default`` is this project's own
choice, sized for a quick run. A value given explicitly (a CLI flag, a keyword argument) overrides
the recipe's, and every run records the recipe it started from and the values it used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from greedyprune.errors import (
    GreedypruneTypeError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_range,
    refuse,
)

__all__ = ["RECIPES", "UNSET", "FinetuneSettings", "Recipe", "resolve_recipe"]


@dataclass(frozen=True)
class FinetuneSettings:
    """One SGD phase. ``decay_all``: weight decay on every parameter (else not on batch norm and
    biases); ``schedule``: "cosine" (to 0 over the phase) or "constant"."""

    epochs: float
    lr: float
    batch_size: int
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_all: bool
    label_smoothing: float
    schedule: str


@dataclass(frozen=True)
class Recipe:
    """Every knob of ``prune``. ``eval_every``: the tolerance rule's evaluation set is every k-th
    training image; ``n_eval`` (a count) replaces it when set."""

    name: str
    candidates: int | None
    candidate_order: str
    batch_size: int
    crop_scale: tuple[float, float]
    tol: float | None
    precheck: float | None
    eval_every: int | None
    n_eval: int | None
    between: FinetuneSettings
    final: FinetuneSettings

    def __post_init__(self):
        """Every knob checked where the recipe is made (a named one, or one with overrides), so a
        bad value is refused before any run folder; names are the override names (flags)."""
        if self.candidates is not None:
            check_int("candidates", self.candidates, minimum=1)
        check_choice("candidate_order", self.candidate_order, ("random", "lowest-index"))
        check_int("batch_size", self.batch_size, minimum=1)
        low, high = check_range("crop_scale", self.crop_scale, minimum=0)
        if not 0 < low or high > 1:
            raise refuse("crop_scale", self.crop_scale, "(low, high) with 0 < low < high <= 1")
        if self.tol is not None:  # the top-1 drop allowed per layer, as greedy_prune takes it
            check_number("tol", self.tol, minimum=0, below=1)
        if self.precheck is not None:
            check_number("precheck", self.precheck, above=0, maximum=1)
        for key in ("eval_every", "n_eval"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key), minimum=1)
        for prefix, phase in (("between_", self.between), ("finetune_", self.final)):
            _check_phase(prefix, phase)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_phase(prefix: str, p: FinetuneSettings) -> None:
    """One SGD phase's values, named as their overrides (``finetune_lr``, ``between_epochs``)."""
    check_number(prefix + "epochs", p.epochs, minimum=0)
    check_number(prefix + "lr", p.lr, above=0)
    check_int(prefix + "batch_size", p.batch_size, minimum=1)
    check_number(prefix + "momentum", p.momentum, minimum=0, below=1)
    check_bool(prefix + "nesterov", p.nesterov)
    check_number(prefix + "weight_decay", p.weight_decay, minimum=0)
    check_bool(prefix + "decay_all", p.decay_all)
    check_number(prefix + "label_smoothing", p.label_smoothing, minimum=0, below=1)
    check_choice(prefix + "schedule", p.schedule, ("cosine", "constant"))


# The authors' between-layer step: 0.1 epoch, batch 128, fixed lr 2.5e-3, weight decay 4e-5 on
# every parameter, plain cross-entropy, and momentum 0 (their script parses a momentum argument
# but never passes it to the optimizer).
_AUTHORS_BETWEEN = FinetuneSettings(
    epochs=0.1,
    lr=2.5e-3,
    batch_size=128,
    momentum=0.0,
    nesterov=False,
    weight_decay=4e-5,
    decay_all=True,
    label_smoothing=0.0,
    schedule="constant",
)
# Their final fine-tuning: 150 epochs, SGD Nesterov 0.9, lr 0.1 cosine, batch 256, weight decay
# 4e-5 not on batch norm and biases, label smoothing 0.1.
_AUTHORS_FINAL = FinetuneSettings(
    epochs=150,
    lr=0.1,
    batch_size=256,
    momentum=0.9,
    nesterov=True,
    weight_decay=4e-5,
    decay_all=False,
    label_smoothing=0.1,
    schedule="cosine",
)

RECIPES: dict[str, Recipe] = {
    "authors": Recipe(
        name="authors",
        candidates=50,
        # the paper's description; their code effectively scores the lowest-index open channels
        candidate_order="random",
        batch_size=128,
        crop_scale=(0.2, 1.0),
        tol=0.02,
        precheck=0.95,
        eval_every=200,
        n_eval=None,
        between=_AUTHORS_BETWEEN,
        final=_AUTHORS_FINAL,
    ),
    "default": Recipe(
        name="default",
        candidates=50,
        candidate_order="random",
        batch_size=128,
        crop_scale=(0.08, 1.0),
        tol=None,
        precheck=None,
        eval_every=None,
        n_eval=6400,
        between=replace(_AUTHORS_BETWEEN, epochs=0.0),
        # the authors' final phase, shorter and gentler by default
        final=replace(_AUTHORS_FINAL, epochs=0.0, lr=0.01, batch_size=64),
    ),
}

# Flat override names -> (phase or None, field)
_OVERRIDES = {
    "candidates": (None, "candidates"),
    "candidate_order": (None, "candidate_order"),
    "batch_size": (None, "batch_size"),
    "crop_scale": (None, "crop_scale"),
    "tol": (None, "tol"),
    "precheck": (None, "precheck"),
    "eval_every": (None, "eval_every"),
    "n_eval": (None, "n_eval"),
    "between_epochs": ("between", "epochs"),
    "between_lr": ("between", "lr"),
    "finetune_epochs": ("final", "epochs"),
    "finetune_lr": ("final", "lr"),
    "finetune_batch_size": ("final", "batch_size"),
}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def resolve_recipe(name: str, **overrides) -> Recipe:
    """The recipe ``name`` with the given values replacing its own (``None`` is a value: no
    tolerance, every candidate); the sentinel :data:`UNSET` leaves the recipe's.

    ``n_eval`` given explicitly replaces the recipe's ``eval_every`` (and the reverse).
    """
    check_choice("recipe", name, RECIPES)
    recipe = RECIPES[name]
    top, phases = {}, {"between": {}, "final": {}}
    for key, value in overrides.items():
        if key not in _OVERRIDES:
            raise GreedypruneTypeError(
                f"{key!r} is not a recipe setting; settings: {', '.join(_OVERRIDES)}"
            )
        if value is UNSET:
            continue
        phase, field = _OVERRIDES[key]
        (phases[phase] if phase else top)[field] = value
    if "n_eval" in top and "eval_every" not in top:
        top["eval_every"] = None
    elif "eval_every" in top and "n_eval" not in top:
        top["n_eval"] = None
    for phase, values in phases.items():
        if values:
            top[phase] = replace(getattr(recipe, phase), **values)
    return replace(recipe, **top)
