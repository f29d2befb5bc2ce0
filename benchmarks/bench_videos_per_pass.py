"""Time to score videos against their captions with one video per LLM pass against several
(`AlignmentScorer(videos_per_pass=N)`, `synvita evaluate --videos-per-pass N`).

    python benchmarks/bench_videos_per_pass.py [--videos 240] [--per-pass 1 4 8 16] [--repeats 3]

The toy world's LMM (`synvita tiny --size toy`, random weights: 8 frames x 17 = 136 video tokens)
scores --videos clips with 2, 3 or 5 captions each, as the toy VideoCon-Human, VideoCon-LLM and
ATP-Hard ask, vision features encoded beforehand (the demo's feature cache). One torch thread; each
setting keeps its best of --repeats runs, the settings taking turns. Scores must agree with one video
per pass to 1e-5. A model this small spends most of a one-video pass on per-call overhead, which
several videos per pass share; a 7B model's prefix already fills the device.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synvita.models.alignment import AlignmentScorer
from synvita.models.families import load_video_lmm
from synvita.tiny import build_tiny
from synvita.toyworld.grammar import caption
from synvita.toyworld.world import random_scene


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--videos", type=int, default=240)
    cli.add_argument("--per-pass", type=int, nargs="+", default=[1, 4, 8, 16])
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        lmm = load_video_lmm(build_tiny("video-llava", Path(tmp) / "lmm", seed=0, size="toy"))
    clips = [rng.integers(0, 256, (8, 48, 48, 3), dtype=np.uint8) for _ in range(args.videos)]
    texts = [[caption(random_scene(f"bench-{i}-{j}")) for j in range((2, 3, 5)[i % 3])] for i in range(args.videos)]
    features = AlignmentScorer(lmm).encode(clips)
    best, scores = {}, {}
    for _ in range(args.repeats):
        for n in args.per_pass:
            scorer = AlignmentScorer(lmm, videos_per_pass=n)
            start = time.perf_counter()
            scores[n] = torch.cat(scorer.score_each(features, texts))
            best[n] = min(best.get(n, np.inf), time.perf_counter() - start)
    one = min(args.per_pass)
    print(f"{args.videos} videos, {sum(map(len, texts))} pairs, one torch thread; best of {args.repeats}")
    for n in args.per_pass:
        gap = float((scores[n] - scores[one]).abs().max())
        print(f"{n:3d} videos per pass: {best[n]:6.2f} s  ({best[n] / best[one]:.2f}x one per pass; "
              f"max |f - f_one| {gap:.1e})")
        if gap > 1e-5:
            raise SystemExit(f"{n} videos per pass score differently from one per pass")


if __name__ == "__main__":
    main()
