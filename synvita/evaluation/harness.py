"""`synvita evaluate` / `python eval/evaluate.py`: a benchmark's published metrics for a model or a
predictions file.

    python eval/evaluate.py --benchmark ssv2-temporal --annotations ANN \\
        (--model ID-OR-DIR [--adapter PEFT-DIR] --video-root DIR | --from-predictions CSV) --out OUT.json

With a model, predictions go to `OUT.predictions.csv` in VideoCon's header-less
`videopath,caption,entailment` format (VideoCon's calc_ssv2.py / eval_atphard.py read it), appended
as they are scored, with the provenance in `OUT.predictions.json`. Running the same
command again after a kill scores only what is missing.

Under `accelerate launch --num_processes N` the videos are split across the processes; each appends
to its own journal `OUT.predictions.rank<r>.csv`, and the main process merges them into
`OUT.predictions.csv` (rows in the order one process writes them, so the file is the same byte for
byte) and computes the metrics. A killed run's journals are merged when it is run again. With
`--shard I/N` (a SLURM array task) a run scores its share into journal I and stops; the same command
without `--shard` then merges the journals and computes the metrics.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import warnings
from collections import defaultdict
from pathlib import Path

import yaml
from tqdm import tqdm

from synvita.config import load_config
from synvita.data.benchmarks import BENCHMARKS, Pair, load_pairs
from synvita.data.video import FrameSampler
from synvita.errors import SynvitaError
from synvita.evaluation.benchmarks import compute, join, locate_video, read_predictions
from synvita.evaluation.config import EvalConfig
from synvita.jobs import parse_shard, process_state, record_failure, split_work
from synvita.provenance import provenance
from synvita.utils import MIXED_PRECISION_DTYPES, atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="an evaluation config: a YAML file or a shipped name such as eval/videocon-llm "
                        "(`synvita configs list`); the flags below and key=value overrides set its fields")
    parser.add_argument("--benchmark", choices=BENCHMARKS.names())
    parser.add_argument("--annotations", help="folder with the benchmark's published files (`synvita data download`)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="video LMM to score with: hub id or local folder")
    source.add_argument("--from-predictions",
                        help="score nothing: read videopath,caption,entailment[,pos,neg] rows (VideoCon's or ours)")
    parser.add_argument("--adapter", help="LoRA adapter applied to --model: a PEFT folder, or VideoCon's "
                        "Owl-Con layout (a state dict file, its folder or hub id, e.g. videocon/owl-con)")
    parser.add_argument("--video-root", help="where the benchmark's videos are (with --model)")
    parser.add_argument("--out", help="metrics JSON to write")
    parser.add_argument("--predictions", help="predictions CSV to write/resume (default: OUT.predictions.csv)")
    parser.add_argument("--frames", type=int,
                        help="frames per video for the uniform and segments samplers (default: the model family's)")
    parser.add_argument("--sampler", choices=("uniform", "segments", "fps", "all"),
                        help="default: the model family's (uniform 8; mPLUG-Owl: segments 32, its own frame choice)")
    parser.add_argument("--fps", type=float, help="frames per second for --sampler fps")
    parser.add_argument("--batch-size", type=int, help="captions per forward pass (default 16)")
    parser.add_argument("--videos-per-pass", type=int,
                        help="videos whose prompt prefixes (the video's tokens) run through the LLM together "
                             "(default 1: a 7B model's cached prefix is about a gigabyte per video; small "
                             "models score faster with more)")
    parser.add_argument("--feature-cache", help="folder keeping each video's vision features: a later evaluation "
                        "on the same base model (any adapter that leaves the vision tower alone) reads them "
                        "instead of decoding and encoding the video again")
    parser.add_argument("--dtype",
                        help="float32, bfloat16, float16 or auto (default): the dtype the adapter was trained in "
                             "(its run's resolved.yaml), else bfloat16 on CUDA, as the published predictions were "
                             "made, and float32 on CPU. bf16 scores tie often; float32 avoids ties")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: where transformers puts it)")
    parser.add_argument("--quantization", choices=("4bit", "8bit"))
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--shard", help="I/N: score only every N-th video from the I-th into its own journal, "
                        "then stop (SLURM arrays; run again without --shard to merge and compute the metrics)")
    parser.add_argument("overrides", nargs="*", help="key=value settings of EvalConfig, e.g. batch_size=8")


# The flags above, each the command line's spelling of one EvalConfig field.
_FLAGS = tuple(f.name for f in dataclasses.fields(EvalConfig))


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig a command line names: --config, then its flags, then key=value overrides."""
    # JSON-quoted, so a flag's value is read as the text it is (a path like `yes` stays a path).
    flags = [f"{name}={json.dumps(getattr(args, name))}" for name in _FLAGS if getattr(args, name, None) is not None]
    return load_config(EvalConfig, args.config, [*flags, *args.overrides])


def provenance_path(predictions: Path) -> Path:
    """The side-car holding the provenance of a predictions CSV: `X.predictions.json` beside
    `X.predictions.csv` (the report skips `*.predictions.json` when it collects results)."""
    return predictions.with_suffix(".json")


def failures_path(predictions: Path) -> Path:
    """Where the videos that failed in the last run are journaled with their errors: `X.failed.jsonl`."""
    return predictions.with_suffix(".failed.jsonl")


def eval_dtype(requested: str, adapter: Path | None, device: str | None) -> str:
    """The dtype `--dtype` names, with `auto` resolved (see its help)."""
    if requested != "auto":
        return requested
    if adapter is not None:
        # An adapter saved by `synvita train` sits at RUN/checkpoints/step-N/adapter.
        for folder in (Path(adapter), *Path(adapter).parents[:3]):
            if (folder / "resolved.yaml").is_file():
                trained = yaml.safe_load((folder / "resolved.yaml").read_text()).get("mixed_precision")
                if trained in MIXED_PRECISION_DTYPES:
                    return MIXED_PRECISION_DTYPES[trained]
    import torch

    cuda = torch.cuda.is_available() and not (device or "").startswith("cpu")
    return "bfloat16" if cuda else "float32"


def _setup(cfg: EvalConfig, sampler: FrameSampler) -> dict:
    """What must not change between a killed run and its resumption."""
    return {
        "benchmark": cfg.benchmark,
        "model": cfg.model,
        "adapter": cfg.adapter,
        "frames": sampler.num_frames if sampler.kind in ("uniform", "segments") else None,
        "sampler": sampler.describe(),
        "dtype": cfg.dtype,
        "quantization": cfg.quantization,
        "seed": cfg.seed,
    }


def _complete_records(path: Path) -> int:
    """Keep only whole prediction records (a kill can cut the last one); returns how many."""
    text = path.read_text(encoding="utf-8")
    buf, end, count = io.StringIO(text), 0, 0
    for row in csv.reader(buf):
        if len(row) not in (3, 5) or text[buf.tell() - 1] != "\n":
            break
        try:
            float(row[2])
        except ValueError:
            break
        end, count = buf.tell(), count + 1
    if end < len(text):
        warnings.warn(f"{path}: dropped an incomplete last record (the previous run was killed mid-write)")
        atomic_write_text(path, text[:end])
    return count


def _row(video: str, text: str, score: float) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([video, text, repr(score)])
    return buf.getvalue()


def _journal(path: Path, rank: int, processes: int) -> Path:
    """Where process `rank` appends its rows: the predictions file itself when it runs alone."""
    return path if processes == 1 else path.with_name(f"{path.stem}.rank{rank}.csv")


def merge_journals(path: Path, pairs: list[Pair]) -> None:
    """Fold the per-process journals into `path`, rows in the order one process writes them (videos
    by first appearance, each video's captions in order), then delete them."""
    journals = sorted(path.parent.glob(f"{path.stem}.rank*.csv"))
    rows: dict[tuple[str, str], float] = {}
    for f in [p for p in (path, *journals) if p.exists()]:
        _complete_records(f)
        for p in read_predictions(f):
            rows.setdefault((p.video, p.text), p.score)
    first = {}
    for i, p in enumerate(pairs):
        first.setdefault(p.video, i)
    order = dict.fromkeys((p.video, p.text) for p in sorted(pairs, key=lambda p: first[p.video]))
    keys = [k for k in order if k in rows] + [k for k in rows if k not in order]
    atomic_write_text(path, "".join(_row(video, text, rows[video, text]) for video, text in keys))
    for f in journals:
        f.unlink()


def _scored(scorer, encoded: list, failures: Path) -> list[tuple[list[Pair], list[float]]]:
    """(pairs, their scores) of each (pairs of one video, its features) in `encoded`, the videos
    scored together; when that fails, each video alone, so that one bad caption fails its video only."""
    if len(encoded) > 1:
        try:
            scores = scorer.score_each([c for _, c in encoded], [[p.caption for p in ps] for ps, _ in encoded])
            return [(ps, s.tolist()) for (ps, _), s in zip(encoded, scores)]
        except Exception:  # which video failed is found out below, one by one
            pass
    scored = []
    for video_pairs, features in encoded:
        try:
            scored.append((video_pairs, scorer.score_many(features, [p.caption for p in video_pairs]).tolist()))
        except Exception as err:  # one bad caption must not end the evaluation
            record_failure(failures, video_pairs[0].video, err)
    return scored


def score_with_model(cfg: EvalConfig, pairs: list[Pair], path: Path) -> dict | None:
    """Score every (video, caption) not yet in `path`, `videos_per_pass` videos at a time, appending rows
    as they come; under several processes, each scores every N-th video into its own journal.

    Returns, on the main process, the counts of pairs reused from an earlier run and scored now
    (None on the others).
    """
    import torch

    from synvita.data.video import read_clip
    from synvita.models.adapters import load_adapted
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import trained_sampler
    from synvita.models.features import FeatureCache, encode_cached

    # A SLURM array task works alone; the processes of `accelerate launch` wait for one another.
    state = None if cfg.shard else process_state()
    rank, processes = parse_shard(cfg.shard) if cfg.shard else (state.process_index, state.num_processes)
    main = state is not None and state.is_main_process

    def barrier() -> None:
        if state is not None:
            state.wait_for_everyone()

    sampler = trained_sampler(cfg.model, cfg.sampler, cfg.frames, cfg.fps)
    setup = _setup(cfg, sampler)
    sidecar = provenance_path(path)
    if path.exists() or any(path.parent.glob(f"{path.stem}.rank*.csv")):
        earlier = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        changed = {k: (earlier.get(k), v) for k, v in setup.items() if earlier.get(k) != v}
        if changed:
            raise SynvitaError(f"{path} was written by another setup ({changed}, as (then, now)); "
                             "delete it or pass another --predictions to start afresh")
    unique = len({(p.video, p.text) for p in pairs})
    journal = _journal(path, rank, processes)
    barrier()  # every process has read the side-car before it is rewritten
    if main:
        merge_journals(path, pairs)
        failures_path(path).unlink(missing_ok=True)  # this run's failures only: the earlier ones are retried
    elif cfg.shard and journal.exists():
        _complete_records(journal)  # a shard keeps its own journal across kills
    if main or (cfg.shard and not sidecar.exists()):
        atomic_write_text(sidecar, json.dumps(provenance(**setup, pairs=unique), indent=2) + "\n")
    barrier()
    done = {(p.video, p.text) for f in (path, journal) if f.exists() for p in read_predictions(f)}
    # Each video is decoded and encoded once: its captions go to the scorer together.
    todo: dict[str, list[Pair]] = defaultdict(list)
    seen = set(done)
    for p in pairs:
        if (p.video, p.text) not in seen:
            seen.add((p.video, p.text))
            todo[p.video].append(p)
    scored = sum(len(v) for v in todo.values())
    # Every N-th video of the benchmark, so that each share stays put however much is done.
    share = set(split_work(list(dict.fromkeys(p.video for p in pairs)), (rank, processes), (0, 1)))
    mine = [(video, video_pairs) for video, video_pairs in todo.items() if video in share]
    if mine:
        torch.manual_seed(cfg.seed)
        # Each process on its own GPU; on CPU, where transformers puts it anyway.
        device = cfg.device or (str(state.device) if state is not None and state.device.type != "cpu" else None)
        lmm = load_adapted(cfg.model, cfg.adapter, dtype=cfg.dtype, device=device, quantization=cfg.quantization)
        scorer = AlignmentScorer(lmm, sampler, batch_size=cfg.batch_size, videos_per_pass=cfg.videos_per_pass)
        cache = FeatureCache(cfg.feature_cache, scorer) if cfg.feature_cache else None
        with open(journal, "a", encoding="utf-8", newline="") as f, \
                tqdm(total=len(mine), desc=f"{cfg.benchmark}: videos", unit="video", disable=rank != 0) as bar:
            for start in range(0, len(mine), cfg.videos_per_pass):
                group = mine[start:start + cfg.videos_per_pass]
                encoded = []
                for video, video_pairs in group:
                    try:
                        file = locate_video(cfg.video_root, video)
                        (features,) = encode_cached(scorer, cache, [file], lambda _: read_clip(file, sampler))
                        encoded.append((video_pairs, features))
                    except Exception as err:  # one bad video must not end the evaluation
                        record_failure(failures_path(path), video, err)
                for video_pairs, scores in _scored(scorer, encoded, failures_path(path)):
                    for p, score in zip(video_pairs, scores):
                        f.write(_row(p.video, p.text, float(score)))
                f.flush()
                bar.update(len(group))
    barrier()
    if not main:
        return None
    merge_journals(path, pairs)
    written = {(p.video, p.text) for p in read_predictions(path)}
    failed = sum(1 for video_pairs in todo.values() for p in video_pairs if (p.video, p.text) not in written)
    return {"pairs_reused": unique - scored, "pairs_scored": scored - failed, "pairs_failed": failed}


def evaluate(cfg: EvalConfig) -> dict | None:
    """Score (or read) the predictions and compute the benchmark's metrics: the JSON written to `cfg.out`
    (None on the processes other than the main one of a multi-process run)."""
    spec = BENCHMARKS.get(cfg.benchmark)
    pairs = load_pairs(cfg.benchmark, cfg.annotations)
    run_counts = {}
    if cfg.model:
        predictions = cfg.predictions or cfg.out.with_name(f"{cfg.out.stem}.predictions.csv")
        if provenance_path(predictions).resolve() == cfg.out.resolve():
            raise SynvitaError(f"--out {cfg.out} would overwrite the provenance of --predictions {predictions}")
        # Recorded in the provenance resolved, so `auto` never hides what ran.
        cfg = dataclasses.replace(cfg, dtype=eval_dtype(cfg.dtype, cfg.adapter, cfg.device))
        run_counts = score_with_model(cfg, pairs, predictions)
        if run_counts is None:
            if cfg.shard:
                print(f"{cfg.benchmark}: shard {cfg.shard} scored into its journal; run again without "
                      "--shard to merge the shards and compute the metrics")
            return None
    else:
        predictions = cfg.from_predictions
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        joined = join(pairs, read_predictions(predictions), spec.drop_duplicates)
        result = compute(spec, pairs, joined.scores)
    sidecar = provenance_path(predictions)
    # A file scored elsewhere (VideoCon's scripts) has no side-car: record what is known.
    origin = (json.loads(sidecar.read_text()) if sidecar.is_file()
              else provenance(model=None, predictions=str(predictions), pairs=joined.counts["joined_pairs"]))
    for w in caught:
        print(f"warning: {w.message}")
    return {
        "benchmark": cfg.benchmark,
        **{k: v for k, v in result.items() if k != "counts"},
        "counts": {**joined.counts, **result["counts"], **run_counts},
        "warnings": [str(w.message) for w in caught],
        "predictions": str(predictions),
        "annotations": str(cfg.annotations),
        "provenance": origin,
    }


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = evaluate(cfg)
    if out is None:
        return 0
    atomic_write_text(cfg.out, json.dumps(out, indent=2) + "\n")
    numbers = "  ".join(
        f"{k} {v:.2f}" for k, v in out.items() if isinstance(v, float) and not k.endswith("_tie_aware")
    )
    print(f"{cfg.benchmark}: {numbers}  (counts: {out['counts']}) -> {cfg.out}")
    return 0
