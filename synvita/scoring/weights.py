"""Per-clip weights w from the ensemble scores f̄(V^s,t^s) ("target") and f̄(V^s,t^r) ("real").

A weighting says how far a synthetic clip can be trusted to show its own caption rather than the
real one. Each entry works elementwise on floats, numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from synvita.registry import Registry

WEIGHTINGS: Registry = Registry("weighting")
DEFAULT_WEIGHTING = "margin"


def _clip0(x):
    # Works for floats, numpy arrays and tensors without importing torch here.
    return x * (x > 0)


@WEIGHTINGS.register("fixed")
def fixed(f_target, f_real):
    return f_target * 0 + 1.0


@WEIGHTINGS.register("target")
def target(f_target, f_real):
    return f_target * 1.0


@WEIGHTINGS.register("target_times_not_real")
def target_times_not_real(f_target, f_real):
    return f_target * (1.0 - f_real)


@WEIGHTINGS.register("indicator")
def indicator(f_target, f_real):
    return (f_target > f_real) * 1.0


@WEIGHTINGS.register("margin")
def margin(f_target, f_real):
    return _clip0(f_target - f_real)
