"""Time of `read_clip` / per-frame `VideoFrame.to_ndarray` on the same mp4 files.

    python benchmarks/bench_decode.py [--clips 200] [--frames 8] [--sizes 48 224] [--repeats 3]

For each size, --clips toy-world clips (random scenes in the real style) are written as H.264 mp4
(`write_video`) and decoded two ways:
  read_clip   synvita.data.video.read_clip, all frames sampled (one swscale converter per clip);
  per-frame   the same decode with `frame.to_ndarray(format="rgb24")`, which sets up a converter for
              every frame (what read_clip did before).
Both must give the same pixels. The two take turns and each keeps its best of --repeats runs (wall
time). The toy world's clips are 8 frames of 48x48; evaluation decodes every benchmark clip once per
model, and scoring and training read clips too. One line per size holds the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from synvita.data.video import FrameSampler, read_clip, write_video
from synvita.toyworld.render import REAL, render
from synvita.toyworld.world import random_scene


def per_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def seconds(fn, paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        fn(p)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 224])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    everything = FrameSampler("all")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            paths = [Path(tmp) / f"{size}-{i}.mp4" for i in range(args.clips)]
            for i, p in enumerate(paths):
                write_video(p, render(random_scene(i), REAL, i, args.frames, size), fps=8.0)
            if not all(np.array_equal(read_clip(p, everything).frames, per_frame(p)) for p in paths[:10]):
                raise SystemExit(f"{size}x{size}: read_clip and per-frame to_ndarray decode different pixels")
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(seconds(lambda p: read_clip(p, everything), paths))
                theirs.append(seconds(per_frame, paths))
            ms = lambda t: 1000 * min(t) / args.clips  # noqa: E731
            print(f"{size}x{size}, {args.frames} frames: read_clip {ms(ours):.2f} ms/clip, per-frame to_ndarray "
                  f"{ms(theirs):.2f} ms/clip; read_clip / per-frame = {min(ours) / min(theirs):.2f}x")


if __name__ == "__main__":
    main()
