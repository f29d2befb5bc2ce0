"""The scoring job: VQAScore ensemble f̄ of every synthetic clip against t^s and t^r, and weights.

    accelerate launch generation/score.py --config generation/configs/score_<name>.yaml [key=value ...]
    synvita score --config ... --shard 3/16

Each clip is decoded once (K uniform frames, default 4); the frames serve every member and both
captions, and each member scores frames x captions in batched forwards. Per-frame P(Yes) of every
(clip, member, caption) is journaled to `RUN/scores.d/<worker>.jsonl` as it is computed: that is the
cache, so an interrupted run, or a run with a new member, computes only the rows that are missing
(and loads only the members that still have work). At the end the main process merges the journals
into `scores.jsonl`, writes `weights.jsonl` (all weighting strategies) and the diagnostics
`score_summary.json` of f̄(V^s,t^s) - f̄(V^s,t^r) per misalignment type x generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from synvita.config import ConfigError, dump_resolved, load_config
from synvita.data.records import (
    ScoreRow, SyntheticClip, Triplet, WeightRow, append_record, read_manifest, write_manifest,
)
from synvita.data.video import FrameSampler
from synvita.errors import one_line
from synvita.jobs import (
    add_job_arguments, job_main, job_overrides, journal_path, parse_shard, process_state, read_journals,
    record_failure, split_work, worker_summary,
)
from synvita.scoring.ensemble import ensemble_mean, member_means, sample_frames
from synvita.scoring.members import MemberSpec, load_member
from synvita.utils import atomic_write_text
from synvita.weights import with_weights


@dataclasses.dataclass
class ScoreConfig:
    run_dir: Path
    members: list[MemberSpec]
    clips: Path | None = None  # default: the generation journals RUN/clips.d, else RUN/clips.jsonl
    triplets: Path | None = None  # default RUN/triplets.jsonl (source of t^r and misalignment)
    frames: int = 4
    generators: list[str] = dataclasses.field(default_factory=list)  # empty: every generator
    shard: str = "0/1"
    device: str | None = None  # default: this process's Accelerate device
    cache_dir: Path | None = None  # where `tiny:<kind>` members are built

    def __post_init__(self):
        if not self.members:
            raise ValueError("members: the ensemble needs at least one member")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"members: names must be unique, got {names}")
        if self.frames < 1:
            raise ValueError("frames must be >= 1")
        parse_shard(self.shard)


def load_inputs(cfg: ScoreConfig) -> tuple[list[SyntheticClip], dict[str, Triplet]]:
    run = Path(cfg.run_dir)
    # The generation journals are the record; clips.jsonl may predate the last shard's merge.
    clips = (read_manifest(cfg.clips, SyntheticClip) if cfg.clips
             else list(read_journals(run / "clips.d", SyntheticClip, key=lambda c: c.id).values()))
    if not clips and (run / "clips.jsonl").is_file():
        clips = read_manifest(run / "clips.jsonl", SyntheticClip)
    clips = [c for c in clips if c.status == "done" and (not cfg.generators or c.generator in cfg.generators)]
    if not clips:
        raise ConfigError(f"{run}: no done clips to score (looked in clips.d/ and clips.jsonl"
                          f"{', generators ' + ', '.join(cfg.generators) if cfg.generators else ''})")
    if cfg.triplets is not None and not cfg.triplets.is_file():
        # Else a mistyped path scores every clip unpaired, over a good weights.jsonl.
        raise ConfigError(f"triplets: {cfg.triplets} does not exist")
    triplets_path = cfg.triplets or run / "triplets.jsonl"
    triplets = {t.id: t for t in read_manifest(triplets_path, Triplet)} if triplets_path.is_file() else {}
    return sorted(clips, key=lambda c: c.id), triplets


def captions_of(clip: SyntheticClip, triplets: dict[str, Triplet]) -> dict[str, str]:
    """role -> caption; clips without a triplet (imported ones), or made for another caption than its
    negative, have no real caption."""
    roles = {"target": clip.caption}
    if clip.triplet_id in triplets and triplets[clip.triplet_id].rendered_by(clip):
        roles["real"] = triplets[clip.triplet_id].caption
    return roles


def read_rows(run_dir: Path) -> dict[tuple[str, str, str], ScoreRow]:
    """(clip, member, role) -> row, from every worker's journal."""
    return read_journals(Path(run_dir) / "scores.d", ScoreRow, key=lambda r: (r.clip_id, r.member, r.role))


def _is_cached(rows, clip_id, member, roles: dict[str, str], frames: int) -> bool:
    return all((row := rows.get((clip_id, member, role))) is not None and row.caption == caption
               and len(row.frames) == frames for role, caption in roles.items())


def run_scoring(cfg: ScoreConfig, process: tuple[int, int] = (0, 1), device=None, show_progress=True) -> dict:
    """Score this worker's clips; returns counts {scored, cached, failed, total, decodes}.
    A clip that fails (it does not decode, a caption a member cannot take) is journaled in
    RUN/failed.d/ with its error and left out; the job goes on, and the next run tries it again."""
    from tqdm.auto import tqdm

    run = Path(cfg.run_dir)
    clips, triplets = load_inputs(cfg)
    mine = split_work(clips, parse_shard(cfg.shard), process)
    rows = read_rows(run)
    journal = journal_path(run / "scores.d", cfg.shard, process)
    failures = journal_path(run / "failed.d", cfg.shard, process, prefix="score.")
    failures.unlink(missing_ok=True)  # this run's failures only: the earlier ones are retried
    sampler = FrameSampler("uniform", num_frames=cfg.frames)
    loaded = {}
    counts = dict(scored=0, cached=0, failed=0, total=len(mine), decodes=0)
    bar = tqdm(mine, desc="score", unit="clip", disable=not show_progress, dynamic_ncols=True)
    for clip in bar:
        roles = captions_of(clip, triplets)
        todo = [m for m in cfg.members if not _is_cached(rows, clip.id, m.name, roles, cfg.frames)]
        if not todo:
            counts["cached"] += 1
            continue
        counts["decodes"] += 1
        for spec in todo:
            if spec.name not in loaded:
                loaded[spec.name] = load_member(spec, device or cfg.device or "cpu", cfg.cache_dir)
        try:
            indices, frames = sample_frames(run / clip.path, sampler)
            p_yes = {spec.name: loaded[spec.name].p_yes(list(frames), list(roles.values())) for spec in todo}
        except Exception as err:  # one bad clip or caption must not end the job, nor every rerun
            counts["failed"] += 1
            record_failure(failures, clip.id, err)
            bar.write(f"score: {clip.id} failed, left out: {one_line(err)}")
            continue
        for spec in todo:
            p = p_yes[spec.name]
            for j, (role, caption) in enumerate(roles.items()):
                append_record(journal, ScoreRow(clip_id=clip.id, member=spec.name, role=role, caption=caption,
                                                frames=indices, p_yes=[float(x) for x in p[:, j]]))
        counts["scored"] += 1
    return counts


def ensemble_rows(cfg: ScoreConfig) -> list[WeightRow]:
    """One weights.jsonl record per clip scored by every member (f̄ = mean of members' frame means)."""
    clips, triplets = load_inputs(cfg)
    rows = read_rows(cfg.run_dir)
    out = []
    for clip in clips:
        roles = captions_of(clip, triplets)
        if not all(_is_cached(rows, clip.id, m.name, roles, cfg.frames) for m in cfg.members):
            continue
        # (frames, captions) per member, in float64 as the journals hold them
        per_member = {m.name: torch.tensor([rows[clip.id, m.name, role].p_yes for role in roles],
                                           dtype=torch.float64).T for m in cfg.members}
        members = {name: dict(zip(roles, p.tolist())) for name, p in member_means(per_member).items()}
        f = dict(zip(roles, ensemble_mean(per_member).tolist()))
        triplet = triplets.get(clip.triplet_id)
        out.append(with_weights(WeightRow(
            clip_id=clip.id, triplet_id=clip.triplet_id, generator=clip.generator,
            misalignment=triplet.misalignment if triplet else None, f_target=f["target"], f_real=f.get("real"),
            members=members)))
    return out


def summarize(records: list[WeightRow]) -> list[dict]:
    """Per misalignment x generator (and 'all'): mean, quartiles, share < 0 of f_target - f_real."""
    groups = defaultdict(list)
    for r in records:
        if r.gap is None:
            continue
        for key in ((r.misalignment or "unknown", r.generator), ("all", r.generator), ("all", "all")):
            groups[key].append(r.gap)
    summary = []
    for (mis, gen), values in sorted(groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        v = np.asarray(values)
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        summary.append(dict(misalignment=mis, generator=gen, n=len(v), mean=float(v.mean()), q25=float(q25),
                            q50=float(q50), q75=float(q75), share_below_zero=float((v < 0).mean())))
    return summary


def format_table(summary: list[dict]) -> str:
    head = f"{'misalignment':<14}{'generator':<16}{'n':>6}{'mean':>9}{'q25':>9}{'q50':>9}{'q75':>9}{'<0':>7}"
    lines = ["f̄(V^s,t^s) - f̄(V^s,t^r)", head]
    for s in summary:
        lines.append(f"{s['misalignment']:<14}{s['generator']:<16}{s['n']:>6}{s['mean']:>9.4f}{s['q25']:>9.4f}"
                     f"{s['q50']:>9.4f}{s['q75']:>9.4f}{s['share_below_zero']:>7.0%}")
    return "\n".join(lines)


def finalize(cfg: ScoreConfig) -> tuple[list[WeightRow], list[dict]]:
    """Merge the journals into scores.jsonl and write weights.jsonl and score_summary.json."""
    run = Path(cfg.run_dir)
    rows = read_rows(run)
    write_manifest(run / "scores.jsonl", [rows[k] for k in sorted(rows)])
    records = ensemble_rows(cfg)
    write_manifest(run / "weights.jsonl", records)
    summary = summarize(records)
    meta = dict(members=[m.name for m in cfg.members], frames=FrameSampler("uniform", cfg.frames).describe(),
                clips=len(records), statistic="f_target - f_real")
    atomic_write_text(run / "score_summary.json", json.dumps({**meta, "groups": summary}, indent=2) + "\n")
    return records, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, "generation/configs/score_<name>.yaml", "run_dir=runs/x frames=8")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(ScoreConfig, args.config, job_overrides(args))
    state = process_state()
    process = (state.process_index, state.num_processes)
    if state.is_main_process:
        dump_resolved(cfg, Path(cfg.run_dir) / "score.resolved.yaml")
    counts = run_scoring(cfg, process, device=cfg.device or state.device, show_progress=state.is_local_main_process)
    print(worker_summary("score", cfg.shard, process, counts, ("scored", "cached", "failed"), unit="clips"))
    state.wait_for_everyone()
    if state.is_main_process:
        records, summary = finalize(cfg)
        print(format_table(summary))
        print(f"score: {len(records)} clips in {Path(cfg.run_dir) / 'weights.jsonl'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("score", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
