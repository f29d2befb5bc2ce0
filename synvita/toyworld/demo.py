"""`synvita demo [--quick] [--check] [--out DIR] [--seeds N]`: the whole SynViTA method on the toy world, on CPU.

world -> negatives (RUN/triplets.jsonl, RUN/benchmarks/) -> generation (the generation job with the
`toy` backend, one run per generator profile) -> scoring (the score job with the trained tiny VQA
members) -> weights -> training (the recipe, five configurations x seeds) and evaluation (the harness
on the four toy benchmarks), the trained models side by side (pool.py) -> report. Every stage is run through its own command, reading and
writing the files it would in a real run. A stage whose code is missing from this checkout is named
as missing and the stages after it that need it are skipped: nothing is made up.

Printed at the end: benchmarks x rows (mean ± SE over items and training seeds), the paired
difference SynViTA − VideoCon-style, the weight quality (ROC AUC of each weighting at telling
faithful clips from unfaithful ones, by the generators' ground truth, overall and per failure type)
and f̄(V^s,t^s) − f̄(V^s,t^r) per triplet type and generator.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from synvita.data.benchmarks import BENCHMARKS, load_pairs
from synvita.data.records import MISALIGNMENTS
from synvita.errors import run_command
from synvita.toyworld.basemodels import STATIC_KINDS, LmmSettings, MemberSettings, base_models
from synvita.toyworld.benchmarks import WRITTEN, benchmark_writers, write_triplets
from synvita.toyworld.generator import PROFILES
from synvita.toyworld.pool import side_by_side
from synvita.utils import atomic_write_text

FRAMES, SIZE = 8, 48
# with 8 videos per LLM pass the tiny LMM scores the four benchmarks in 0.74x the time of one per
# pass (12.6 s against 17.1 s per model; benchmarks/bench_videos_per_pass.py); a 7B model keeps
# the harness's default of one
VIDEOS_PER_PASS = 8


@dataclass(frozen=True)
class Row:
    name: str
    slug: str
    overrides: dict | None  # training overrides; None: the base model itself
    weights: str = ""  # "" the scored weights; "shuffled" / "inverted": a copy changed so (`weight_variant`)
    swap_labels: bool = False  # a deliberate break: L_syn and the z=s hinge with Yes and No swapped


SYN = {"loss.weighting": "margin", "loss.syn": True, "loss.scr": True}
BASE = Row("off-the-shelf", "base", None)
BASELINE = Row("VideoCon-style (L_real)", "videocon",
               {"data.clips": None, "data.weights": None, "loss.syn": False, "loss.scr": False})
SYNVITA = Row("SynViTA (margin w + L_scr)", "synvita", SYN)
ROWS = (BASE, BASELINE,
        Row("+ synthetic, fixed w (no L_scr)", "fixed", {**SYN, "loss.weighting": "fixed", "loss.scr": False}),
        Row("+ synthetic, margin w (no L_scr)", "margin", {**SYN, "loss.scr": False}),
        SYNVITA,
        Row("control: shuffled margin w + L_scr", "shuffled", SYN, weights="shuffled"))
# `synvita demo --check`: SynViTA broken on purpose; each must come out worse than SYNVITA.
MUTANTS = (Row("broken: inverted w (1 - margin) + L_scr", "inverted", SYN, weights="inverted"),
           Row("broken: swapped synthetic Yes/No + L_scr", "swapped", SYN, swap_labels=True))
# `--check`'s power probe: SynViTA with ground-truth weights (w = 1 on the faithful clips, 0 on the
# others), right and with swapped labels. Their gap is what a label swap can move the numbers by
# when the weights are as good as weights get: if it is nil, no weighting makes the swap visible.
ORACLE = Row("reference: oracle w (ground truth) + L_scr", "oracle", SYN, weights="oracle")
ORACLE_SWAPPED = Row("reference: oracle w, swapped synthetic Yes/No + L_scr", "oracle-swapped", SYN,
                     weights="oracle", swap_labels=True)
# The stages the demo runs, by their `synvita` command (synvita.cli lists the same modules; the demo,
# one of its commands, does not import that table back).
STAGES = {"generate": "synvita.generators.job", "score": "synvita.scoring.job", "train": "synvita.training.recipe",
          "evaluate": "synvita.evaluation.harness", "report": "synvita.report.html"}


@dataclass(frozen=True)
class Scale:
    train_scenes: int
    negatives_per_scene: int
    bench: dict
    lmm: LmmSettings
    members: MemberSettings
    train_steps: int
    batch: int = 4
    lr: float = 2e-3
    # the toy fine-tuning recipe's LoRA (not the 7B recipe's: `synvita.training.config.LoraConfig`)
    lora: dict = dataclasses.field(default_factory=lambda: {"r": 16, "alpha": 32, "dropout": 0.0,
                                                            "targets": "attention"})
    seeds: int = 3
    # bootstrap draws: an SE from 40 draws is within about 11 % of the exact one; 200 took over 10
    # minutes on a loaded 2-core machine
    reps: int = 40


# n_atp: 400 scenes gave 360 questions and an item SE of 2.1; SE 1.5 needs about 730 questions
FULL = Scale(train_scenes=160, negatives_per_scene=3, bench=dict(n_llm=250, n_human=300, n_atp=820),
             lmm=LmmSettings(), members=MemberSettings(), train_steps=120)
QUICK = Scale(train_scenes=12, negatives_per_scene=1, bench=dict(n_llm=8, n_human=8, n_atp=8),
              lmm=LmmSettings(steps=12, batch=4),
              members=MemberSettings(steps=8, batch=4, tower_steps=4, tower_batch=4), train_steps=2, seeds=1, reps=20)
# --check: the full base models (one cache with `make demo`), smaller data, one seed.
CHECK = Scale(train_scenes=100, negatives_per_scene=3, bench=dict(n_llm=150, n_human=8, n_atp=8),
              lmm=LmmSettings(), members=MemberSettings(), train_steps=120, seeds=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke version (tiny sizes, 1 seed)")
    parser.add_argument("--check", action="store_true",
                        help="the mutation check: a reduced run that must show fine-tuning and weight quality "
                             "working, and two deliberate breaks of SynViTA moving the numbers the wrong way")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory for every stage's files")
    parser.add_argument("--seeds", type=int, help="training seeds per row (default 3, --quick 1)")
    parser.add_argument("--cache", type=Path, help="base-model cache (default $SYNVITA_CACHE or ~/.cache/synvita)")


def _missing(stage: str) -> bool:
    return importlib.util.find_spec(STAGES[stage]) is None


def _synvita(command: str, *argv) -> None:
    """`synvita <command> <argv>`, run in this process as the command line runs it."""
    stage = importlib.import_module(STAGES[command])
    parser = argparse.ArgumentParser(prog=f"synvita {command}")
    stage.add_arguments(parser)
    code = run_command(command, stage.run, parser.parse_args([str(a) for a in argv]))
    if code:
        raise RuntimeError(f"`synvita {command} {' '.join(map(str, argv))}` exited with {code}")


def _yaml(path: Path, data: dict) -> Path:
    atomic_write_text(path, yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    return path


def generate(run: Path) -> None:
    for profile in PROFILES:
        cfg = _yaml(run / "configs" / f"generate_{profile}.yaml", {
            "backend": "toy", "plugins": ["synvita.toyworld.generator"], "generator": profile,
            "input": run / "triplets.jsonl", "output_dir": run, "crf": 0,
            "settings": {"profile": profile, "frames": FRAMES, "size": SIZE,
                         "ground_truth": str(run / "toy" / "ground_truth.jsonl")}})
        _synvita("generate", "--config", cfg)


def score(run: Path, members: dict[str, Path], shards: int = 2) -> None:
    """The score job in `shards` shards side by side, then once more over them all: every clip is
    found in the shards' journals, so that run only merges them into the run's weights."""
    cfg = _yaml(run / "configs" / "score.yaml", {
        "run_dir": run, "members": [{"name": f"toy-{k}", "kind": k, "model": p} for k, p in members.items()]})
    side_by_side([(_synvita, "score", "--config", cfg, "--shard", f"{i}/{shards}") for i in range(shards)],
                  log=run / "demo_jobs.log")
    _synvita("score", "--config", cfg)


def _failures(run: Path) -> dict:
    """(generator, prompt, seed) -> the set of failure types the generator made on that clip."""
    out = {}
    for line in (run / "toy" / "ground_truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["generator"], row["prompt"], row["seed"]] = frozenset(row["failures"])
    return out


def _clip_failures(run: Path, rows: list) -> list[frozenset]:
    """The failure types the generator made on the clip of each weight row in `rows`."""
    from synvita.data.records import SyntheticClip, read_manifest

    truth = _failures(run)
    clips = {c.id: c for c in read_manifest(run / "clips.jsonl", SyntheticClip) if c.status == "done"}
    return [truth[clips[r.clip_id].generator, clips[r.clip_id].caption, clips[r.clip_id].seed] for r in rows]


def _auc(faithful: list[bool], w: list[float], keep: list[bool]) -> float | None:
    """AUC (points) of w at telling faithful clips among the kept ones; None without both kinds."""
    from synvita.evaluation.metrics import roc_auc

    f = [x for x, k in zip(faithful, keep) if k]
    return round(roc_auc(f, [x for x, k in zip(w, keep) if k]), 1) if 0 < sum(f) < len(f) else None


def weight_quality(run: Path, variants=("shuffled",)) -> dict:
    """Per weighting (and per changed copy of the margin weights): ROC AUC at telling faithful clips
    from unfaithful ones by the generators' ground truth. "overall": every clip; per failure type
    k: the faithful clips against those whose only failure is k; "frame-visible": the faithful
    clips against those whose failures all show in a single frame (`STATIC_KINDS`), the ones an
    ensemble of image VLMs can see. Plus the Fig. 5.2 analogue, f̄(V^s,t^s) − f̄(V^s,t^r) per
    triplet type x generator."""
    from synvita.data.records import WeightRow, read_manifest
    from synvita.weights import clip_weight

    rows = read_manifest(run / "weights.jsonl", WeightRow)
    failed = _clip_failures(run, rows)
    faithful = [not f for f in failed]
    weightings = {name: [r.weights[name] for r in rows] for name in rows[0].weights}
    for v in variants:
        changed = {r.clip_id: r for r in read_manifest(weight_variant(run, v), WeightRow)}
        weightings[f"margin ({v})"] = [clip_weight(changed[r.clip_id], "margin") for r in rows]
    kinds = sorted({r.misalignment for r in rows})
    # the clips each AUC compares, the same for every weighting
    visible = [f <= set(STATIC_KINDS) for f in failed]
    alone = {k: [f <= {k} for f in failed] for k in MISALIGNMENTS}
    quality = {}
    for name, w in weightings.items():
        q = {"overall": _auc(faithful, w, [True] * len(rows)),
             "frame-visible": _auc(faithful, w, visible)}
        quality[name] = q | {k: _auc(faithful, w, keep) for k, keep in alone.items()}
    gaps = {}
    for kind in kinds:
        for gen in PROFILES:
            sel = [(r.gap, f) for r, f in zip(rows, faithful) if r.misalignment == kind and r.generator == gen]
            if sel:
                g = np.array([x for x, _ in sel])
                gaps.setdefault(kind, {})[gen] = {
                    "n": len(sel), "faithful_share": round(sum(f for _, f in sel) / len(sel), 3),
                    "mean": float(g.mean()), "p10": float(np.percentile(g, 10)), "p50": float(np.median(g)),
                    "p90": float(np.percentile(g, 90)),
                    "mean_faithful": float(np.mean([x for x, f in sel if f])) if any(f for _, f in sel) else None,
                    "mean_unfaithful": float(np.mean([x for x, f in sel if not f])) if not all(f for _, f in sel) else None}
    return {"clips": len(rows), "faithful_share": sum(faithful) / len(rows), "quality": quality, "gap": gaps}


def weight_variant(run: Path, variant: str) -> Path:
    """RUN/weights_<variant>.jsonl: the scored weights changed so that the margin weighting gives
    "shuffled": another clip's w (the same distribution, no information about this clip);
    "inverted": 1 − w (a deliberate break: trusts the clips the ensemble distrusts);
    "oracle": 1 for a clip its generator rendered faithfully, else 0, from the ground truth no
    learner reads (a reference: the best any weighting could do)."""
    import random

    from synvita.data.records import WeightRow, read_manifest, write_manifest
    from synvita.weights import clip_weight, with_weights

    path = run / f"weights_{variant}.jsonl"
    if path.is_file():
        return path
    rows = read_manifest(run / "weights.jsonl", WeightRow)
    if variant == "shuffled":
        scores = [(r.f_target, r.f_real) for r in rows]
        random.Random("shuffled-weights").shuffle(scores)
    elif variant == "inverted":  # margin(f_t, f_r) = max(0, f_t − f_r); with f_r = 0 it is f_t = 1 − w
        scores = [(1 - clip_weight(r, "margin"), 0.0) for r in rows]
    elif variant == "oracle":
        scores = [(float(not failed), 0.0) for failed in _clip_failures(run, rows)]
    else:
        raise ValueError(f"unknown weight variant {variant!r}")
    changed = [with_weights(dataclasses.replace(r, f_target=t, f_real=f, members={}))
               for r, (t, f) in zip(rows, scores)]
    write_manifest(path, changed)
    return path


@contextlib.contextmanager
def _swapped_synthetic_labels():
    """Train with the synthetic views' Yes and No swapped: (V^s,t^s) plays the negative and
    (V^s,t^r) the positive, in L_syn and in the z=s hinge. A deliberate break for --check."""
    from synvita.training import loop

    right = loop.synvita_objective

    def swapped(views, w, has_clip, eos=None, **kwargs):
        views, eos = dict(views), dict(eos) if eos is not None else None
        for answers in (views, eos):
            if answers is not None and "ss" in answers:
                answers["ss"], answers["sr"] = answers["sr"], answers["ss"]
        return right(views, w, has_clip, eos=eos, **kwargs)

    loop.synvita_objective = swapped
    try:
        yield
    finally:
        loop.synvita_objective = right


def train(run: Path, base: Path, scale: Scale, row: Row, seed: int) -> Path:
    name = f"{row.slug}-seed{seed}"
    settings = {
        "model": {"name_or_path": base, "gradient_checkpointing": False},
        "lora": scale.lora,
        "data": {"triplets": run / "triplets.jsonl", "clips": run / "clips.jsonl", "weights": run / "weights.jsonl",
                 "split": "train", "frames": {"kind": "uniform", "num_frames": FRAMES},
                 "feature_cache": run / "features"},
        "loss": {"gamma": 0.2, "lambda_scr": 1.0},
        "optim": {"lr": scale.lr, "warmup_steps": max(1, scale.train_steps // 10)},
        "per_device_batch_size": scale.batch, "max_steps": scale.train_steps, "epochs": 100,
        "mixed_precision": "no", "seed": seed, "log_every": 10, "save_every": 100000,
        "output_dir": run / "train" / name,
    }
    if row.weights:
        settings["data"]["weights"] = weight_variant(run, row.weights)
    cfg = _yaml(run / "configs" / f"train_{name}.yaml", settings)
    overrides = [f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
                 for k, v in row.overrides.items()]
    checkpoints = sorted((run / "train" / name / "checkpoints").glob("*/adapter"))
    if not checkpoints:  # the only checkpoint is the final one (save_every is larger than the run)
        with _swapped_synthetic_labels() if row.swap_labels else contextlib.nullcontext():
            _synvita("train", "--config", cfg, *overrides)
        checkpoints = sorted((run / "train" / name / "checkpoints").glob("*/adapter"))
    if not checkpoints:
        raise RuntimeError(f"{run / 'train' / name}: training wrote no adapter")
    return checkpoints[-1]


def evaluate(run: Path, base: Path, adapter: Path | None, name: str, benches=WRITTEN) -> dict:
    """{benchmark: (metric, predictions CSV)} of one model on the toy benchmarks."""
    scores = {}
    for bench in benches:
        out = run / "eval" / name / f"{bench}.json"
        if not out.is_file():
            _synvita("evaluate", "--benchmark", bench, "--annotations", run / "benchmarks", "--model", base,
                     *(["--adapter", adapter] if adapter else []), "--video-root", run / "benchmarks",
                     "--frames", FRAMES, "--videos-per-pass", VIDEOS_PER_PASS, "--feature-cache", run / "features",
                     "--out", out)
        result = json.loads(out.read_text())
        scores[bench] = (result[BENCHMARKS.get(bench).metric], Path(result["predictions"]))
    return scores


def train_and_evaluate(run: Path, base: Path, scale: Scale, row: Row, seed: int | None, benches=WRITTEN) -> dict:
    """`evaluate` of the row trained with `seed` (of the base model itself when seed is None)."""
    if seed is None:
        return evaluate(run, base, None, row.slug, benches)
    return evaluate(run, base, train(run, base, scale, row, seed), f"{row.slug}-seed{seed}", benches)


def statistics_of(run: Path, evals: dict, reps: int, pairs: list[tuple[Row, Row]]) -> dict:
    """{"table": row -> benchmark -> Estimate, "paired": "A − B" -> benchmark -> Estimate for each
    (A, B) of `pairs` that was evaluated, "items": sizes}."""
    from synvita.toyworld.stats import paired_difference, replicates, seed_mean

    table, paired, items = {}, {}, {}
    present = {b for per_seed in evals.values() for e in per_seed for b in e}
    benches = [b for b in WRITTEN if b in present]
    files = {b: [(row, i, e[b][1]) for row, per_seed in evals.items() for i, e in enumerate(per_seed)] for b in benches}
    # the benchmarks' replicates side by side: recomputing the metrics is most of this stage
    replicated = side_by_side([(replicates, b, run / "benchmarks", [f for *_, f in files[b]], BENCHMARKS.get(b).metric,
                                reps) for b in benches])
    for bench, reps_all in zip(benches, replicated):
        by_row = {}
        for row in evals:
            cols = [j for j, (r, *_) in enumerate(files[bench]) if r == row]
            by_row[row] = ([evals[row][i][bench][0] for i in range(len(cols))], reps_all[:, cols])
            table.setdefault(row, {})[bench] = seed_mean(*by_row[row])
        for row, against in pairs:
            if row.name in by_row and against.name in by_row:
                paired.setdefault(f"{row.name} − {against.name}", {})[bench] = paired_difference(
                    *by_row[row.name], *by_row[against.name])
        items[bench] = len({p.video for p in load_pairs(bench, run / "benchmarks")})
    return {"table": table, "paired": paired, "items": items}


def format_table(stats: dict, quality: dict | None) -> str:
    cols = [b for b in WRITTEN if any(b in per for per in stats["table"].values())]
    lines = ["| row | " + " | ".join(BENCHMARKS.get(b).metric_name for b in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, per in stats["table"].items():
        n = next(iter(per.values())).n
        lines.append(f"| {row} (seeds={n}) | " + " | ".join(f"{per[b].mean:.1f} ± {per[b].se:.1f}" for b in cols) + " |")
    # the SE of a mean over items falls as 1/sqrt(items): what a target SE of 1.5 points would need
    worst = {b: max(per[b].se_items for per in stats["table"].values() if b in per) for b in cols}
    lines += ["", "| benchmark | items (videos) | largest item-level SE of a row | items for SE 1.5 |", "|---|---|---|---|"]
    lines += [f"| {b} | {stats['items'][b]} | {worst[b]:.2f} | {int(np.ceil(stats['items'][b] * (worst[b] / 1.5) ** 2))} |"
              for b in cols]
    for name, per in stats["paired"].items():
        lines += ["", f"Paired difference {name} (± SE, items and seeds): " + ", ".join(
            f"{b} {e.mean:+.1f} ± {e.se:.1f}" for b, e in per.items())]
    if quality:
        lines += ["", f"Weight quality over {quality['clips']} synthetic clips "
                  f"({100 * quality['faithful_share']:.0f}% faithful by ground truth): ROC AUC vs faithfulness; "
                  "per failure type, the faithful clips against those with only that failure",
                  "", "| weighting | overall | frame-visible | " + " | ".join(MISALIGNMENTS) + " |",
                  "|---" * (len(MISALIGNMENTS) + 3) + "|"]
        show = lambda x: "–" if x is None else f"{x:.1f}"  # noqa: E731
        for name, q in quality["quality"].items():
            lines.append(f"| {name} | {show(q['overall'])} | {show(q['frame-visible'])} | "
                         + " | ".join(show(q.get(k)) for k in MISALIGNMENTS) + " |")
        kinds = [k for k in MISALIGNMENTS if k in quality["gap"]]
        gens = list(PROFILES)
        lines += ["", "f̄(V^s,t^s) − f̄(V^s,t^r) (Fig. 5.2 analogue) per triplet type: median [p10, p90], faithful share",
                  "", "| triplet type | " + " | ".join(gens) + " |", "|---" * (len(gens) + 1) + "|"]
        for k in kinds:
            cells = [(lambda g: f"{g['p50']:+.2f} [{g['p10']:+.2f}, {g['p90']:+.2f}] {100 * g['faithful_share']:.0f}%")(
                quality["gap"][k][gen]) if gen in quality["gap"][k] else "–" for gen in gens]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _base_numbers(base: Path, members: dict[str, Path]) -> dict:
    def held(path: Path) -> dict:
        info = json.loads((path / "toyworld.json").read_text())
        return {"heldout": info.get("heldout"), "settings": info.get("settings")}

    return {"off-the-shelf LMM": held(base), **{f"member {k}": held(p) for k, p in members.items()}}


def demo(out: Path, scale: Scale, cache: Path | None = None, rows=ROWS, benches=WRITTEN) -> dict:
    t0 = time.time()
    seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(name: str):
        print(f"[demo {time.time() - t0:5.0f}s] {name}", flush=True)
        start = time.time()
        yield
        seconds[name] = round(seconds.get(name, 0.0) + time.time() - start, 1)

    missing = [s for s in STAGES if _missing(s)]
    for name in missing:
        print(f"MISSING STAGE: {name} ({STAGES[name]} is not in this checkout); it and what needs it are skipped")
    with stage("world: training triplets and held-out benchmarks, side by side"):
        # only what a killed run left unfinished
        writers = [] if (out / "triplets.jsonl").is_file() else [
            (write_triplets, out, scale.train_scenes, scale.negatives_per_scene, FRAMES, SIZE)]
        writers += benchmark_writers(out / "benchmarks", frames=FRAMES, size=SIZE, resume=True, **scale.bench)
        side_by_side(writers, log=out / "demo_jobs.log")
    with stage("base models: the off-the-shelf video LMM and the VQA members (cached)"):
        base, members = base_models(scale.lmm, scale.members, cache)
    summary = {"run": str(out), "scale": dataclasses.asdict(scale), "missing_stages": missing, "base_model": str(base),
               "members": {k: str(v) for k, v in members.items()}, "base_models": _base_numbers(base, members),
               "results": {}, "weight_quality": None}
    have_weights = False
    if "generate" not in missing:
        with stage("generation: the toy backend, one job per generator profile"):
            generate(out)
        if "score" not in missing:
            with stage("scoring: VQAScore ensemble of the tiny members -> weights"):
                score(out, members)
            have_weights = (out / "weights.jsonl").is_file()
            if have_weights:
                with stage("weight quality against the generators' ground truth"):
                    variants = sorted({r.weights for r in rows if r.weights})
                    summary["weight_quality"] = weight_quality(out, variants)
    evals: dict[str, list[dict]] = {}
    if "evaluate" not in missing:
        def runnable(row: Row) -> bool:  # the base model; a trained row when its stages (and weights) are here
            return row.overrides is None or ("train" not in missing
                                             and (row.overrides.get("data.clips", 1) is None or have_weights))

        jobs = [(row, seed) for row in rows if runnable(row)
                for seed in ([None] if row.overrides is None else range(scale.seeds))]
        with stage(f"training + evaluation: {len(jobs)} models (rows x seeds), side by side"):
            results = side_by_side([(train_and_evaluate, out, base, scale, row, seed, benches) for row, seed in jobs],
                                   log=out / "demo_jobs.log")
        for (row, _), result in zip(jobs, results):
            evals.setdefault(row.name, []).append(result)
    summary["seconds"] = time.time() - t0
    return finish(out, summary, evals, rows, scale.reps, seconds, stage, report="report" not in missing)


def finish(out: Path, summary: dict, evals: dict, rows, reps: int, seconds: dict,
           stage=lambda name: contextlib.nullcontext(), report: bool = True) -> dict:
    """Statistics, table and result files from the rows' evaluations `evals` (row -> per seed ->
    {benchmark: (metric, predictions)}); also what a resumed run with fewer seeds summarises."""
    summary["results"] = {row: [{b: v for b, (v, _) in e.items()} for e in per] for row, per in evals.items()}
    stats = None
    if evals:
        with stage("statistics: bootstrap over items, seed spread"):
            stats = statistics_of(out, evals, reps, [(r, BASELINE) for r in (SYNVITA, *MUTANTS)]
                                  + [(ORACLE_SWAPPED, ORACLE)])
    skipped = [r.name for r in rows if r.name not in evals]
    if report:
        with stage("report"):
            _synvita("report", out)
    table = format_table(stats, summary["weight_quality"]) if stats else "(nothing was evaluated)"
    if skipped:
        table += f"\n\nNot run (their stages are missing): {', '.join(skipped)}"
    if stats:
        summary["statistics"] = {part: {k: {b: e.as_dict() for b, e in v.items()} for k, v in stats[part].items()}
                                 for part in ("table", "paired")} | {"items": stats["items"]}
    quality = summary["weight_quality"]["quality"] if summary["weight_quality"] else {}
    atomic_write_text(out / "demo_summary.json", json.dumps({
        "table": {row: {b: {k: e.as_dict()[k] for k in ("mean", "se", "n")} for b, e in per.items()}
                  for row, per in (stats["table"].items() if stats else [])},
        "paired": {b: {"diff": e.mean, "se": e.se}
                   for b, e in (stats["paired"].get(f"{SYNVITA.name} − {BASELINE.name}", {}).items() if stats else [])},
        "weight_quality": quality,
        "base_models": summary["base_models"],
        "stage_seconds": seconds,
    }, indent=1))
    atomic_write_text(out / "demo_results.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(out / "demo_table.md", table + "\n")
    print("\n" + table + f"\n\n(total {summary['seconds']:.0f} s; files in {out})")
    return summary


def check(out: Path, cache: Path | None = None, scale: Scale = CHECK) -> list[tuple[str, bool, str]]:
    """The mutation check: a reduced demo whose directions must hold, and two deliberate breaks of
    SynViTA that must move the numbers the wrong way. Returns (claim, held, numbers). Also printed,
    not a claim: the power probe (`ORACLE`), how far apart right and swapped synthetic labels train
    the model when the weights are the ground truth."""
    rows = (BASE, BASELINE, SYNVITA, *MUTANTS, ORACLE, ORACLE_SWAPPED)
    summary = demo(out, scale, cache, rows=rows, benches=("videocon-llm",))
    r = {row: per[0]["videocon-llm"] for row, per in summary["results"].items()}
    q = summary["weight_quality"]["quality"]
    margin, inverted = q["margin"]["frame-visible"], q["margin (inverted)"]["frame-visible"]
    claims = [
        ("fine-tuning moves the model: VideoCon-style > off-the-shelf on VideoCon-LLM",
         r[BASELINE.name] > r[BASE.name], f"{r[BASELINE.name]:.1f} vs {r[BASE.name]:.1f}"),
        ("the margin weights carry information: AUC > 50 on frame-visible failures (fixed w is 50)",
         margin > 50, f"{margin:.1f}"),
        ("inverted w ranks faithful clips below unfaithful ones", inverted < 50, f"{inverted:.1f}"),
        ("inverted w trains a worse model than SynViTA on VideoCon-LLM",
         r[MUTANTS[0].name] < r[SYNVITA.name], f"{r[MUTANTS[0].name]:.1f} vs {r[SYNVITA.name]:.1f}"),
        ("swapped synthetic Yes/No trains a worse model than SynViTA on VideoCon-LLM",
         r[MUTANTS[1].name] < r[SYNVITA.name], f"{r[MUTANTS[1].name]:.1f} vs {r[SYNVITA.name]:.1f}"),
    ]
    for claim, held, numbers in claims:
        print(f"{'PASS' if held else 'FAIL'}  {claim}  ({numbers})")
    power = summary["statistics"]["paired"][f"{ORACLE_SWAPPED.name} − {ORACLE.name}"]["videocon-llm"]
    seen = "can" if abs(power["mean"]) > 2 * power["se"] else "cannot"
    print(f"POWER  with ground-truth weights, swapped minus right synthetic labels on VideoCon-LLM: "
          f"{power['mean']:+.1f} ± {power['se']:.1f} ({r[ORACLE_SWAPPED.name]:.1f} vs {r[ORACLE.name]:.1f}): "
          f"this testbed {seen} tell the synthetic labels apart even with perfect weights (2 SE)")
    return claims


def run(args: argparse.Namespace) -> int:
    if args.check:
        return 0 if all(held for _, held, _ in check(args.out, args.cache)) else 1
    scale = QUICK if args.quick else FULL
    if args.seeds:
        scale = dataclasses.replace(scale, seeds=args.seeds)
    demo(args.out, scale, args.cache)
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m synvita.toyworld.demo", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(run(cli.parse_args()))
