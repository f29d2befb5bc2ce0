"""`synvita world --out RUN`: toy-world data files for a run, with no model involved.

Writes RUN/triplets.jsonl (real-style clips under RUN/toy/videos, hard negatives) and, with
`--benchmarks N`, the held-out benchmark files under RUN/benchmarks in the published formats: what
the tiny CPU chain in the README trains and evaluates on (generate -> score -> train -> evaluate -> report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synvita.toyworld.benchmarks import write_benchmarks, write_triplets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--scenes", type=int, default=8, help="training scenes (each gives --negatives triplets)")
    parser.add_argument("--negatives", type=int, default=1, help="hard negatives per training scene")
    parser.add_argument("--benchmarks", type=int, default=0, metavar="N",
                        help="also write the four benchmarks with N clips / questions each (SSv2-Temporal is "
                             "always its 216 clips)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", type=int, default=48, help="frame height and width in pixels")


def run(args: argparse.Namespace) -> int:
    if args.scenes < 1 or args.negatives < 1 or args.benchmarks < 0:
        print("synvita world: --scenes and --negatives must be >= 1, --benchmarks >= 0", file=sys.stderr)
        return 2
    path = write_triplets(args.out, args.scenes, args.negatives, args.frames, args.size)
    print(f"world: {path}")
    if args.benchmarks:
        n = args.benchmarks
        root = write_benchmarks(args.out / "benchmarks", n_llm=n, n_human=n, n_atp=n, frames=args.frames, size=args.size)
        print(f"world: benchmarks in {root} (--annotations and --video-root of `synvita evaluate`)")
    return 0
