"""The harness end to end: --from-predictions against independent computations, and with a tiny model."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom
from sklearn.metrics import average_precision_score

REPO = Path(__file__).resolve().parents[1]
# eval/evaluate.py, the thin entry point, under another name: `evaluate` is the HF library.
_spec = importlib.util.spec_from_file_location("synvita_eval_script", REPO / "eval" / "evaluate.py")
evaluate_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_script)


def bf16_like_scores(n: int, seed: int) -> np.ndarray:
    """Scores on a coarse grid, so ties are as frequent as in bf16 outputs."""
    return np.round(np.random.default_rng(seed).random(n) * 64) / 64


def write_videocon_predictions(path: Path, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def expected_recall(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """E[R@k] under random tie order, via the hypergeometric law of the boundary tie group."""
    kth = np.sort(scores)[::-1][k - 1]
    if labels[scores > kth].any():
        return 1.0
    tied = scores == kth
    take = k - int((scores > kth).sum())
    return 1 - hypergeom(int(tied.sum()), int(labels[tied].sum()), take).pmf(0)


def test_from_predictions_ssv2_temporal_equals_independent_computation(shared_data, tmp_path):
    ann = shared_data / "videocon"
    df1 = pd.read_csv(ann / "eval_ssv2_temporal.csv")
    scores = bf16_like_scores(len(df1), seed=0)
    rows = [[v, c, s, s, 1 - s] for v, c, s in zip(df1.videopath, df1.caption, scores)]
    # Extra rows that join nothing, and one query left incomplete: both must be reported.
    rows.append(["videos/none.avi", df1.caption[0], 0.5, 0.5, 0.5])
    dropped_caption = df1.caption[5]
    rows = [r for r in rows if not (r[1] == dropped_caption and r[0] == df1.videopath[5])]
    preds = tmp_path / "scores.csv"
    write_videocon_predictions(preds, rows)
    out_path = tmp_path / "ssv2.json"
    assert evaluate_script.main(["--benchmark", "ssv2-temporal", "--annotations", str(ann),
                                 "--from-predictions", str(preds), "--out", str(out_path)]) == 0
    out = json.loads(out_path.read_text())

    # Independently, the way calc_ssv2.py computes it (merge, keep 216-candidate queries, argsort).
    df2 = pd.read_csv(preds, names=["videopath", "caption", "entailment", "pos", "neg"])
    df = pd.merge(df1, df2, on=["videopath", "caption"], how="inner")
    aps, r1, r5, r10, aps_sk, er = [], [], [], [], [], {1: [], 5: [], 10: []}
    for _, q in df.groupby("caption"):
        if len(q) != 216:
            continue
        q = q.sort_values("videopath")
        pred, lab = q.entailment.to_numpy(), q.match.to_numpy()
        ranked = lab[np.argsort(-pred)]
        hits = np.flatnonzero(ranked == 1)
        aps.append(np.mean([(i + 1) / (h + 1) for i, h in enumerate(hits)]))
        r1.append(ranked[:1].any()), r5.append(ranked[:5].any()), r10.append(ranked[:10].any())
        aps_sk.append(average_precision_score(lab, pred))
        for k in er:
            er[k].append(expected_recall(lab, pred, k))
    assert len(aps) == 17
    assert out["mAP"] == pytest.approx(100 * np.mean(aps), abs=1e-9)
    assert out["R@1"] == pytest.approx(100 * np.mean(r1)) and out["R@5"] == pytest.approx(100 * np.mean(r5))
    assert out["R@10"] == pytest.approx(100 * np.mean(r10))
    assert out["mAP_tie_aware"] == pytest.approx(100 * np.mean(aps_sk))
    for k in er:
        assert out[f"R@{k}_tie_aware"] == pytest.approx(100 * np.mean(er[k]))
    counts = out["counts"]
    assert counts["queries"] == 17 and counts["queries_dropped"] == 1 and counts["queries_tied"] == 17
    assert counts["annotations_unjoined"] == 1 and counts["predictions_unjoined"] == 1
    assert counts["annotation_pairs"] == 3888 and counts["joined_pairs"] == 3887
    assert any("tied" in w for w in out["warnings"])
    assert out["provenance"]["predictions"] == str(preds) and "versions" in out["provenance"]


def test_from_predictions_atp_hard_equals_independent_computation(shared_data, tmp_path):
    ann = shared_data / "videocon"
    df1 = pd.read_csv(ann / "eval-nextqa-atphard.csv")
    # A statement shared by two questions of a video is one prompt: one score, as a model gives.
    unique = df1[["videopath", "caption"]].drop_duplicates()
    scores = bf16_like_scores(len(unique), seed=1)
    preds = tmp_path / "atp.csv"
    write_videocon_predictions(preds, [[v, c, s] for v, c, s in zip(unique.videopath, unique.caption, scores)])
    out_path = tmp_path / "atp.json"
    assert evaluate_script.main(["--benchmark", "atp-hard", "--annotations", str(ann),
                                 "--from-predictions", str(preds), "--out", str(out_path)]) == 0
    out = json.loads(out_path.read_text())

    # Independently, the way eval_atphard.py computes it.
    df2 = pd.read_csv(preds, names=["videopath", "caption", "entailment", "pos", "neg"])
    df = pd.merge(df1.drop_duplicates(), df2.drop_duplicates(), on=["videopath", "caption"]).drop_duplicates()
    nq = pd.read_csv(ann / "nextqa-atphard.csv")
    type_of = {f"{v}-{q}": t for v, q, t in zip(nq.video, nq.question, nq.type)}
    right = {"": [], "C": [], "T": []}
    expected = {"": [], "C": [], "T": []}
    for (video, question), q in df.groupby(["videopath", "question"], sort=False):
        if len(q) != 5:
            continue
        s, answer = q.entailment.to_numpy(), q.answer.iloc[0]
        letter = type_of[f"{video.split('/')[-1][:-4]}-{question}"][0]
        top = np.flatnonzero(s == s.max())
        for key in ("", letter):
            right[key].append(np.argmax(s) == answer)
            expected[key].append((answer in top) / len(top))
    for key, name in (("", "accuracy"), ("C", "accuracy_causal"), ("T", "accuracy_temporal")):
        assert out[name] == pytest.approx(100 * np.mean(right[key]))
        assert out[f"{name}_tie_aware"] == pytest.approx(100 * np.mean(expected[key]))
    assert out["counts"]["questions"] == 1844 and out["counts"]["questions_dropped"] == 1
    assert out["counts"]["questions_causal"] == 1012 and out["counts"]["questions_temporal"] == 832
