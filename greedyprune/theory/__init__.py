"""The paper's claims as data, rate fits with confidence intervals, bound constants, verdicts.

``theory`` reads result tables and tensors; it never trains. The pieces other front ends use:

- :class:`Claim` and :func:`check` (results table + claims -> verdict table); every front end's
  claims as data: :func:`two_layer_claims`, :func:`deep_claims`,
- :func:`fit_rate` (log-log or exponential slope over a stated n range, bootstrap CI over seeds),
- :func:`slope_difference_interval` (paired comparison of two curves' slopes),
- :func:`register_condition` (add a condition a claim can require).
"""

from ._bounds import b_n, bound_constants, fast_rate_envelope, hull_membership, margin_estimate
from ._check import (
    CONDITIONS,
    VERDICTS,
    ClaimCase,
    check,
    format_verdicts,
    register_condition,
    register_form,
)
from ._claims import FORMS, Claim, deep_claims, halves, level_claims, two_layer_claims
from ._fit import RateFit, fit_rate, slope_difference_interval

__all__ = [
    "CONDITIONS",
    "FORMS",
    "VERDICTS",
    "Claim",
    "ClaimCase",
    "RateFit",
    "b_n",
    "bound_constants",
    "check",
    "deep_claims",
    "fast_rate_envelope",
    "fit_rate",
    "format_verdicts",
    "halves",
    "hull_membership",
    "level_claims",
    "margin_estimate",
    "register_condition",
    "register_form",
    "slope_difference_interval",
    "two_layer_claims",
]
