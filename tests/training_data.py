"""A small learnable run directory for the training tests: solid-colour clips and colour captions.

Real video "a red square" is red; its negative "a blue square" has a synthetic clip that is blue
(done, scored), so the Yes/No answers are learnable from pixels. Some triplets exercise the
missing/failed-clip rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synvita.data.records import SyntheticClip, Triplet, write_manifest
from synvita.data.video import write_video

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 40)}
SHAPES = ("square", "circle")


def _clip(path: Path, colour: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = np.empty((8, 32, 32, 3), np.uint8)
    frames[:] = COLOURS[colour]
    frames = np.clip(frames.astype(int) + rng.integers(-10, 10, frames.shape), 0, 255).astype(np.uint8)
    write_video(path, frames, fps=8)


def make_run(root: Path, n: int = 8, generators=("gen-a",), real_only: dict | None = None) -> Path:
    """`n` triplets with clips from `generators`; `real_only` maps triplet index -> "failed" |
    "missing file" | "no clip" | "unscored"."""
    real_only = real_only or {}
    names = list(COLOURS)
    triplets, clips, weights = [], [], []
    for i in range(n):
        real, fake = names[i % 4], names[(i + 1 + i // 4) % 4]
        shape = SHAPES[i % 2]
        tid = f"t{i}"
        _clip(root / "videos" / f"{tid}.mp4", real, seed=i)
        triplets.append(Triplet(id=tid, video=f"videos/{tid}.mp4", caption=f"A {real} {shape} moves",
                                negative=f"A {fake} {shape} moves", misalignment="attribute",
                                source="test", split="train", nle=f"The {shape} is {real}, not {fake}."))
        how = real_only.get(i)
        if how == "no clip":
            continue
        for g, gen in enumerate(generators):
            cid = f"{tid}-{gen}"
            rel = f"clips/{gen}/{cid}.mp4"
            if how == "failed":
                clips.append(SyntheticClip(id=cid, triplet_id=tid, caption=f"A {fake} {shape} moves", generator=gen,
                                           seed=i, path=rel, status="failed", error="out of memory"))
                continue
            if how != "missing file":
                _clip(root / rel, fake, seed=100 + i)
            clips.append(SyntheticClip(id=cid, triplet_id=tid, caption=f"A {fake} {shape} moves", generator=gen,
                                       seed=i, path=rel, status="done"))
            if how != "unscored":
                f_target, f_real = 0.9 - 0.1 * g - 0.05 * (i % 3), 0.2 + 0.1 * (i % 2)
                weights.append({"clip_id": cid, "triplet_id": tid, "generator": gen, "misalignment": "attribute",
                                "f_target": f_target, "f_real": f_real, "members": {}, "weights": {}})
    write_manifest(root / "triplets.jsonl", triplets)
    write_manifest(root / "clips.jsonl", clips)
    (root / "weights.jsonl").write_text("".join(json.dumps(w) + "\n" for w in weights))
    return root
