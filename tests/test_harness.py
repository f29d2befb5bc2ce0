"""The harness end to end: --from-predictions against independent computations, and with a tiny model."""

from __future__ import annotations

import csv
import importlib.util
import re
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
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
        precisions = [(i + 1) / (h + 1) for i, h in enumerate(np.flatnonzero(ranked == 1))]
        aps.append(sum(precisions) / len(precisions))
        r1.append(ranked[:1].any()), r5.append(ranked[:5].any()), r10.append(ranked[:10].any())
        aps_sk.append(average_precision_score(lab, pred))
        for k in er:
            er[k].append(expected_recall(lab, pred, k))
    assert len(aps) == 17
    # The script's own arithmetic, to the last digit.
    assert out["mAP"] == 100 * (sum(aps) / len(aps))
    for key, hits in (("R@1", r1), ("R@5", r5), ("R@10", r10)):
        assert out[key] == 100 * (sum(hits) / len(hits))
    assert out["mAP_tie_aware"] == pytest.approx(100 * np.mean(aps_sk))
    for k in er:
        assert out[f"R@{k}_tie_aware"] == pytest.approx(100 * np.mean(er[k]))
    counts = out["counts"]
    assert counts["queries"] == 17 and counts["queries_dropped"] == 1 and counts["queries_tied"] == 17
    assert counts["annotations_unjoined"] == 1 and counts["predictions_unjoined"] == 1
    assert counts["annotation_pairs"] == 3888 and counts["joined_pairs"] == 3887
    assert any("tied" in w for w in out["warnings"])
    assert out["provenance"]["predictions"] == str(preds) and "versions" in out["provenance"]
    # `synvita evaluate` is the same command.
    from synvita.cli import main as synvita_main

    cli_out = tmp_path / "cli.json"
    assert synvita_main(["evaluate", "--benchmark", "ssv2-temporal", "--annotations", str(ann),
                         "--from-predictions", str(preds), "--out", str(cli_out)]) == 0
    assert json.loads(cli_out.read_text())["mAP"] == out["mAP"]


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
        assert out[name] == 100 * sum(right[key]) / len(right[key])  # the script's arithmetic
        assert out[f"{name}_tie_aware"] == pytest.approx(100 * np.mean(expected[key]))
    assert out["counts"]["questions"] == 1844 and out["counts"]["questions_dropped"] == 1
    assert out["counts"]["questions_causal"] == 1012 and out["counts"]["questions_temporal"] == 832


# -- with a model: a tiny random Qwen2-VL on clips written here -----------------------------------

QUESTIONS = [  # (video id, question, type, answer, five statements)
    ("1001", "what does the red square do", "TN", 2,
     ["It moves left.", "It moves right.", "It stays still.", "It grows.", "It spins."]),
    ("1002", "why does the ball bounce", "CW", 0,
     ["It hits the floor.", "It is thrown.", "It is kicked.", "It rolls.", "It falls asleep."]),
    ("1003", "how does the light change", "CH", 4,
     ["It gets darker.", "It flickers.", "It turns blue.", "It turns off.", "It gets brighter."]),
]


def atp_prompt(statement: str) -> str:
    return ("The following is a conversation between a curious human and AI assistant.\nHuman: <|video|>\n"
            f'Human: Does this video entail the description: "{statement}"?\nAI: ')


def write_atp(root: Path, questions) -> Path:
    """Clips under NExT-QA's folder layout for `questions`, and ATP-Hard files for them."""
    from synvita.data.video import write_video

    rng = np.random.default_rng(0)
    for vid, *_ in questions:
        write_video(root / "videos" / "1106" / f"{vid}.mp4", rng.integers(0, 256, (6, 40, 48, 3), dtype=np.uint8), fps=4)
    ann = root / "ann"
    ann.mkdir()
    with open(ann / "eval-nextqa-atphard.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["videopath", "question", "answer", "option", "caption"])
        for vid, question, _, answer, statements in questions:
            for option, s in enumerate(statements):
                # The authors' absolute paths: the harness finds the file by its tail under --video-root.
                w.writerow([f"/local2/hb/nextqa/NExTVideo/1106/{vid}.mp4", question, answer, option, atp_prompt(s)])
    with open(ann / "nextqa-atphard.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video", "question", "answer", "qid", "type"])
        for vid, question, qtype, answer, _ in questions:
            w.writerow([vid, question, answer, 1, qtype])
    return ann


@pytest.fixture(scope="module")
def tiny_atp(tmp_path_factory):
    """A tiny model, three generated clips under NExT-QA's folder layout, and ATP-Hard files for them."""
    from synvita.tiny import build_tiny

    root = tmp_path_factory.mktemp("atp")
    model = build_tiny("qwen2-vl", root / "model", seed=0)
    return root, model, write_atp(root, QUESTIONS)


def run_model(root, model, ann, out, *extra):
    return evaluate_script.main(["--benchmark", "atp-hard", "--annotations", str(ann), "--model", str(model),
                                 "--video-root", str(root / "videos"), "--frames", "4", "--out", str(out), *extra])


def independent_scores(model, root, adapter=None) -> dict:
    """f per (video id, statement) through another path: pairwise `score`, no prefix sharing."""
    from synvita.data.video import FrameSampler, read_video
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm

    lmm = load_video_lmm(str(model))
    if adapter is not None:
        from peft import PeftModel

        # Unmerged: LoRA layers injected into the same model object (the harness merges them).
        lmm.model = PeftModel.from_pretrained(lmm.model, str(adapter)).base_model.model
    sampler = FrameSampler(num_frames=4)
    scorer = AlignmentScorer(lmm, sampler, prefix_sharing=False)
    out = {}
    for vid, _, _, _, statements in QUESTIONS:
        frames = read_video(root / "videos" / "1106" / f"{vid}.mp4", sampler)
        f = scorer.score([frames] * 5, statements).tolist()
        out.update({(vid, s): v for s, v in zip(statements, f)})
    return out


def expected_accuracy(scores: dict) -> float:
    right = [np.argmax([scores[vid, s] for s in statements]) == answer for vid, _, _, answer, statements in QUESTIONS]
    return 100 * np.mean(right)


def test_end_to_end_with_a_tiny_model_and_videocon_format_predictions(tiny_atp, tmp_path):
    from synvita.models.families import load_video_lmm

    root, model, ann = tiny_atp
    lmm = load_video_lmm(str(model))
    vision = type(lmm.model.get_submodule(lmm.family.vision_modules[0]))
    encoded = []
    # Observe (not replace) every vision-tower forward in the harness's own model.
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: encoded.append(1) if isinstance(module, vision) else None)
    out_path = tmp_path / "eval" / "atp-hard.json"
    try:
        assert run_model(root, model, ann, out_path) == 0
    finally:
        hook.remove()
    assert len(encoded) == 3  # three videos of five captions each: one vision pass per video
    out = json.loads(out_path.read_text())
    ref = independent_scores(model, root)
    preds = pd.read_csv(tmp_path / "eval" / "atp-hard.predictions.csv", names=["videopath", "caption", "entailment"])
    assert len(preds) == 15 and preds.caption.str.startswith("The following").all()
    for path, caption, score in zip(preds.videopath, preds.caption, preds.entailment):
        statement = caption.split('description: "')[1].split('"?')[0]
        assert score == pytest.approx(ref[path.split("/")[-1][:-4], statement], abs=1e-5)
    assert out["accuracy"] == pytest.approx(expected_accuracy(ref))
    assert out["counts"]["questions"] == 3 and out["counts"]["pairs_scored"] == 15
    prov = out["provenance"]
    assert prov["model"] == str(model) and prov["adapter"] is None and prov["frames"] == 4
    assert prov["sampler"] == "uniform-4" and prov["seed"] == 0 and prov["pairs"] == 15
    assert prov["dtype"] == "float32"  # --dtype auto on a CPU without an adapter
    assert {"date", "versions"} <= prov.keys() and "torch" in prov["versions"]
    # The harness's own predictions read back without a model, with their side-car provenance.
    again = tmp_path / "again.json"
    assert evaluate_script.main(["--benchmark", "atp-hard", "--annotations", str(ann), "--from-predictions",
                                 str(tmp_path / "eval" / "atp-hard.predictions.csv"), "--out", str(again)]) == 0
    again = json.loads(again.read_text())
    assert again["accuracy_tie_aware"] == out["accuracy_tie_aware"] and again["provenance"] == prov


def test_adapter_is_applied(tiny_atp, tmp_path):
    from peft import LoraConfig, get_peft_model

    from synvita.models.families import load_video_lmm

    root, model, ann = tiny_atp
    lmm = load_video_lmm(str(model))
    torch.manual_seed(0)
    # Random (not zero) LoRA B, so the adapter really changes the scores.
    peft_model = get_peft_model(lmm.model, LoraConfig(r=4, target_modules=lmm.family.lora_target_regex("all_linear"), init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    out_path = tmp_path / "with-adapter.json"
    assert run_model(root, model, ann, out_path, "--adapter", str(tmp_path / "adapter")) == 0
    preds = pd.read_csv(tmp_path / "with-adapter.predictions.csv", names=["videopath", "caption", "entailment"])
    base, adapted = independent_scores(model, root), independent_scores(model, root, tmp_path / "adapter")
    got = {(p.split("/")[-1][:-4], c.split('description: "')[1].split('"?')[0]): s
           for p, c, s in zip(preds.videopath, preds.caption, preds.entailment)}
    assert max(abs(got[k] - adapted[k]) for k in got) < 1e-4
    assert max(abs(got[k] - base[k]) for k in got) > 1e-3
    assert json.loads(out_path.read_text())["provenance"]["adapter"] == str(tmp_path / "adapter")


def test_a_killed_evaluation_resumes_without_rescoring(tiny_atp, tmp_path, capsys):
    root, model, ann = tiny_atp
    full = tmp_path / "full.json"
    assert run_model(root, model, ann, full) == 0
    rows = (tmp_path / "full.predictions.csv").read_text()
    # What a kill leaves: the first video's 5 rows, 2 of the second's, and one cut inside its score.
    ends = [i + 1 for i, c in enumerate(rows) if c == "\n" and rows[i - 1].isdigit()]
    partial = tmp_path / "killed.predictions.csv"
    partial.write_text(rows[: ends[7] - 4])
    (tmp_path / "killed.predictions.json").write_text((tmp_path / "full.predictions.json").read_text())
    with pytest.warns(UserWarning, match="incomplete last record"):
        assert run_model(root, model, ann, tmp_path / "killed.json") == 0
    out = json.loads((tmp_path / "killed.json").read_text())
    assert out["counts"]["pairs_reused"] == 7 and out["counts"]["pairs_scored"] == 8
    resumed = pd.read_csv(partial, names=["videopath", "caption", "entailment"])
    reference = pd.read_csv(tmp_path / "full.predictions.csv", names=["videopath", "caption", "entailment"])
    assert len(resumed) == 15 and not resumed.duplicated(["videopath", "caption"]).any()
    merged = reference.merge(resumed, on=["videopath", "caption"])
    assert len(merged) == 15 and np.allclose(merged.entailment_x, merged.entailment_y, atol=1e-5)
    assert out["accuracy"] == json.loads(full.read_text())["accuracy"]
    # A different setup must not silently extend these predictions: one line, exit 2.
    capsys.readouterr()
    assert run_model(root, model, ann, tmp_path / "killed.json", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("synvita evaluate: ") and "was written by another setup" in err and err.count("\n") == 1


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tiny_atp, tmp_path):
    import os
    import signal
    import subprocess
    import time

    root, model, ann = tiny_atp
    out, preds = tmp_path / "k.json", tmp_path / "k.predictions.csv"
    proc = subprocess.Popen([sys.executable, str(REPO / "eval" / "evaluate.py"), "--benchmark", "atp-hard",
                             "--annotations", str(ann), "--model", str(model), "--video-root", str(root / "videos"),
                             "--frames", "4", "--out", str(out)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (preds.exists() and preds.stat().st_size) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(pd.read_csv(preds, names=["videopath", "caption", "entailment"])) if preds.exists() else 0
    if written >= 15:
        pytest.skip("the run finished before the kill landed")
    assert run_model(root, model, ann, out) == 0
    counts = json.loads(out.read_text())["counts"]
    assert counts["pairs_reused"] == written and counts["pairs_scored"] == 15 - written
    assert len(pd.read_csv(preds, names=["videopath", "caption", "entailment"])) == 15


def test_auto_dtype_is_the_adapters_training_dtype(tmp_path):
    from synvita.evaluation.harness import eval_dtype

    adapter = tmp_path / "run" / "checkpoints" / "step-0000002" / "adapter"
    adapter.mkdir(parents=True)
    assert eval_dtype("auto", adapter, None) == "float32"  # no recipe found, no CUDA here
    (tmp_path / "run" / "resolved.yaml").write_text("mixed_precision: bf16\nseed: 0\n")
    assert eval_dtype("auto", adapter, None) == "bfloat16"
    assert eval_dtype("float32", adapter, None) == "float32"


# -- several processes ---------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _eval_command(root, model, ann, out, processes: int) -> list[str]:
    """eval/evaluate.py alone, or under `accelerate launch` with `processes` CPU processes."""
    script = [str(REPO / "eval" / "evaluate.py"), "--benchmark", "atp-hard", "--annotations", str(ann),
              "--model", str(model), "--video-root", str(root / "videos"), "--frames", "4", "--batch-size", "2",
              "--out", str(out)]
    if processes == 1:
        return [sys.executable, *script]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), *script]


def _env() -> dict:
    import os

    # The same threads in every run: CPU kernels may sum in another order with another thread count.
    return {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def many_atp(tmp_path_factory):
    """24 questions (120 pairs), enough for a kill to land mid-run, and the one-process reference run."""
    import subprocess

    from synvita.tiny import build_tiny

    root = tmp_path_factory.mktemp("many")
    model = build_tiny("qwen2-vl", root / "model", seed=0)
    questions = [(str(2000 + i), f"what happens {i}", "TN" if i % 2 else "CW", i % 5,
                  [f"It moves {w} {i}." for w in ("left", "right", "up", "down", "away")]) for i in range(24)]
    ann = write_atp(root, questions)
    subprocess.run(_eval_command(root, model, ann, root / "one.json", 1), env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return root, model, ann


def _same_result(a: Path, b: Path) -> None:
    """Same metrics, counts and setup; the predictions files equal byte for byte."""
    one, two = json.loads(a.read_text()), json.loads(b.read_text())
    assert Path(one["predictions"]).read_bytes() == Path(two["predictions"]).read_bytes()
    for result in (one, two):  # what this run scored itself differs after a resumption
        del result["counts"]["pairs_reused"], result["counts"]["pairs_scored"]
    for key in set(one) | set(two):
        if key not in ("predictions", "provenance"):
            assert one[key] == two[key], key
    drop = ("date",)
    assert {k: v for k, v in one["provenance"].items() if k not in drop} == \
           {k: v for k, v in two["provenance"].items() if k not in drop}


@pytest.mark.slow
def test_two_processes_give_the_one_process_result_byte_for_byte(many_atp):
    import subprocess

    root, model, ann = many_atp
    subprocess.run(_eval_command(root, model, ann, root / "two.json", 2), env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not list(root.glob("two.predictions.rank*.csv"))  # merged and removed
    assert len(pd.read_csv(root / "two.predictions.csv", names=["v", "c", "e"])) == 120
    _same_result(root / "one.json", root / "two.json")


@pytest.mark.slow
def test_a_sigkilled_two_process_run_resumes(many_atp):
    import signal
    import subprocess
    import time

    root, model, ann = many_atp
    out = root / "killed.json"
    journals = [root / f"killed.predictions.rank{r}.csv" for r in (0, 1)]
    proc = subprocess.Popen(_eval_command(root, model, ann, out, 2), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not any(j.exists() and j.stat().st_size for j in journals) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    # The launcher and both workers at once, mid-write (torch's launcher starts the workers in
    # sessions of their own, so the process group does not reach them).
    import psutil

    launcher = psutil.Process(proc.pid)
    for p in [*launcher.children(recursive=True), launcher]:
        p.send_signal(signal.SIGKILL)
    proc.wait()
    # whole records: each ends with its score and a newline (captions hold newlines of their own)
    written = sum(len(re.findall(r"\d\n", j.read_text())) for j in journals if j.exists())
    assert proc.returncode == -signal.SIGKILL and 0 < written < 120, written
    subprocess.run(_eval_command(root, model, ann, out, 2), env=_env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = json.loads(out.read_text())["counts"]
    assert counts["pairs_reused"] == written and counts["pairs_scored"] == 120 - written
    assert not any(j.exists() for j in journals)
    _same_result(root / "one.json", out)


def test_slurm_array_shards_then_a_merging_run(tiny_atp, tmp_path):
    """`--shard I/N` tasks score disjoint shares into their journals; the run without --shard scores
    nothing more, merges them in one-process order and computes the metrics."""
    root, model, ann = tiny_atp
    assert run_model(root, model, ann, tmp_path / "one.json") == 0
    out = tmp_path / "array.json"
    for shard in ("1/2", "0/2"):
        assert run_model(root, model, ann, out, "--shard", shard) == 0
        assert not out.exists()  # no metrics from a shard
    journals = sorted(tmp_path.glob("array.predictions.rank*.csv"))
    shares = [set(pd.read_csv(j, names=["v", "c", "e"]).v) for j in journals]
    assert len(journals) == 2 and not shares[0] & shares[1] and len(shares[0] | shares[1]) == 3
    assert run_model(root, model, ann, out) == 0
    result = json.loads(out.read_text())
    assert result["counts"]["pairs_scored"] == 0 and result["counts"]["pairs_reused"] == 15
    assert not list(tmp_path.glob("array.predictions.rank*.csv"))
    one = pd.read_csv(tmp_path / "one.predictions.csv", names=["v", "c", "e"])
    merged = pd.read_csv(tmp_path / "array.predictions.csv", names=["v", "c", "e"])
    assert (one[["v", "c"]] == merged[["v", "c"]]).all().all()  # the order one process writes
    assert np.allclose(one.e, merged.e, rtol=0, atol=1e-6)
    assert result["accuracy"] == json.loads((tmp_path / "one.json").read_text())["accuracy"]


def test_feature_cache_skips_the_tower_for_adapters_that_leave_it_alone(tiny_atp, tmp_path):
    from peft import LoraConfig, get_peft_model

    from synvita.models.families import load_video_lmm

    root, model, ann = tiny_atp
    lmm = load_video_lmm(str(model))
    vision = lmm.family.vision_modules[0]
    tower_linear = next(n for n, m in lmm.model.named_modules()
                        if n.startswith(tuple(f"{v}." for v in lmm.family.vision_modules))
                        and isinstance(m, torch.nn.Linear))
    adapters = {}
    for name, targets in (("llm", lmm.family.lora_target_regex("all_linear")), ("tower", [tower_linear])):
        torch.manual_seed(0)
        peft_model = get_peft_model(load_video_lmm(str(model)).model,
                                    LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
        peft_model.save_pretrained(tmp_path / name)
        adapters[name] = tmp_path / name
    tower_type, encoded = type(lmm.model.get_submodule(vision)), []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: encoded.append(1) if isinstance(module, tower_type) else None)
    cache = tmp_path / "features"

    def run(name, adapter=None):
        del encoded[:]
        out = tmp_path / f"{name}.json"
        extra = ["--adapter", str(adapter)] if adapter else []
        assert run_model(root, model, ann, out, "--feature-cache", str(cache), *extra) == 0
        preds = pd.read_csv(tmp_path / f"{name}.predictions.csv", names=["videopath", "caption", "entailment"])
        scores = {(p.split("/")[-1][:-4], c.split('description: "')[1].split('"?')[0]): s
                  for p, c, s in zip(preds.videopath, preds.caption, preds.entailment)}
        return len(encoded), scores, len(list(cache.glob("*.safetensors")))

    try:
        first = run("base")
        llm_adapted = run("llm", adapters["llm"])
        tower_adapted = run("tower", adapters["tower"])
    finally:
        hook.remove()
    assert first[0] == 3 and first[2] == 3
    # Same tower: every video's features come from the cache, and the scores are the adapter's own.
    assert llm_adapted[0] == 0 and llm_adapted[2] == 3
    # A tower the adapter changed has other weights, so its videos are encoded (and kept) anew.
    assert tower_adapted[0] == 3 and tower_adapted[2] == 6
    for (_, scores, _), adapter in ((first, None), (llm_adapted, adapters["llm"]), (tower_adapted, adapters["tower"])):
        ref = independent_scores(model, root, adapter)
        assert max(abs(scores[k] - ref[k]) for k in ref) < 1e-4
    assert max(abs(tower_adapted[1][k] - first[1][k]) for k in first[1]) > 1e-3
