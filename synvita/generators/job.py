"""The generation job: one synthetic clip (or N) per negative caption, resumable and shardable.

    accelerate launch generation/generate.py --config generation/configs/<backend>.yaml [key=value ...]
    synvita generate --config ... --shard 3/16        # one job of a SLURM array

Work is the sorted list of (triplet, k) clips, split first by `--shard i/N` (across jobs) and then
across the Accelerate processes of the job. Each clip's seed is `stable_seed(clip id, generator,
base seed)`, so the same clip comes out however the work is split or resumed. Every worker appends
its outcomes to its own journal `RUN/clips.d/<worker>.jsonl` (one flushed line per clip, so a
SIGKILL loses at most the clip in flight); `RUN/clips.jsonl` is the merge of all journals, written
atomically at the end of each run. Clips are written atomically; on restart a clip is skipped only
if its journal says done and the file decodes with the recorded frame count. A failed clip (OOM,
NaN, a clip that does not decode) is journaled with its error and retried by the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from synvita.config import ConfigError, dump_resolved, load_config
from synvita.data.records import (
    MISALIGNMENTS, FieldError, SyntheticClip, Triplet, append_record, id_problem, read_manifest, write_manifest,
)
from synvita.data.video import NEAR_LOSSLESS_CRF
from synvita.errors import failure_message, out_of_memory
from synvita.jobs import (
    add_job_arguments, job_main, job_overrides, journal_path, parse_shard, process_state, read_journals, split_work,
    worker_summary,
)
from synvita.utils import path_within, stable_seed, stale_temp_files

@dataclasses.dataclass
class GenerateConfig:
    output_dir: Path
    backend: str
    input: Path | None = None  # VideoCon CSV or triplet manifest; import mode: optional
    video_root: Path = Path(".")  # VideoCon CSVs: real video paths resolve against it
    # VideoCon's LLM feedback CSV: its explanations (nle) join the triplets, for `data.explanations`.
    explanations: Path | None = None
    generator: str | None = None  # name in the manifest and clips/<generator>/; default: backend
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    splits: list[str] = dataclasses.field(default_factory=list)  # empty: every split
    misalignments: list[str] = dataclasses.field(default_factory=list)  # empty: every type
    limit: int | None = None  # first N triplets after filtering (smoke runs)
    clips_per_caption: int = 1
    seed: int = 0
    batch_size: int = 1
    shard: str = "0/1"
    plugins: list[str] = dataclasses.field(default_factory=list)  # modules registering extra backends
    # libx264 quality of the written clips (`write_video`); 0 lossless, the same pixels on every run
    # (the toy demo), for larger files
    crf: int = NEAR_LOSSLESS_CRF

    def __post_init__(self):
        if self.clips_per_caption < 1 or self.batch_size < 1:
            raise ValueError("clips_per_caption and batch_size must be >= 1")
        unknown = sorted(set(self.misalignments) - set(MISALIGNMENTS))
        if unknown:
            raise ValueError(f"misalignments: {', '.join(unknown)} not among {', '.join(MISALIGNMENTS)}")
        if self.input is None and self.backend != "import":
            raise ValueError("input: a VideoCon CSV or a triplet manifest is required")
        if problem := id_problem(self.generator or self.backend):
            raise ValueError(f"generator: {problem}")
        parse_shard(self.shard)


def read_triplets(path: Path, video_root: Path = Path("."), explanations: Path | None = None) -> list[Triplet]:
    """A triplet manifest (.jsonl) or a VideoCon CSV (LLM or Human format, by header); `explanations`
    joins VideoCon's LLM feedback CSV into an LLM CSV."""
    from synvita.data.videocon import read_human_csv, read_llm_csv

    if path.suffix == ".csv":
        header = ""
        if path.is_file():
            with path.open(encoding="utf-8-sig", errors="replace") as f:  # sniffing only: the reader reports bad bytes
                header = f.readline().strip()
        if "video_url" in header.split(","):
            return read_human_csv(path, video_root)
        return read_llm_csv(path, video_root, feedback=explanations)
    return read_manifest(path, Triplet)


def rebase_videos(triplets: list[Triplet], manifest: Path, run_dir: Path) -> list[Triplet]:
    """The triplets as the run's copy records them: a relative video path means the manifest's own
    folder; it becomes relative to the run if it lies inside it, else absolute."""
    run = Path(os.path.abspath(run_dir))
    rebased = []
    for t in triplets:
        video = Path(os.path.normpath(Path(os.path.abspath(manifest)).parent / t.video))
        rebased.append(dataclasses.replace(t, video=str(video.relative_to(run) if video.is_relative_to(run) else video)))
    return rebased


def select(triplets: list[Triplet], splits, misalignments, limit) -> list[Triplet]:
    chosen = [t for t in triplets if (not splits or t.split in splits)
              and (not misalignments or t.misalignment in misalignments)]
    return chosen[:limit] if limit is not None else chosen


def load_journals(run_dir: Path) -> list[SyntheticClip]:
    """All journaled outcomes of RUN/clips.d, one per clip id, by id (the job layer's merge rule)."""
    return list(read_journals(Path(run_dir) / "clips.d", SyntheticClip, key=lambda r: r.id).values())


def merge_manifest(run_dir: Path) -> list[SyntheticClip]:
    """Rewrite RUN/clips.jsonl from every worker's journal; safe to run any time, by anyone."""
    records = load_journals(run_dir)
    write_manifest(run_dir / "clips.jsonl", records)
    return records


def clip_is_complete(run_dir: Path, rec: SyntheticClip | None) -> bool:
    from synvita.data.video import FrameSampler, VideoError, read_video

    if rec is None or rec.status != "done":
        return False
    try:
        return len(read_video(run_dir / rec.path, FrameSampler("all"))) == rec.num_frames
    except VideoError:
        return False


def get_backend(cfg: GenerateConfig):
    from synvita.generators.backends import BACKENDS

    for module in cfg.plugins:
        importlib.import_module(module)
    return BACKENDS.get(cfg.backend).from_settings(dict(cfg.settings))


def _generate_batch(backend, prompts: list[str], seeds: list[int]) -> tuple[list, list[str | None]]:
    """Clips and per-clip errors for one batch. A batch that runs out of memory is tried once more as two
    halves (a clip depends only on its seed, so the clips are the same) before its clips count as failed."""
    try:
        return backend.generate(prompts, seeds), [None] * len(prompts)
    except Exception as err:  # one bad batch must not end a multi-day job
        if len(prompts) == 1 or not out_of_memory(err):
            return [None] * len(prompts), [failure_message(err)] * len(prompts)
        failure_message(err)  # frees the CUDA cache before the retry
    half = (len(prompts) + 1) // 2
    videos, errors = [], []
    for start in range(0, len(prompts), half):
        part = slice(start, start + half)
        try:
            videos += backend.generate(prompts[part], seeds[part])
            errors += [None] * len(prompts[part])
        except Exception as err:
            videos += [None] * len(prompts[part])
            errors += [f"{failure_message(err)} (retried at batch {half})"] * len(prompts[part])
    return videos, errors


def _write_clip(run_dir: Path, rel: str, frames, fps: float, crf: int) -> int:
    """Write, then decode the file back: a clip counts as done only if it reads back whole."""
    from synvita.data.video import FrameSampler, read_video, write_video

    write_video(run_dir / rel, frames, fps, crf)
    decoded = len(read_video(run_dir / rel, FrameSampler("all")))
    if decoded != len(frames):
        raise RuntimeError(f"{rel}: wrote {len(frames)} frames but {decoded} decode")
    return decoded


def run_generation(cfg: GenerateConfig, process: tuple[int, int] = (0, 1), show_progress: bool = True) -> dict:
    """Generate this worker's clips; returns counts {done, skipped, failed, total}."""
    from tqdm.auto import tqdm

    from synvita.provenance import package_versions

    run_dir = Path(cfg.output_dir)
    generator = cfg.generator or cfg.backend
    triplets = select(read_triplets(Path(cfg.input), cfg.video_root, cfg.explanations), cfg.splits,
                      cfg.misalignments, cfg.limit)
    if not triplets:
        raise ConfigError(f"{cfg.input}: no triplets left after the split/misalignment filters")
    if process[0] == 0:  # identical from every shard: atomic, idempotent
        write_manifest(run_dir / "triplets.jsonl", rebase_videos(triplets, Path(cfg.input), run_dir))

    work = sorted(
        (f"{generator}/{t.id}_{k:03d}", t) for t in triplets for k in range(1, cfg.clips_per_caption + 1))
    mine = split_work(work, parse_shard(cfg.shard), process)
    journal = journal_path(run_dir / "clips.d", cfg.shard, process, prefix=f"{generator}.")
    previous = {r.id: r for r in load_journals(run_dir)}
    counts = dict(done=0, skipped=0, failed=0, total=len(mine))
    todo = []
    for clip_id, triplet in mine:
        rel = f"clips/{clip_id}.mp4"
        target = path_within(run_dir, rel)  # ids are safe already; this guards every write and delete
        # A temporary file left by a killed writer of this clip (no other worker owns this clip).
        for stale in stale_temp_files(target):
            stale.unlink()
        if clip_is_complete(run_dir, previous.get(clip_id)):
            counts["skipped"] += 1
        else:
            todo.append((clip_id, triplet, rel))

    backend = get_backend(cfg) if todo else None
    versions = package_versions()
    settings = {"backend": cfg.backend, **cfg.settings, "fps": backend.fps if backend else None}
    bar = tqdm(total=len(mine), initial=counts["skipped"], desc=f"generate {generator}", unit="clip",
               disable=not show_progress, dynamic_ncols=True)
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start:start + cfg.batch_size]
        seeds = [stable_seed(clip_id, generator, cfg.seed) for clip_id, _, _ in batch]
        began = time.perf_counter()
        videos, errors = _generate_batch(backend, [t.negative for _, t, _ in batch], seeds)
        elapsed = (time.perf_counter() - began) / len(batch)
        for (clip_id, triplet, rel), seed, frames, clip_error in zip(batch, seeds, videos, errors):
            num_frames = None
            if clip_error is None:
                try:
                    num_frames = _write_clip(run_dir, rel, frames, backend.fps, cfg.crf)
                except Exception as err:
                    clip_error = failure_message(err)
            status = "failed" if clip_error else "done"
            append_record(journal, SyntheticClip(
                id=clip_id, triplet_id=triplet.id, caption=triplet.negative, generator=generator, seed=seed,
                path=rel, status=status, settings=settings, num_frames=num_frames, error=clip_error,
                elapsed=round(elapsed, 4), versions=versions))
            counts[status] += 1
            bar.update(1)
            bar.set_postfix(done=counts["done"], skipped=counts["skipped"], failed=counts["failed"])
    bar.close()
    return counts


# ---- importing clips made elsewhere (e.g. the published SynViTA synthetic set) ----

def import_clips(root: Path, run_dir: Path, captions: dict[str, str] | None = None,
                 triplets: list[Triplet] | None = None) -> list[SyntheticClip]:
    """Record the mp4s under `root/<generator>/<clip stem>.mp4` as done clips, in place.

    A clip's prompt comes from `captions` (clip stem -> caption, as in the published captions.json)
    or from the triplet whose id is the stem; the triplet id is the stem either way.
    """
    from synvita.data.video import VideoError, probe_video
    from synvita.provenance import package_versions

    by_id = {t.id: t for t in triplets or []}
    records = []
    for path in sorted(Path(root).glob("*/*.mp4")):
        generator, stem = path.parent.name, path.stem
        caption = (captions or {}).get(stem) or (by_id[stem].negative if stem in by_id else None)
        if caption is None:
            raise ConfigError(f"{path}: no caption for {stem!r} in captions.json or the triplet manifest")
        try:
            num_frames = probe_video(path).num_frames
        except VideoError as err:
            raise ConfigError(str(err)) from None
        try:
            records.append(SyntheticClip(
                id=f"{generator}/{stem}", triplet_id=stem, caption=caption, generator=generator, seed=-1,
                path=str(path.resolve()), status="done", settings={"backend": "import", "root": str(root)},
                num_frames=num_frames, versions=package_versions()))
        except FieldError as err:
            raise ConfigError(f"{path}: {err}; rename the file or its folder") from None
    if not records:
        raise ConfigError(f"{root}: no clips found as <generator>/<name>.mp4")
    journal = run_dir / "clips.d" / "import.jsonl"
    write_manifest(journal, records)
    return records


def _run_import(cfg: GenerateConfig) -> int:
    import json

    root = Path(cfg.settings.get("root") or "")
    if not root.is_dir():
        raise ConfigError("backend 'import': settings.root must be a folder of <generator>/<clip>.mp4")
    captions_file = Path(cfg.settings.get("captions") or root / "captions.json")
    captions = json.loads(captions_file.read_text()) if captions_file.is_file() else None
    triplets = read_triplets(Path(cfg.input), cfg.video_root) if cfg.input else None
    if triplets:
        write_manifest(Path(cfg.output_dir) / "triplets.jsonl",
                       rebase_videos(triplets, Path(cfg.input), Path(cfg.output_dir)))
    records = import_clips(root, Path(cfg.output_dir), captions, triplets)
    merge_manifest(Path(cfg.output_dir))
    print(f"generate: imported {len(records)} clips from {root} -> {Path(cfg.output_dir) / 'clips.jsonl'}")
    return 0


# ---- command line ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, "generation/configs/<backend>.yaml", "output_dir=runs/x settings.steps=20")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(GenerateConfig, args.config, job_overrides(args))
    if cfg.backend == "import":
        return _run_import(cfg)
    state = process_state()
    process = (state.process_index, state.num_processes)
    if state.is_main_process:
        dump_resolved(cfg, Path(cfg.output_dir) / "generate.resolved.yaml")
    counts = run_generation(cfg, process, show_progress=state.is_local_main_process)
    state.wait_for_everyone()
    print(worker_summary("generate", cfg.shard, process, counts, unit="clips"))
    if state.is_main_process:
        records = merge_manifest(Path(cfg.output_dir))
        failed = sum(r.status == "failed" for r in records)
        print(f"generate: manifest {Path(cfg.output_dir) / 'clips.jsonl'}: {len(records) - failed} done, "
              f"{failed} failed (re-run the same command to retry)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("generate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
