"""The training set: triplets joined with their synthetic clips and the clips' weights.

One example per (triplet, usable clip): a negative rendered by three generators gives three
examples. A triplet with no usable clip (none generated, failed, file gone, or unscored) still
trains, on its real video only, with w = 0; `JoinReport` counts why. Relative paths in a manifest
are resolved against the manifest's own folder, as the run-directory layout writes them.

Order and sharding are done here rather than by a sampler, so that the set of triplets in one
optimizer step depends only on the seed, the epoch and the global batch: process k of P takes
micro-batch m of step s from positions s·G·A + m·G + k·B of the epoch's permutation (B per-device
batch, A accumulation steps, G = B·P). 2 processes × 2 and 1 process × 4 see the same triplets,
and resuming at step s needs nothing but s.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from synvita.data.records import MISALIGNMENTS, SyntheticClip, Triplet, WeightRow, read_jsonl, read_manifest
from synvita.data.video import Clip, FrameSampler, VideoError, probe_video, read_clip
from synvita.errors import SynvitaError
from synvita.weights import clip_weight
from synvita.training.config import DataConfig
from synvita.utils import stable_seed


@dataclass(frozen=True)
class Example:
    triplet: Triplet
    video: Path
    clip: SyntheticClip | None = None
    clip_path: Path | None = None
    w: float = 0.0


@dataclass
class JoinReport:
    triplets: int = 0
    examples: int = 0
    with_clip: int = 0
    real_only: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.real_only.items())) or "none"
        return (f"{self.triplets} triplets -> {self.examples} examples ({self.with_clip} with a synthetic clip); "
                f"trained real-only: {sum(self.real_only.values())} triplets ({reasons})")


def _resolve(base: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _readable(path: Path) -> bool:
    """Probed once at load (packets only, no decoding), so a bad clip trains real-only instead of
    stopping the run when its batch comes."""
    try:
        probe_video(path)
    except VideoError:
        return False
    return True


def load_examples(cfg: DataConfig, weighting: str) -> tuple[list[Example], JoinReport]:
    for kind in cfg.misalignments or ():
        if kind not in MISALIGNMENTS:
            raise SynvitaError(f"data.misalignments: {kind!r} is not one of {', '.join(MISALIGNMENTS)}")
    triplets = [
        t for t in read_manifest(cfg.triplets, Triplet)
        if (cfg.split is None or t.split == cfg.split)
        and (cfg.misalignments is None or t.misalignment in cfg.misalignments)
    ]
    if not triplets:
        raise SynvitaError(f"{cfg.triplets}: no triplets left after split={cfg.split!r}, "
                           f"misalignments={cfg.misalignments}")
    if cfg.explanations and not any(t.nle for t in triplets):
        raise SynvitaError(f"data.explanations: no triplet in {cfg.triplets} (split={cfg.split!r}) has an explanation "
                           "(field nle): import VideoCon's LLM feedback CSV (column nle) with the generation "
                           "config's `explanations: videocon_llm_feedback.csv`, or set data.explanations=false")
    clips_by_triplet: dict[str, list[SyntheticClip]] = {}
    weights: dict[str, float] = {}  # clip id -> w
    if cfg.clips is not None:
        clips = read_manifest(cfg.clips, SyntheticClip)
        known = {c.generator for c in clips}
        unknown = [g for g in cfg.generators or () if not fnmatch.filter(known, g)]
        if unknown:
            raise SynvitaError(f"data.generators: {unknown} match no generator in {cfg.clips} (it has {sorted(known)})")
        for c in clips:
            if cfg.generators is None or any(fnmatch.fnmatchcase(c.generator, g) for g in cfg.generators):
                clips_by_triplet.setdefault(c.triplet_id, []).append(c)
        if cfg.weights is not None:
            # A clip without a real caption (f_real null) has no weight: it counts as unscored.
            weights = {r.clip_id: w for r in read_manifest(cfg.weights, WeightRow)
                       if (w := clip_weight(r, weighting)) is not None}

    report = JoinReport(triplets=len(triplets))
    examples = []
    base = Path(cfg.triplets).parent
    clip_base = Path(cfg.clips).parent if cfg.clips is not None else base
    for t in triplets:
        video = _resolve(base, t.video)
        usable, why = [], "no clip"
        for c in clips_by_triplet.get(t.id, []):
            path = _resolve(clip_base, c.path)
            if not t.rendered_by(c):
                why = "clip caption is not the negative"
            elif c.status != "done":
                why = "failed"
            elif not path.is_file():
                why = "clip file missing"
            elif cfg.weights is not None and c.id not in weights:
                why = "unscored"
            elif not _readable(path):
                why = "clip unreadable"
            else:
                usable.append(Example(t, video, c, path, 1.0 if cfg.weights is None else weights[c.id]))
        if cfg.clips is not None and not usable:
            report.real_only[why] += 1
        examples += usable or [Example(t, video)]
    report.examples = len(examples)
    report.with_clip = sum(e.clip is not None for e in examples)
    return examples, report


def check_captions(examples: list[Example], split_caption, triplets: Path) -> None:
    """Probe every caption and negative once, before training, with the model's prompt splitter
    (`split_caption(text)` raises ValueError for a caption the model cannot score); the bad ones
    are reported at `file:line`, so no run dies mid-epoch on one."""
    lines = {obj.get("id"): lineno for lineno, obj in read_jsonl(triplets) if isinstance(obj, dict)}
    problems, seen = [], set()
    for t in (e.triplet for e in examples):
        for field_name, text in (("caption", t.caption), ("negative", t.negative)):
            if (t.id, field_name) in seen:
                continue
            seen.add((t.id, field_name))
            try:
                split_caption(text)
            except ValueError as err:
                problems.append(f"{triplets}:{lines.get(t.id, '?')}: {field_name}: {err}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise SynvitaError("; ".join(problems[:5]) + more)


def shard_positions(n: int, *, epoch: int, seed: int, batch: int, accum: int, processes: int,
                    rank: int, start_step: int = 0) -> list[list[int]]:
    """This process's micro-batches (lists of example indices) for one epoch, from `start_step` on.

    Incomplete global batches at the end of the epoch are dropped, so every process takes the same
    number of steps and every step has the full denominator.
    """
    steps = steps_per_epoch(n, batch=batch, accum=accum, processes=processes)
    per_step = batch * accum * processes
    order = torch.randperm(n, generator=torch.Generator().manual_seed(stable_seed("epoch", seed, epoch))).tolist()
    micro = []
    for s in range(start_step, steps):
        for m in range(accum):
            at = s * per_step + m * batch * processes + rank * batch
            micro.append(order[at:at + batch])
    return micro


def steps_per_epoch(n: int, *, batch: int, accum: int, processes: int) -> int:
    per_step = batch * accum * processes
    if n < per_step:
        raise SynvitaError(f"{n} examples do not fill one optimizer step of {per_step} "
                         f"(batch {batch} x accumulation {accum} x {processes} processes)")
    return n // per_step


class DecodedExamples(torch.utils.data.Dataset):
    """Examples with their frames decoded (so DataLoader workers overlap decoding with compute).

    A video whose frames are not needed, by `skip(path)` (its features are cached), gets None.
    """

    def __init__(self, examples: list[Example], sampler: FrameSampler, skip: Callable[[Path], bool] | None = None):
        self.examples = examples
        self.sampler = sampler
        self.skip = skip

    def __len__(self) -> int:
        return len(self.examples)

    def _decoded(self, path: Path | None) -> Clip | None:
        if path is None or (self.skip is not None and self.skip(path)):
            return None
        return read_clip(path, self.sampler)

    def __getitem__(self, i: int) -> tuple[Example, Clip | None, Clip | None]:
        e = self.examples[i]
        return e, self._decoded(e.video), self._decoded(e.clip_path)
