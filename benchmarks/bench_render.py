"""Time of the toy renderer's textured ("real") background: the cubic zoom as two matrix products
(`render._background`) against scipy's `zoom` on the same draws.

    python benchmarks/bench_render.py [--renders 2000] [--repeats 3]

Every real-style clip draws a 6x6 field of blotches and upsamples it to the frame with a cubic
spline. The base models render a new clip (or a single frame, for the members) at every step, and
`zoom` was most of that: this prints the background alone and whole one-frame and eight-frame
renders, each path keeping its best of --repeats runs (wall time), the two taking turns. Both must
give the same backgrounds (checked first). One line each holds the ratio.
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np
from scipy.ndimage import zoom

from synvita.toyworld import render as toy
from synvita.toyworld.world import random_scene


def zoomed(style: toy.Style, size: int, rng: np.random.Generator) -> np.ndarray:
    """The background as drawn with scipy's zoom on every call (what `_background` did before)."""
    bg = np.full((size, size, 3), style.background, np.float32)
    blotches = rng.normal(0, 1, (6, 6, 1)) + 0.3 * rng.normal(0, 1, (6, 6, 3))
    bg += 22 * zoom(blotches, (size / 6, size / 6, 1), order=3) + rng.normal(0, 6, (size, size, 3))
    return bg


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.renders
    for seed in range(20):
        if not np.array_equal(toy._background(toy.REAL, 50, np.random.default_rng(seed)),
                              zoomed(toy.REAL, 50, np.random.default_rng(seed))):
            raise SystemExit(f"seed {seed}: the matrix upsampling and scipy's zoom draw different backgrounds")
    scenes = [random_scene(f"bench-{i}") for i in range(n)]
    cases = {  # name: (calls, one run of them)
        "background (50x50)": (n, lambda: [toy._background(toy.REAL, 50, np.random.default_rng(i)) for i in range(n)]),
        "render, 1 of 8 frames": (n, lambda: [toy.render(s, toy.REAL, i, 8, 48, pick=[i % 8])
                                              for i, s in enumerate(scenes)]),
        "render, all 8 frames": (n // 4, lambda: [toy.render(s, toy.REAL, i, 8, 48) for i, s in enumerate(scenes[:n // 4])]),
    }
    for name, (count, case) in cases.items():
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(seconds(case))
            with mock.patch.object(toy, "_background", zoomed):
                theirs.append(seconds(case))
        ours, theirs = min(ours), min(theirs)
        print(f"{name}: matrices {1000 * ours / count:.3f} ms, scipy zoom {1000 * theirs / count:.3f} ms; "
              f"matrices / zoom = {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
