"""Benchmark metrics, computed exactly as VideoCon's published scripts do, plus tie-aware twins.

Published protocol (VideoCon repository, `src/calc_ssv2.py`, `src/eval_atphard.py`):
- Retrieval: a query's candidates are ordered by video path, then ranked with
  `np.argsort(-scores)` (numpy's default, unstable sort on float64). AP is the mean of the
  precision at each relevant hit (uninterpolated); R@k is 1 when a relevant video is in the top k.
  Tied scores are therefore ordered by whatever numpy's sort does on that machine and numpy build
  (SIMD sorts on AVX2/AVX-512 CPUs do not keep the input order): the same call is made here, so
  the number equals the published script's on the same machine, but can move between machines.
  A query with no relevant video makes the published script divide by zero; here it is left out
  of mAP and R@k and counted.
- QA (ATP-Hard): the prediction is `np.argmax` over the question's options in file order, i.e.
  the first of tied maxima, compared with `answer` as a position.
- Entailment: `sklearn.metrics.roc_auc_score`, which already scores tied pairs as half right.

Tie-aware twins (`*_tie_aware`): AP from `sklearn.metrics.average_precision_score` (tied scores
form one threshold), and the exact expectation of R@k and accuracy when ties are broken uniformly
at random. They do not depend on the sort order.

Every value is returned in percent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

RECALL_KS = (1, 5, 10)
TIE_WARN_SHARE = 0.05


class TieWarning(UserWarning):
    """Scores tie so often that the published-protocol numbers depend on the tie order."""


@dataclass(frozen=True)
class Query:
    """One retrieval query (or QA question): candidate labels and scores in published order."""

    labels: np.ndarray  # 1 = relevant (retrieval) / correct option (QA)
    scores: np.ndarray


def _as_query(labels: Sequence, scores: Sequence) -> Query:
    labels = np.asarray(labels, dtype=np.int64)
    # float64 as pandas reads the published CSVs: the unstable sort's tie order depends on dtype.
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be 1-d of one length")
    return Query(labels, scores)


def _mean(values: list[float]) -> float | None:
    # Left-to-right sums and each script's order of operations, so the last digits agree too:
    # calc_ssv2.py prints `100 * (sum / n)`.
    return 100 * (sum(values) / len(values)) if values else None


def _accuracy(hits: list[float]) -> float | None:
    # eval_atphard.py prints `100 * count / total`.
    return 100 * sum(hits) / len(hits) if hits else None


def tied_share(scores: Sequence[float]) -> float:
    """Share of the scores whose value another candidate of the same query also has."""
    # Neighbours in sorted order rather than np.unique's counts: the same share (NaNs, like
    # np.unique, count as one value) in 0.4x the time, for the toy demo's bootstrap.
    ranked = np.sort(np.asarray(scores, dtype=np.float64))
    if not ranked.size:
        return 0.0
    same = np.zeros(ranked.size + 1, bool)  # same[i]: ranked[i - 1] == ranked[i]
    same[1:-1] = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
    return np.count_nonzero(same[1:] | same[:-1]) / ranked.size


def average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Uninterpolated AP (fraction) with the published ranking `np.argsort(-scores)`."""
    q = _as_query(labels, scores)
    ranked = q.labels[np.argsort(-q.scores)]
    if not ranked.any():
        raise ValueError("average precision is undefined for a query without a relevant item")
    hits = np.flatnonzero(ranked)
    return sum((i + 1) / (rank + 1) for i, rank in enumerate(hits.tolist())) / len(hits)


def recall_at_k(labels: Sequence[int], scores: Sequence[float], k: int) -> float:
    """1.0 when a relevant item is among the top k of the published ranking, else 0.0."""
    q = _as_query(labels, scores)
    return float(q.labels[np.argsort(-q.scores)[:k]].any())


def recall_at_k_tie_aware(labels: Sequence[int], scores: Sequence[float], k: int) -> float:
    """Expected R@k when tied scores are ordered uniformly at random (exact, no sampling)."""
    q = _as_query(labels, scores)
    k = min(k, q.scores.size)
    if k == 0:
        return 0.0
    kth = np.sort(q.scores)[::-1][k - 1]
    above = q.scores > kth
    if q.labels[above].any():
        return 1.0
    # The group tied at the k-th value fills the remaining `take` places: a random subset.
    tied = q.scores == kth
    group, relevant, take = int(tied.sum()), int(q.labels[tied].sum()), k - int(above.sum())
    return float(1 - Fraction(math.comb(group - relevant, take), math.comb(group, take)))


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """AUC-ROC in percent (scikit-learn)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("AUC needs both positive and negative pairs")
    return 100 * float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def _warn_ties(tied: int, total: int, what: str) -> None:
    if tied:
        warnings.warn(
            f"{tied} of {total} {what} have more than {TIE_WARN_SHARE:.0%} of their scores tied "
            "with another candidate: the published-protocol numbers depend on the tie order there; "
            "the *_tie_aware keys do not",
            TieWarning,
            stacklevel=3,
        )


def retrieval_metrics(queries: Sequence[tuple[Sequence[int], Sequence[float]]], ks=RECALL_KS) -> dict:
    """mAP and R@k over queries given as (labels, scores) in the published candidate order.

    Returns the metric keys (percent) and counts: `queries` (scored), `queries_no_relevant`
    (left out) and `queries_tied` (over the tie threshold).
    """
    queries = [_as_query(labels, scores) for labels, scores in queries]
    scored = [q for q in queries if q.labels.any()]
    out = {
        "mAP": _mean([average_precision(q.labels, q.scores) for q in scored]),
        **{f"R@{k}": _mean([recall_at_k(q.labels, q.scores, k) for q in scored]) for k in ks},
        "mAP_tie_aware": _mean([float(average_precision_score(q.labels, q.scores)) for q in scored]),
        **{
            f"R@{k}_tie_aware": _mean([recall_at_k_tie_aware(q.labels, q.scores, k) for q in scored])
            for k in ks
        },
    }
    tied = sum(tied_share(q.scores) > TIE_WARN_SHARE for q in queries)
    _warn_ties(tied, len(queries), "queries")
    out["counts"] = {
        "queries": len(scored),
        "queries_no_relevant": len(queries) - len(scored),
        "queries_tied": int(tied),
    }
    return out


def qa_accuracy(questions: Sequence[tuple[Sequence[float], int, str]]) -> dict:
    """ATP-Hard accuracy over (option scores in file order, answer position, question type).

    The type's first letter splits `accuracy_causal` (C) and `accuracy_temporal` (T).
    """
    hits: dict[str, list[float]] = {"": [], "C": [], "T": []}
    expected: dict[str, list[float]] = {"": [], "C": [], "T": []}
    tied = 0
    for scores, answer, qtype in questions:
        scores = np.asarray(scores, dtype=np.float64)
        best = int(np.argmax(scores))
        hit = float(best == answer)
        # With one top score the tie-aware expectation is the hit itself, exactly; the general
        # computation was most of the time of the toy demo's bootstrap, which recomputes this often.
        top_tied = np.count_nonzero(scores == scores[best]) > 1
        expect = recall_at_k_tie_aware(np.arange(scores.size) == answer, scores, 1) if top_tied else hit
        for letter in {"", qtype[:1].upper()} & hits.keys():
            hits[letter].append(hit)
            expected[letter].append(expect)
        tied += tied_share(scores) > TIE_WARN_SHARE
    _warn_ties(tied, len(questions), "questions")
    out = {}
    for suffix, values in (("", hits), ("_tie_aware", expected)):
        out[f"accuracy{suffix}"] = _accuracy(values[""])
        out[f"accuracy_causal{suffix}"] = _accuracy(values["C"])
        out[f"accuracy_temporal{suffix}"] = _accuracy(values["T"])
    out["counts"] = {
        "questions": len(questions),
        "questions_causal": len(hits["C"]),
        "questions_temporal": len(hits["T"]),
        "questions_tied": int(tied),
    }
    return out
