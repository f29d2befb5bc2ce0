"""Published annotation files parse and group as their authors' scripts group them."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from synvita.data import benchmarks as D
from synvita.evaluation import benchmarks as B
from synvita.errors import SynvitaError

PROMPT = (
    "The following is a conversation between a curious human and AI assistant.\nHuman: <|video|>\n"
    'Human: Does this video entail the description: "{}"?\nAI: '
)


def test_description_extraction():
    assert D.description(PROMPT.format('A "quoted" man runs')) == 'A "quoted" man runs'
    assert D.description("a bare caption") == "a bare caption"


def test_ssv2_temporal_parses_into_18_queries_of_216_videos(shared_data):
    pairs = D.load_pairs("ssv2-temporal", shared_data / "videocon")
    assert len(pairs) == 18 * 216
    sizes = Counter(p.group for p in pairs)
    relevant = Counter(p.group for p in pairs if p.label == 1)
    assert len(sizes) == 18 and set(sizes.values()) == {216} and set(relevant.values()) == {12}
    assert len({p.video for p in pairs}) == 216
    first = pairs[0]
    assert (first.video, first.caption, first.label) == ("videos/104599.avi", "Covering [something] with [something]", 1)
    assert first.text.startswith("The following is a conversation") and first.group == first.caption


def test_atp_hard_parses_into_questions_of_5_options_with_types(shared_data):
    folder = shared_data / "videocon"
    pairs = D.load_pairs("atp-hard", folder)
    groups = defaultdict(list)
    for p in pairs:
        groups[p.group].append(p)
    assert Counter(len(g) for g in groups.values()) == {5: 1844, 10: 1}
    five = [g for g in groups.values() if len(g) == 5]
    assert all(len({p.label for p in g}) == 1 for g in five)  # one answer per question
    types = Counter(g[0].subset for g in five)
    # Independent count, the way eval_atphard.py keys types: file stem + question, with pandas.
    ev = pd.read_csv(folder / "eval-nextqa-atphard.csv").drop_duplicates()
    sizes = ev.groupby(["videopath", "question"]).size()
    complete = sizes[sizes == 5].reset_index()
    nq = pd.read_csv(folder / "nextqa-atphard.csv")
    type_of = {f"{v}-{q}": t for v, q, t in zip(nq.video, nq.question, nq.type)}
    letters = Counter(type_of[f"{v.split('/')[-1][:-4]}-{q}"][0] for v, q in zip(complete.videopath, complete.question))
    assert types == letters == {"C": 1012, "T": 832}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_ssv2_bad_match_names_file_line_and_field(tmp_path):
    write_csv(tmp_path / "eval_ssv2_temporal.csv", ["videopath", "caption", "match"],
              [["a.avi", PROMPT.format("x"), "1"], ["b.avi", PROMPT.format("x"), "yes"]])
    # The first record spans 4 lines (the prompt has 3 newlines), so the second starts on line 6.
    with pytest.raises(ValueError, match=r"eval_ssv2_temporal.csv:6: match: not an integer: 'yes'"):
        D.load_pairs("ssv2-temporal", tmp_path)
    (tmp_path / "eval_ssv2_temporal.csv").write_text("videopath,caption\n")
    with pytest.raises(ValueError, match="missing column"):
        D.load_pairs("ssv2-temporal", tmp_path)
    with pytest.raises(SynvitaError, match="eval-nextqa-atphard.csv"):
        D.load_pairs("atp-hard", tmp_path)


def test_videocon_llm_test_split_and_human_hard(tmp_path):
    write_csv(tmp_path / "videocon_llm_entailment.csv",
              ["source", "videopath", "caption", "neg_caption", "split", "misalignment", "youtube_key"],
              [["MSR-VTT", "msrvtt/v1.mp4", "a dog runs", "a cat runs", "test", "object", "k1"],
               ["VaTeX", "vatex/v2.mp4", "a man sings", "a man cries", "train", "action", "k2"],
               ["VaTeX", "vatex/v3.mp4", "two men talk", "three men talk", "test", "counting", "k3"]])
    pairs = D.load_pairs("videocon-llm", tmp_path)
    assert [(p.video, p.caption, p.label) for p in pairs] == [
        ("msrvtt/v1.mp4", "a dog runs", 1), ("msrvtt/v1.mp4", "a cat runs", 0),
        ("vatex/v3.mp4", "two men talk", 1), ("vatex/v3.mp4", "three men talk", 0)]

    write_csv(tmp_path / "videocon_human.csv", ["video_url", "caption", "neg_caption", "nle", "hard"],
              [["https://s3.example/v_a.mp4", "p1", "n1", "e", "True"],
               ["https://s3.example/v_b.mp4", "p2", "n2", "e", "False"],
               ["https://s3.example/v_c.mp4", "p3", "n3", "e", "True"]])
    pairs = D.load_pairs("videocon-human", tmp_path)
    assert pairs[0].video == "v_a.mp4" and [p.subset for p in pairs] == ["hard"] * 2 + [""] * 2 + ["hard"] * 2
    scores = dict(zip([(p.video, p.caption) for p in pairs], [0.9, 0.2, 0.1, 0.6, 0.5, 0.7]))
    out = B.compute("videocon-human", pairs, scores)
    labels = [p.label for p in pairs]
    assert out["auc"] == pytest.approx(100 * roc_auc_score(labels, list(scores.values())))
    assert out["auc_hard"] == pytest.approx(100 * roc_auc_score([1, 0, 1, 0], [0.9, 0.2, 0.5, 0.7]))
    assert out["counts"] == {"pairs": 6, "pairs_hard": 4, "pairs_conflicting": 0}


def test_join_counts_unjoined_and_repeated_rows(tmp_path):
    pairs = [D.Pair(v, PROMPT.format("x"), "x", 1, "x") for v in ("a.avi", "b.avi", "d.avi")]
    preds = tmp_path / "p.csv"
    with open(preds, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a.avi", PROMPT.format("x"), 0.5, 0.5, 0.5])  # the prompt form joins
        w.writerow(["a.avi", "x", 0.5])  # the bare caption joins too; an exact repeat
        w.writerow(["c.avi", "x", 0.1])  # no such annotation
        w.writerow(["d.avi", "x", 0.1])
        w.writerow(["d.avi", "x", 0.2])  # a repeat with another score
    rows = B.read_predictions(preds)
    with pytest.warns(UserWarning) as caught:
        joined = B.join(pairs, rows, drop_duplicates=True)
    assert [str(w.message)[:60] for w in caught] == [
        "1 annotated pairs have no prediction and 1 prediction rows m",
        "1 pairs have more than one prediction row (with different sc"]
    assert joined.scores == {("a.avi", "x"): 0.5}
    assert joined.counts == {"annotation_pairs": 3, "prediction_rows": 5, "joined_pairs": 1,
                             "annotations_unjoined": 1, "predictions_unjoined": 1,
                             "pairs_predicted_repeatedly": 1}
    # Without dropping duplicates (calc_ssv2.py), the exact repeat also leaves a.avi out.
    with pytest.warns(UserWarning) as caught:
        assert B.join(pairs, rows, drop_duplicates=False).scores == {}
    assert "2 pairs have more than one prediction row" in str(caught[-1].message)
    preds.write_text("a.avi,x,high\n")
    with pytest.raises(ValueError, match=r"p.csv:1: entailment: not a number: 'high'"):
        B.read_predictions(preds)


def test_retrieval_drops_queries_with_the_wrong_candidate_count():
    rng = np.random.default_rng(0)
    pairs = [D.Pair(f"v{i:03d}", f"q{q}", f"q{q}", int(i < 12), f"q{q}") for q in range(3) for i in range(216)]
    scores = {(p.video, p.caption): float(rng.random()) for p in pairs}
    del scores["v005", "q2"]  # q2 now has 215 scored candidates
    with pytest.warns(UserWarning, match="1 queries do not have exactly 216"):
        out = B.compute("ssv2-temporal", pairs, scores)
    assert out["counts"]["queries"] == 2 and out["counts"]["queries_dropped"] == 1


def test_locate_video_takes_the_longest_existing_tail(tmp_path):
    (tmp_path / "1106").mkdir()
    (tmp_path / "1106" / "4.mp4").write_bytes(b"")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "1.avi").write_bytes(b"")
    assert B.locate_video(tmp_path, "/local2/x/NExTVideo/1106/4.mp4") == tmp_path / "1106" / "4.mp4"
    assert B.locate_video(tmp_path, "videos/1.avi") == tmp_path / "videos" / "1.avi"
    with pytest.raises(SynvitaError, match="missing.mp4: not found under"):
        B.locate_video(tmp_path, "a/missing.mp4")
    with pytest.raises(ValueError, match="'..'"):
        B.locate_video(tmp_path, "../videos/1.avi")
