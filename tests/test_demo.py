"""`synvita demo`: the whole pipeline on the toy world, through every stage's own command, and the
statistics, weight variants and deliberate breaks its table and `--check` rest on."""

import csv
import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from synvita.data.records import WeightRow, read_manifest, write_manifest
from synvita.toyworld import demo, stats


def _write_llm(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(root / "videocon_llm_entailment.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "videopath", "caption", "neg_caption", "split", "misalignment"])
        w.writerows([["toy", v, c, n, "test", "object"] for v, c, n in rows])
    return root


def test_bootstrap_replicate_is_the_metric_on_the_drawn_videos(tmp_path):
    rng = np.random.default_rng(3)
    videos = [f"v{i}.mp4" for i in range(12)]
    root = _write_llm(tmp_path, [(v, f"yes {v}", f"no {v}") for v in videos])
    pos, neg = rng.normal(0.6, 0.2, 12), rng.normal(0.4, 0.2, 12)
    preds = tmp_path / "p.csv"
    with open(preds, "w", newline="") as f:
        csv.writer(f).writerows([[v, f"yes {v}", p] for v, p in zip(videos, pos)]
                                + [[v, f"no {v}", n] for v, n in zip(videos, neg)])
    reps = stats.replicates("videocon-llm", root, [preds, preds], "auc", reps=3, seed=7)
    draws = np.random.default_rng(7)
    order = np.argsort(videos)  # the videos are taken in sorted order
    for r in range(3):
        d = order[draws.integers(0, 12, 12)]
        expected = 100 * roc_auc_score([1] * 12 + [0] * 12, [*pos[d], *neg[d]])
        assert reps[r, 0] == pytest.approx(expected) and reps[r, 1] == reps[r, 0]


def test_retrieval_replicates_count_a_twice_drawn_clip_twice(tmp_path):
    # 2 queries x 3 clips; bootstrap draws are checked against sklearn's AP on the drawn list
    rows = [("c0.mp4", "q0", 1, 0.9), ("c1.mp4", "q0", 0, 0.5), ("c2.mp4", "q0", 0, 0.7),
            ("c0.mp4", "q1", 0, 0.2), ("c1.mp4", "q1", 1, 0.6), ("c2.mp4", "q1", 1, 0.1)]
    with open(tmp_path / "eval_ssv2_temporal.csv", "w", newline="") as f:
        csv.writer(f).writerows([["videopath", "caption", "match"], *[r[:3] for r in rows]])
    with open(tmp_path / "p.csv", "w", newline="") as f:
        csv.writer(f).writerows([[v, q, s] for v, q, _, s in rows])
    from synvita.data.benchmarks import BENCHMARKS

    spec = BENCHMARKS.get("ssv2-temporal")
    with pytest.MonkeyPatch.context() as patch:  # the toy file has 3 candidates per query, not the published 216
        patch.setitem(BENCHMARKS._entries, "ssv2-temporal", dataclasses.replace(spec, group_size=None))
        # the tie-aware mAP is sklearn's (a twice-drawn clip ties with itself)
        reps = stats.replicates("ssv2-temporal", tmp_path, [tmp_path / "p.csv"], "mAP_tie_aware", reps=6, seed=1)
    draws = np.random.default_rng(1)
    for r in range(6):
        d = draws.integers(0, 3, 3)
        aps = []
        for q in ("q0", "q1"):
            labels = [next(y for v, qq, y, _ in rows if qq == q and v == f"c{i}.mp4") for i in d]
            scores = [next(s for v, qq, _, s in rows if qq == q and v == f"c{i}.mp4") for i in d]
            if any(labels):
                aps.append(average_precision_score(labels, scores))
        assert reps[r, 0] == pytest.approx(100 * np.mean(aps))  # a query with no relevant clip is left out


def test_seed_mean_and_paired_difference_combine_items_and_seeds():
    a, b = [60.0, 62.0, 64.0], [55.0, 55.0, 58.0]
    reps_a = np.array([[59, 61, 63], [61, 63, 65], [60, 62, 66]], float)
    reps_b = np.array([[54, 54, 57], [56, 56, 59], [55, 54, 58]], float)
    e = stats.seed_mean(a, reps_a)
    item = np.std(reps_a.mean(1), ddof=1)
    seed = statistics.stdev(a) / 3 ** 0.5
    assert (e.mean, e.n) == (62.0, 3) and e.se == pytest.approx((item ** 2 + seed ** 2) ** 0.5)
    d = stats.paired_difference(a, reps_a, b, reps_b)
    item = np.std(reps_a.mean(1) - reps_b.mean(1), ddof=1)
    assert d.mean == pytest.approx(62 - 56)
    assert d.se == pytest.approx((item ** 2 + statistics.variance(a) / 3 + statistics.variance(b) / 3) ** 0.5)


def _weights(run: Path) -> list[WeightRow]:
    rows = [WeightRow(clip_id=f"c{i}", triplet_id=f"t{i}", generator="toy-sharp", misalignment="object",
                      f_target=t, f_real=r, weights={"margin": max(0.0, t - r), "fixed": 1.0})
            for i, (t, r) in enumerate([(0.9, 0.1), (0.3, 0.6), (0.5, 0.45), (0.7, 0.2)])]
    write_manifest(run / "weights.jsonl", rows)
    return rows


def test_weight_quality_is_the_auc_against_ground_truth_per_failure_type(tmp_path):
    from synvita.data.records import SyntheticClip

    rng = np.random.default_rng(0)
    kinds = ["object", "flip"] * 30
    gens = ["toy-sharp", "toy-soft"] * 15 + ["toy-flicker"] * 30
    # each clip: faithful, one failure, or two (one visible in a frame, one not)
    failures = [[], ["count"], ["flip"], ["count", "flip"], ["relation"]] * 12
    rng.shuffle(failures)
    faithful = np.array([not f for f in failures])
    f_t, f_r = rng.random(60), rng.random(60)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "ground_truth.jsonl").write_text("".join(
        json.dumps({"generator": g, "prompt": f"p{i}", "seed": i, "failures": f, "faithful": not f}) + "\n"
        for i, (g, f) in enumerate(zip(gens, failures))))
    write_manifest(tmp_path / "clips.jsonl", [SyntheticClip(f"c{i}", f"t{i}", f"p{i}", g, i, f"c{i}.mp4", "done")
                                              for i, g in enumerate(gens)])
    write_manifest(tmp_path / "weights.jsonl", [
        WeightRow(f"c{i}", f"t{i}", g, k, float(t), float(r), weights={"margin": max(0.0, t - r), "fixed": 1.0})
        for i, (g, k, t, r) in enumerate(zip(gens, kinds, f_t, f_r))])
    q = demo.weight_quality(tmp_path, variants=("shuffled",))
    margin = np.maximum(0, f_t - f_r)

    def auc(keep):
        keep = np.array(keep)
        return pytest.approx(100 * roc_auc_score(faithful[keep], margin[keep]), abs=0.05)

    assert q["quality"]["margin"]["overall"] == auc([True] * 60)
    assert q["quality"]["margin"]["flip"] == auc([f in ([], ["flip"]) for f in failures])
    # count and relation show in a single frame; a clip that also failed the order does not count
    assert q["quality"]["margin"]["frame-visible"] == auc([f in ([], ["count"], ["relation"]) for f in failures])
    assert q["quality"]["margin"]["object"] is None  # no clip failed only on the object
    assert q["quality"]["fixed"]["overall"] == 50.0 and "margin (shuffled)" in q["quality"]
    soft_flip = [i for i in range(60) if kinds[i] == "flip" and gens[i] == "toy-soft"]
    assert q["gap"]["flip"]["toy-soft"]["n"] == len(soft_flip)  # the Fig. 5.2 analogue is per triplet type
    assert q["gap"]["flip"]["toy-soft"]["p50"] == pytest.approx(np.median((f_t - f_r)[soft_flip]))


def test_shuffled_weights_keep_the_distribution_and_inverted_ones_flip_it(tmp_path):
    rows = _weights(tmp_path)
    w = [r.weights["margin"] for r in rows]
    shuffled = read_manifest(demo.weight_variant(tmp_path, "shuffled"), WeightRow)
    assert sorted(max(0.0, r.f_target - r.f_real) for r in shuffled) == pytest.approx(sorted(w))
    assert [r.clip_id for r in shuffled] == [r.clip_id for r in rows]
    inverted = read_manifest(demo.weight_variant(tmp_path, "inverted"), WeightRow)
    assert [max(0.0, r.f_target - r.f_real) for r in inverted] == pytest.approx([1 - x for x in w])
    assert [r.weights["margin"] for r in inverted] == pytest.approx([1 - x for x in w])
    with pytest.raises(ValueError, match="unknown weight variant"):
        demo.weight_variant(tmp_path, "reversed")


def test_oracle_weights_are_one_on_the_clips_rendered_faithfully_and_zero_on_the_others(tmp_path):
    from synvita.data.records import SyntheticClip

    rows = _weights(tmp_path)
    # prompt p2 with seed 2 went to a second generator, which failed: a clip is found by its own generator
    truth = [("toy-sharp", "p0", 0, []), ("toy-sharp", "p1", 1, ["flip"]), ("toy-sharp", "p2", 2, []),
             ("toy-soft", "p2", 2, ["count"]), ("toy-sharp", "p3", 3, ["attribute", "count"])]
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "ground_truth.jsonl").write_text("".join(
        json.dumps({"generator": g, "prompt": p, "seed": s, "failures": f}) + "\n" for g, p, s, f in truth))
    write_manifest(tmp_path / "clips.jsonl", [SyntheticClip(f"c{i}", f"t{i}", f"p{i}", "toy-sharp", i, f"c{i}.mp4", "done")
                                              for i in range(4)])
    oracle = read_manifest(demo.weight_variant(tmp_path, "oracle"), WeightRow)
    assert [r.clip_id for r in oracle] == [r.clip_id for r in rows]
    assert [r.weights["margin"] for r in oracle] == [1.0, 0.0, 1.0, 0.0]
    assert [r.weights["fixed"] for r in oracle] == [1.0] * 4


def test_swapped_labels_train_yes_on_the_real_caption_of_the_synthetic_clip():
    from synvita.training import loop

    lp = {v: (torch.tensor([-0.2, -1.0]), torch.tensor([-1.8, -0.5])) for v in ("rr", "rs", "ss", "sr")}
    lp["sr"] = (torch.tensor([-2.0, -0.1]), torch.tensor([-0.3, -2.5]))
    w = torch.tensor([0.5, 1.0])
    has_clip = torch.ones(2)
    with demo._swapped_synthetic_labels():
        parts = loop.synvita_objective(lp, w, has_clip, normalization="per_triplet", denominator=2, syn=True,
                                       scr=False)
    # by hand: the synthetic part asks No of (V^s,t^s) and Yes of (V^s,t^r)
    expected = (0.5 * (1.8 + 2.0) + 1.0 * (0.5 + 0.1)) / 2
    assert float(parts.syn) == pytest.approx(expected)
    right = loop.synvita_objective(lp, w, has_clip, normalization="per_triplet", denominator=2, syn=True, scr=False)
    assert float(right.syn) != pytest.approx(expected)
    # Under the official normalisation the end-of-sequence terms follow their swapped answers too.
    eos = {v: torch.tensor([-0.1, -0.2]) for v in ("rr", "rs", "ss")} | {"sr": torch.tensor([-0.7, -0.9])}
    with demo._swapped_synthetic_labels():
        official = loop.synvita_objective(lp, w, has_clip, normalization="official", eos=eos, syn=True, scr=False)
    tokens = 2 * (2 * 2 + 2 * 2)
    assert float(official.syn) == pytest.approx((0.5 * (1.8 + 2.0 + 0.7 + 0.1) + 1.0 * (0.5 + 0.1 + 0.9 + 0.2)) / tokens)


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative run folder, as `make demo` passes
    summary = demo.demo(Path("run"), demo.QUICK, cache=tmp_path / "cache")
    printed = capsys.readouterr().out
    for stage in summary["missing_stages"]:
        assert f"MISSING STAGE: {stage}" in printed
    assert json.loads((tmp_path / "run" / "demo_results.json").read_text())["results"] == summary["results"]
    short = json.loads((tmp_path / "run" / "demo_summary.json").read_text())
    assert set(short) == {"table", "paired", "weight_quality", "base_models", "stage_seconds"}
    if not summary["missing_stages"]:
        assert set(summary["results"]) == {r.name for r in demo.ROWS} == set(short["table"])
        assert set(short["weight_quality"]) >= {"margin", "fixed", "margin (shuffled)"}
        assert set(short["paired"]) == set(demo.WRITTEN)
        for row, per in short["table"].items():
            assert set(per) == set(demo.WRITTEN)
            for bench, cell in per.items():
                assert cell["mean"] == pytest.approx(statistics.mean(s[bench] for s in summary["results"][row]))
                assert cell["se"] >= 0 and cell["n"] == len(summary["results"][row])
        assert all(k in short["base_models"]["off-the-shelf LMM"]["heldout"] for k in ("easy", "hard", "flip"))
    # a second run reuses the cached base models and every stage's files
    again = demo.demo(Path("run"), demo.QUICK, cache=tmp_path / "cache")
    assert again["results"] == summary["results"]


