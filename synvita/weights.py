"""Per-clip weights w from the ensemble scores f̄(V^s,t^s) ("target") and f̄(V^s,t^r) ("real").

A weighting says how far a synthetic clip can be trusted to show its own caption rather than the
real one. Each entry works elementwise on floats, numpy arrays and torch tensors alike.

`clip_weight` is the one place w of a scored clip (a `WeightRow` of weights.jsonl) is computed.
The weighting is chosen at training time, from the scores: an ablation over weightings never
rescores. Scoring records every weighting's w beside the scores, computed by the same function,
for readers of weights.jsonl (the report).
"""

from __future__ import annotations

import dataclasses

from synvita.data.records import WeightRow
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


def clip_weight(row: WeightRow, weighting: str) -> float | None:
    """w of a scored clip under `weighting`; None for a clip without a real caption (f_real null),
    which training treats as unscored."""
    if row.f_real is None:
        return None
    return float(WEIGHTINGS.get(weighting)(row.f_target, row.f_real))


def with_weights(row: WeightRow) -> WeightRow:
    """`row` with its `weights` field filled: w under every weighting (none without a real caption)."""
    weights = {name: clip_weight(row, name) for name in WEIGHTINGS.names()} if row.f_real is not None else {}
    return dataclasses.replace(row, weights=weights)
