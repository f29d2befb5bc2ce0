"""Metrics against scikit-learn, hand-worked numbers and brute force over every tie order."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from synvita.evaluation import metrics as M


def brute_force_tie_order(labels, scores, k):
    """(mean R@k, set of APs) over every order of tied candidates, each order equally likely."""
    n = len(scores)
    recalls, aps = [], set()
    for perm in itertools.permutations(range(n)):
        # perm is a tie-breaker: rank by score descending, then by perm position.
        order = sorted(range(n), key=lambda i: (-scores[i], perm[i]))
        ranked = [labels[i] for i in order]
        recalls.append(float(any(ranked[:k])))
        hits = [i for i, r in enumerate(ranked) if r]
        aps.add(round(sum((j + 1) / (h + 1) for j, h in enumerate(hits)) / len(hits), 12))
    return sum(recalls) / len(recalls), aps


def test_average_precision_hand_worked():
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert M.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # Relevant at rank 2 and 4 of a shuffled input: (1/2 + 2/4) / 2.
    assert M.average_precision([0, 1, 1, 0], [0.2, 0.7, 0.1, 0.9]) == pytest.approx(0.5)
    assert M.recall_at_k([0, 1, 1, 0], [0.2, 0.7, 0.1, 0.9], 1) == 0.0
    assert M.recall_at_k([0, 1, 1, 0], [0.2, 0.7, 0.1, 0.9], 2) == 1.0
    with pytest.raises(ValueError, match="without a relevant"):
        M.average_precision([0, 0], [0.1, 0.2])


def test_without_ties_published_ap_equals_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.integers(0, 2, 30)
        labels[0] = 1
        scores = rng.random(30)
        assert M.average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_tie_aware_recall_hand_worked():
    # One relevant among three tied candidates for one top place: 1/3.
    assert M.recall_at_k_tie_aware([0, 1, 0], [0.5, 0.5, 0.5], 1) == pytest.approx(1 / 3)
    # A non-relevant leader, then 1 relevant of 3 tied for one more place: 1/3.
    assert M.recall_at_k_tie_aware([0, 1, 0, 0], [0.9, 0.5, 0.5, 0.5], 2) == pytest.approx(1 / 3)
    # Two relevant of four tied, two places: 1 - C(2,2)/C(4,2) = 5/6.
    assert M.recall_at_k_tie_aware([1, 1, 0, 0], [0.5] * 4, 2) == pytest.approx(5 / 6)
    # A relevant candidate strictly above the boundary: certain.
    assert M.recall_at_k_tie_aware([1, 0, 0], [0.9, 0.5, 0.5], 2) == 1.0
    # k beyond the candidate count takes everything.
    assert M.recall_at_k_tie_aware([0, 1], [0.3, 0.3], 10) == 1.0


def test_tie_aware_recall_equals_brute_force_and_published_is_one_tie_order():
    rng = np.random.default_rng(2)
    for _ in range(25):
        n = 6
        scores = rng.choice([0.25, 0.5, 0.75], n).tolist()
        labels = rng.integers(0, 2, n).tolist()
        if not any(labels):
            labels[int(rng.integers(n))] = 1
        for k in (1, 2, 3):
            expected, aps = brute_force_tie_order(labels, scores, k)
            assert M.recall_at_k_tie_aware(labels, scores, k) == pytest.approx(expected)
        assert round(M.average_precision(labels, scores), 12) in aps


def test_roc_auc_ties_hand_worked_and_sklearn():
    # Pos/neg pairs: (.9,.5)=1, (.9,.1)=1, (.5,.5)=1/2, (.5,.1)=1 -> 3.5/4.
    assert M.roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(87.5)
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 200), rng.choice(np.linspace(0, 1, 9), 200)
    assert M.roc_auc(labels, scores) == pytest.approx(100 * roc_auc_score(labels, scores))
    with pytest.raises(ValueError, match="both positive and negative"):
        M.roc_auc([1, 1], [0.2, 0.3])


def test_retrieval_metrics_hand_worked_with_ties_and_a_query_without_relevant():
    queries = [
        ([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]),  # AP 5/6, R@1 1
        ([0, 1, 0, 0], [0.6, 0.6, 0.6, 0.6]),  # all tied: sklearn AP 1/4, E[R@1] 1/4, E[R@2] 1/2
        ([0, 0, 0, 0], [0.4, 0.3, 0.2, 0.1]),  # no relevant: left out
    ]
    with pytest.warns(M.TieWarning, match="1 of 3 queries"):
        out = M.retrieval_metrics(queries, ks=(1, 2))
    assert out["counts"] == {"queries": 2, "queries_no_relevant": 1, "queries_tied": 1}
    assert out["mAP_tie_aware"] == pytest.approx(100 * (5 / 6 + 1 / 4) / 2)
    assert out["R@1_tie_aware"] == pytest.approx(100 * (1 + 1 / 4) / 2)
    assert out["R@2_tie_aware"] == pytest.approx(100 * (1 + 1 / 2) / 2)
    # The published order of the tied query is numpy's; its AP is one of 1, 1/2, 1/3, 1/4.
    tied_ap = 2 * out["mAP"] / 100 - 5 / 6
    assert min(abs(tied_ap - v) for v in (1, 1 / 2, 1 / 3, 1 / 4)) < 1e-9
    assert out["mAP_tie_aware"] == pytest.approx(
        100 * np.mean([average_precision_score(lab, s) for lab, s in queries[:2]])
    )


def test_tie_warning_threshold():
    # 2 of 40 scores tied is exactly 5%: no warning; 3 of 40 is over.
    base = np.linspace(0.01, 0.99, 40)
    labels = [1] + [0] * 39
    with warnings.catch_warnings():
        warnings.simplefilter("error", M.TieWarning)
        M.retrieval_metrics([(labels, np.r_[base[:38], 0.5, 0.5])])
    with pytest.warns(M.TieWarning):
        M.retrieval_metrics([(labels, np.r_[base[:37], 0.5, 0.5, 0.5])])


def test_tied_share_is_the_share_of_scores_np_unique_counts_more_than_once():
    rng = np.random.default_rng(0)
    for _ in range(300):
        scores = rng.choice([0.1, 0.2, 0.3, -0.0, 0.0, np.nan, *rng.random(4)], size=rng.integers(0, 9))
        _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
        want = float((counts[inverse] > 1).mean()) if scores.size else 0.0
        assert M.tied_share(scores) == want, scores


def test_qa_accuracy_tie_aware_equals_the_tie_aware_recall_of_every_question():
    rng = np.random.default_rng(1)
    questions = [(rng.choice([0.2, 0.5, *rng.random(3)], size=5), int(rng.integers(5)), "TN") for _ in range(400)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.TieWarning)
        out = M.qa_accuracy(questions)
    expected = [M.recall_at_k_tie_aware(np.arange(5) == a, s, 1) for s, a, _ in questions]
    assert out["accuracy_tie_aware"] == 100 * sum(expected) / len(expected)
    assert out["accuracy"] != out["accuracy_tie_aware"]  # the draws do tie at the top


def test_qa_accuracy_hand_worked():
    questions = [
        ([0.1, 0.9, 0.2, 0.3, 0.4], 1, "CW"),  # right
        ([0.5, 0.5, 0.1, 0.1, 0.1], 1, "TN"),  # tie at the top: argmax takes option 0 -> wrong; E = 1/2
        ([0.2, 0.3, 0.1, 0.1, 0.0], 0, "TC"),  # wrong
    ]
    with pytest.warns(M.TieWarning, match="2 of 3 questions"):
        out = M.qa_accuracy(questions)
    assert out["accuracy"] == pytest.approx(100 / 3)
    assert out["accuracy_causal"] == pytest.approx(100)
    assert out["accuracy_temporal"] == pytest.approx(0)
    assert out["accuracy_tie_aware"] == pytest.approx(100 * 1.5 / 3)
    assert out["accuracy_temporal_tie_aware"] == pytest.approx(25)
    assert out["counts"]["questions_causal"] == 1 and out["counts"]["questions_temporal"] == 2


HF_METRICS = Path(M.__file__).parent / "hf_metrics"


def test_hf_evaluate_metrics_load_offline_and_agree_with_sklearn(monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(4)
    labels, scores = rng.integers(0, 2, 60), rng.random(60)
    auc = evaluate.load(str(HF_METRICS / "entailment_auc")).compute(predictions=scores, references=labels)
    assert auc["auc"] == pytest.approx(100 * roc_auc_score(labels, scores))

    # Three queries of 20 candidates, rows shuffled: candidates are ordered by id anyway.
    query = np.repeat(["q0", "q1", "q2"], 20)
    cand = np.tile([f"v{i:02d}" for i in range(20)], 3)
    order = rng.permutation(60)
    out = evaluate.load(str(HF_METRICS / "retrieval_map")).compute(
        predictions=scores[order], references=labels[order], query_ids=query[order], candidate_ids=cand[order])
    per_query = [average_precision_score(labels[query == q], scores[query == q]) for q in ("q0", "q1", "q2")]
    assert out["mAP"] == pytest.approx(100 * np.mean(per_query))  # no ties: published AP = sklearn's
    assert out["mAP_tie_aware"] == pytest.approx(out["mAP"])
    top1 = [labels[query == q][np.argmax(scores[query == q])] for q in ("q0", "q1", "q2")]
    assert out["R@1"] == pytest.approx(100 * np.mean(top1))

    with pytest.warns(M.TieWarning):
        qa = evaluate.load(str(HF_METRICS / "qa_accuracy")).compute(
            predictions=[0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.5, 0.1, 0.1, 0.1],
            references=[0, 1, 0, 0, 0, 0, 1, 0, 0, 0],
            question_ids=["a"] * 5 + ["b"] * 5, question_types=["CW"] * 5 + ["TN"] * 5)
    assert (qa["accuracy"], qa["accuracy_causal"], qa["accuracy_temporal"]) == (50.0, 100.0, 0.0)
    assert qa["accuracy_tie_aware"] == pytest.approx(75.0)
