"""`synvita demo [--quick] [--out DIR] [--seeds N]`: the whole SynViTA method on the toy world, on CPU.

world -> negatives (RUN/triplets.jsonl, RUN/benchmarks/) -> generation (the generation job with the
`toy` backend, one run per generator profile) -> scoring (the score job with the trained tiny VQA
members) -> weights -> training (the recipe, three configurations x seeds) -> evaluation (the harness
on the four toy benchmarks) -> report. Every stage is run through its own command, reading and
writing the files it would in a real run. A stage whose code is missing from this checkout is named
as missing and the stages after it that need it are skipped: nothing is made up.

Printed at the end: benchmarks x rows (mean ± std over training seeds), the weight quality (ROC AUC of
each weighting at telling faithful clips from unfaithful ones, by the generators' ground truth)
and the mean f̄(V^s,t^s) − f̄(V^s,t^r) per misalignment type.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from synvita.toyworld.basemodels import LmmSettings, MemberSettings, base_models
from synvita.toyworld.benchmarks import write_benchmarks, write_triplets
from synvita.toyworld.generator import PROFILES
from synvita.utils import atomic_write_text

FRAMES, SIZE = 8, 48
# benchmark -> (metric key in the harness output, column title)
COLUMNS = {"videocon-llm": ("auc", "VideoCon-LLM AUC"), "videocon-human": ("auc_hard", "Human-Hard AUC"),
           "ssv2-temporal": ("mAP", "SSv2-Temporal mAP"), "atp-hard": ("accuracy", "ATP-Hard acc")}
# row -> training overrides (None: the base model itself)
ROWS = {
    "off-the-shelf": None,
    "VideoCon-style (L_real)": {"data.clips": None, "data.weights": None, "loss.syn": False, "loss.scr": False},
    "+ synthetic, fixed w": {"loss.weighting": "fixed", "loss.syn": True, "loss.scr": False},
    "SynViTA (margin w + L_scr)": {"loss.weighting": "margin", "loss.syn": True, "loss.scr": True},
}
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
    lr: float = 5e-4
    seeds: int = 3


FULL = Scale(train_scenes=80, negatives_per_scene=2, bench=dict(n_llm=60, n_human=50, n_atp=60),
             lmm=LmmSettings(), members=MemberSettings(), train_steps=20)
QUICK = Scale(train_scenes=12, negatives_per_scene=1, bench=dict(n_llm=8, n_human=8, n_atp=8),
              lmm=LmmSettings(steps=12, batch=4), members=MemberSettings(steps=8, batch=4), train_steps=2,
              seeds=1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke version (tiny sizes, 1 seed)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory for every stage's files")
    parser.add_argument("--seeds", type=int, help="training seeds per row (default 3, --quick 1)")
    parser.add_argument("--cache", type=Path, help="base-model cache (default $SYNVITA_CACHE or ~/.cache/synvita)")


def _missing(stage: str) -> bool:
    return importlib.util.find_spec(STAGES[stage]) is None


def _synvita(*argv: str) -> None:
    from synvita.cli import main

    code = main([str(a) for a in argv])
    if code:
        raise RuntimeError(f"`synvita {' '.join(map(str, argv))}` exited with {code}")


def _yaml(path: Path, data: dict) -> Path:
    atomic_write_text(path, yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    return path


def generate(run: Path) -> None:
    for profile in PROFILES:
        cfg = _yaml(run / "configs" / f"generate_{profile}.yaml", {
            "backend": "toy", "generator": profile, "input": run / "triplets.jsonl", "output_dir": run,
            "settings": {"profile": profile, "frames": FRAMES, "size": SIZE,
                         "ground_truth": str(run / "toy" / "ground_truth.jsonl")}})
        _synvita("generate", "--config", cfg)


def score(run: Path, members: dict[str, Path]) -> None:
    cfg = _yaml(run / "configs" / "score.yaml", {
        "run_dir": run, "members": [{"name": f"toy-{k}", "kind": k, "model": p} for k, p in members.items()]})
    _synvita("score", "--config", cfg)


def weight_quality(run: Path) -> dict:
    """AUC of each weighting (faithful vs not, per ground truth) and the mean gap per misalignment type."""
    from sklearn.metrics import roc_auc_score

    from synvita.data.records import SyntheticClip, WeightRow, read_manifest

    truth = {}
    for line in (run / "toy" / "ground_truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        truth[row["generator"], row["prompt"], row["seed"]] = row["faithful"]
    clips = {c.id: c for c in read_manifest(run / "clips.jsonl", SyntheticClip) if c.status == "done"}
    rows = read_manifest(run / "weights.jsonl", WeightRow)
    faithful = [truth[clips[r.clip_id].generator, clips[r.clip_id].caption, clips[r.clip_id].seed] for r in rows]
    out = {"clips": len(rows), "faithful_share": sum(faithful) / len(rows), "auc": {}, "gap": {}}
    if 0 < sum(faithful) < len(rows):
        for name in rows[0].weights:
            out["auc"][name] = 100 * roc_auc_score(faithful, [r.weights[name] for r in rows])
    for kind in sorted({r.misalignment for r in rows}):
        gaps = [r.f_target - r.f_real for r in rows if r.misalignment == kind]
        faith = [f for f, r in zip(faithful, rows) if r.misalignment == kind]
        out["gap"][kind] = {"mean": statistics.mean(gaps), "n": len(gaps), "faithful_share": sum(faith) / len(faith)}
    return out


def train(run: Path, base: Path, scale: Scale, row: str, seed: int) -> Path:
    name = f"{_slug(row)}-seed{seed}"
    settings = {
        "model": {"name_or_path": base, "gradient_checkpointing": False},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "data": {"triplets": run / "triplets.jsonl", "clips": run / "clips.jsonl", "weights": run / "weights.jsonl",
                 "split": "train", "frames": {"kind": "uniform", "num_frames": FRAMES}},
        "loss": {"gamma": 0.2, "lambda_scr": 1.0},
        "optim": {"lr": scale.lr, "warmup_steps": max(1, scale.train_steps // 10)},
        "per_device_batch_size": scale.batch, "max_steps": scale.train_steps, "epochs": 100,
        "mixed_precision": "no", "seed": seed, "log_every": 10, "save_every": 100000,
        "output_dir": run / "train" / name,
    }
    cfg = _yaml(run / "configs" / f"train_{name}.yaml", settings)
    overrides = [f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
                 for k, v in ROWS[row].items()]
    checkpoints = sorted((run / "train" / name / "checkpoints").glob("*/adapter"))
    if not checkpoints:  # the only checkpoint is the final one (save_every is larger than the run)
        _synvita("train", "--config", cfg, *overrides)
        checkpoints = sorted((run / "train" / name / "checkpoints").glob("*/adapter"))
    if not checkpoints:
        raise RuntimeError(f"{run / 'train' / name}: training wrote no adapter")
    return checkpoints[-1]


def evaluate(run: Path, base: Path, adapter: Path | None, name: str) -> dict:
    scores = {}
    for bench, (key, _) in COLUMNS.items():
        out = run / "eval" / name / f"{bench}.json"
        if not out.is_file():
            _synvita("evaluate", "--benchmark", bench, "--annotations", run / "benchmarks", "--model", base,
                     *(["--adapter", adapter] if adapter else []), "--video-root", run / "benchmarks",
                     "--frames", FRAMES, "--out", out)
        scores[bench] = json.loads(out.read_text())[key]
    return scores


def _slug(row: str) -> str:
    return {"off-the-shelf": "base", "VideoCon-style (L_real)": "videocon", "+ synthetic, fixed w": "fixed",
            "SynViTA (margin w + L_scr)": "synvita"}[row]


def format_table(results: dict, quality: dict | None) -> str:
    lines = ["| row | " + " | ".join(t for _, t in COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row, per_seed in results.items():
        cells = []
        for bench in COLUMNS:
            vals = [s[bench] for s in per_seed]
            spread = f" ± {statistics.stdev(vals):.1f}" if len(vals) > 1 else ""
            cells.append(f"{statistics.mean(vals):.1f}{spread}")
        lines.append(f"| {row} (n={len(per_seed)}) | " + " | ".join(cells) + " |")
    if quality:
        lines += ["", f"Weight quality over {quality['clips']} synthetic clips "
                  f"({100 * quality['faithful_share']:.0f}% faithful by ground truth): ROC AUC "
                  + ", ".join(f"{k} {v:.1f}" for k, v in quality["auc"].items()),
                  "", "| misalignment | mean f̄(V^s,t^s) − f̄(V^s,t^r) | clips | faithful |", "|---|---|---|---|"]
        lines += [f"| {k} | {g['mean']:+.3f} | {g['n']} | {100 * g['faithful_share']:.0f}% |"
                  for k, g in quality["gap"].items()]
    return "\n".join(lines)


def demo(out: Path, scale: Scale, cache: Path | None = None) -> dict:
    t0 = time.time()
    missing = [s for s in STAGES if _missing(s)]
    for stage in missing:
        print(f"MISSING STAGE: {stage} ({STAGES[stage]} is not in this checkout); it and what needs it are skipped")
    log = lambda msg: print(f"[demo {time.time() - t0:5.0f}s] {msg}", flush=True)  # noqa: E731
    log("world: training triplets and held-out benchmarks")
    if not (out / "triplets.jsonl").is_file():
        write_triplets(out, scale.train_scenes, scale.negatives_per_scene, FRAMES, SIZE)
    if not (out / "benchmarks" / "nextqa-atphard.csv").is_file():
        write_benchmarks(out / "benchmarks", frames=FRAMES, size=SIZE, **scale.bench)
    log("base models: the off-the-shelf video LMM and the VQA members (cached)")
    base, members = base_models(scale.lmm, scale.members, cache)
    summary = {"run": str(out), "scale": dataclasses.asdict(scale), "missing_stages": missing, "base_model": str(base),
               "members": {k: str(v) for k, v in members.items()}, "results": {}, "weight_quality": None}
    have_weights = False
    if "generate" not in missing:
        log("generation: the toy backend, one job per generator profile")
        generate(out)
        if "score" not in missing:
            log("scoring: VQAScore ensemble of the tiny members -> weights")
            score(out, members)
            have_weights = (out / "weights.jsonl").is_file()
            summary["weight_quality"] = weight_quality(out) if have_weights else None
    if "evaluate" not in missing:
        log("evaluation: off-the-shelf")
        summary["results"]["off-the-shelf"] = [evaluate(out, base, None, "base")]
        for row, change in ROWS.items():
            if change is None or "train" in missing or (change.get("data.clips", 1) is not None and not have_weights):
                continue
            summary["results"][row] = []
            for seed in range(scale.seeds):
                log(f"training + evaluation: {row}, seed {seed}")
                adapter = train(out, base, scale, row, seed)
                summary["results"][row].append(evaluate(out, base, adapter, f"{_slug(row)}-seed{seed}"))
    skipped = [r for r in ROWS if r not in summary["results"]]
    if "report" not in missing:
        log("report")
        _synvita("report", out)
    summary["seconds"] = time.time() - t0
    table = format_table(summary["results"], summary["weight_quality"])
    if skipped:
        table += f"\n\nNot run (their stages are missing): {', '.join(skipped)}"
    atomic_write_text(out / "demo_results.json", json.dumps(summary, indent=1, default=str))
    atomic_write_text(out / "demo_table.md", table + "\n")
    print("\n" + table + f"\n\n(total {summary['seconds']:.0f} s; files in {out})")
    return summary


def run(args: argparse.Namespace) -> int:
    scale = QUICK if args.quick else FULL
    if args.seeds:
        scale = dataclasses.replace(scale, seeds=args.seeds)
    demo(args.out, scale, args.cache)
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(prog="python -m synvita.toyworld.demo", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(run(cli.parse_args()))
