"""python benchmarks/bench_vqascore.py [--clips DIR] [--frames 4]

VQAScore ensemble throughput: 3 tiny members (LLaVA-1.5, InstructBLIP-T5, Qwen2-VL image mode),
K uniform frames, 2 captions per clip. The ensemble decodes each clip once and scores frames x
captions in batched forwards, by default running each decoder-only member's prompt up to the caption
once per frame (prefix sharing; also timed without); the naive loop scores one (frame, caption) pair per call and decodes
the clip for every call, as per-pair VQAScore scripts do. Clips: the real synthetic samples in
../shared/data/synvita-samples when present, else clips of CogVideoX's size written here.
Target: ensemble >= 4x naive.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from synvita.data.video import FrameSampler, read_video, write_video
from synvita.scoring.ensemble import member_scores, sample_frames
from synvita.scoring.members import MemberSpec, load_member

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "synvita-samples"
CAPTIONS = ["a man is trimming the bottom of a palm tree and then climbs it",
            "a man climbs a palm tree and then trims its bottom"]


def synthetic_clips(folder: Path, n: int = 6) -> list[Path]:
    """Smooth moving gradients, 49 frames of 480x720 (CogVideoX's output), H.264 like the real ones."""
    yy, xx = np.mgrid[0:480, 0:720]
    paths = []
    for i in range(n):
        frames = np.stack([np.stack([(xx + 7 * t + 40 * i) % 256, (yy + 3 * t) % 256, (xx + yy + i * 30) % 256], -1)
                           for t in range(49)]).astype(np.uint8)
        paths.append(folder / f"clip{i}.mp4")
        write_video(paths[-1], frames, fps=8)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=SAMPLES if SAMPLES.is_dir() else None)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = sorted(args.clips.glob("**/*.mp4")) if args.clips else synthetic_clips(Path(tmp))
        specs = [MemberSpec("llava", "llava-1.5", "tiny:llava-1.5", batch_size=8),
                 MemberSpec("instructblip", "instructblip", "tiny:instructblip", batch_size=8),
                 MemberSpec("qwen2-vl", "qwen2-vl", "tiny:qwen2-vl-image", batch_size=8)]
        members = [load_member(s, cache_dir=Path(tmp) / "tiny") for s in specs]
        plain = [load_member(dataclasses.replace(s, prefix_sharing=False), cache_dir=Path(tmp) / "tiny") for s in specs]
        sampler = FrameSampler("uniform", args.frames)
        pairs = len(clips) * len(members) * args.frames * len(CAPTIONS)

        # Warm both paths once (first-call allocations, thread pools).
        member_scores(members, sample_frames(clips[0], sampler)[1], CAPTIONS)

        start = time.perf_counter()
        fast = [member_scores(members, sample_frames(c, sampler)[1], CAPTIONS) for c in clips]
        t_fast = time.perf_counter() - start

        start = time.perf_counter()
        batched = [member_scores(plain, sample_frames(c, sampler)[1], CAPTIONS) for c in clips]
        t_batched = time.perf_counter() - start

        start = time.perf_counter()
        slow = []
        for clip in clips:
            per = {}
            for m in plain:
                grid = np.zeros((args.frames, len(CAPTIONS)))
                for f in range(args.frames):
                    for j, caption in enumerate(CAPTIONS):
                        frame = read_video(clip, sampler)[f]  # decoded again for every pair
                        grid[f, j] = float(m.p_yes([frame], [caption])[0, 0])
                per[m.name] = grid
            slow.append(per)
        t_slow = time.perf_counter() - start

    worst = max(max(np.abs(fast[i][m].numpy() - slow[i][m]).max(), np.abs(batched[i][m].numpy() - slow[i][m]).max())
                for i in range(len(clips)) for m in fast[i])
    print(f"clips: {len(clips)} ({'real samples' if args.clips else 'synthetic 49x480x720'}), "
          f"members: {len(members)}, frames: {args.frames}, captions: {len(CAPTIONS)} -> {pairs} (frame, caption) pairs")
    print(f"naive (one pair per call, decode per call): {t_slow:.2f} s, {pairs / t_slow:.1f} pairs/s")
    print(f"ensemble, no prefix sharing:               {t_batched:.2f} s, {pairs / t_batched:.1f} pairs/s")
    print(f"ensemble (decode once, batched, shared):   {t_fast:.2f} s, {pairs / t_fast:.1f} pairs/s")
    print(f"max |difference| between the two: {worst:.2e}")
    print(f"speedup ensemble / naive: {t_slow / t_fast:.2f}x (target >= 4x)")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
