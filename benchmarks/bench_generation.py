"""Time of the generation job / a bare pipeline call on the same prompts and seeds.

    python benchmarks/bench_generation.py [--steps 300] [--repeats 3] [--threads 1]

The tiny random-weight CogVideoX (`synvita tiny --kind cogvideox`, 16x16, 9 frames) makes the clips of
generation/configs/tiny_cogvideox.yaml (2 per train triplet of tests/data/tiny_triplets.jsonl) two ways:
  job   `synvita generate` through its library entry point (synvita.generators.job.main) into a fresh
        run folder: config, pipeline load, one batch per clip, each clip written and decoded back,
        journal lines, resolved config and merged manifest;
  bare  DiffusionPipeline.from_pretrained on the same folder, then one pipeline call per clip with the
        job's prompt, seed and call settings, frames kept in memory.
--steps inference steps make the pipeline dominate, as it does with real models (50 steps of seconds
each). The two modes take turns and each keeps its best of --repeats runs, in wall time and in this
process's CPU time (which the load of other processes on a shared machine does not enter).
Target (issue 18): job / bare <= 1.05. The last line holds the wall-time ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline

from synvita.config import load_config
from synvita.data.records import SyntheticClip, read_manifest
from synvita.data.video import FrameSampler, read_video
from synvita.generators import job
from synvita.generators.backends import to_uint8
from synvita.tiny import materialize

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "generation" / "configs" / "tiny_cogvideox.yaml"
TRIPLETS = REPO / "tests" / "data" / "tiny_triplets.jsonl"


def run_job(overrides: list[str], run_dir: Path) -> None:
    # The job's summary lines would bury the benchmark's own output.
    with contextlib.redirect_stdout(io.StringIO()):
        code = job.main(["--config", str(CONFIG), f"output_dir={run_dir}", *overrides])
    if code:
        raise RuntimeError(f"the generation job exited with {code}")


def run_bare(model_dir: str, settings: dict, clips: list[SyntheticClip]) -> list[np.ndarray]:
    pipe = DiffusionPipeline.from_pretrained(model_dir, dtype=getattr(torch, settings["dtype"]))
    pipe.set_progress_bar_config(disable=True)
    return [pipe(prompt=[clip.caption], negative_prompt=[settings["negative_prompt"]],
                 num_inference_steps=settings["steps"], guidance_scale=settings["guidance"],
                 height=settings["height"], width=settings["width"], num_frames=settings["num_frames"],
                 max_sequence_length=settings["max_sequence_length"], output_type="np",
                 generator=[torch.Generator().manual_seed(clip.seed)]).frames[0]
            for clip in clips]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--steps", type=int, default=300, help="inference steps per clip")
    cli.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    # One thread by default: on a machine shared with other jobs, 2 OpenMP threads oversubscribe the cores.
    cli.add_argument("--threads", type=int, default=1)
    args = cli.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overrides = [f"input={TRIPLETS}", f"settings.cache_dir={tmp / 'tiny'}", f"settings.steps={args.steps}"]
        settings = load_config(job.GenerateConfig, CONFIG, overrides).settings
        # Warm-up: builds the tiny pipeline into the cache, and its journal gives the prompts and seeds.
        run_job(overrides, tmp / "warm-up")
        clips = read_manifest(tmp / "warm-up" / "clips.jsonl", SyntheticClip)
        model_dir = materialize(settings["model"], tmp / "tiny")
        print(f"pipeline: tiny CogVideoX, {settings['num_frames']} frames of {settings['height']}x{settings['width']}, "
              f"{args.steps} steps; {len(clips)} clips; torch threads {torch.get_num_threads()}")

        runs = {"job": lambda i: run_job(overrides, tmp / f"run{i}"),
                "bare": lambda i: run_bare(model_dir, settings, clips)}
        seconds, cpu_seconds, results = {name: [] for name in runs}, {name: [] for name in runs}, {}
        # Modes take turns, so a burst of load from other jobs on a shared machine does not land on one mode only.
        for i in range(args.repeats):
            for name, run in runs.items():
                start, cpu = time.perf_counter(), time.process_time()
                results[name] = run(i)
                seconds[name].append(time.perf_counter() - start)
                cpu_seconds[name].append(time.process_time() - cpu)
        written = [read_video(tmp / "run0" / clip.path, FrameSampler("all")) for clip in clips]

    # The job's clips went through H.264, so they match the bare frames only up to compression;
    # another clip's frames, from another prompt or seed, are far further off.
    bare_frames = [to_uint8(b, "bare").astype(int) for b in results["bare"]]
    error = np.array([[np.abs(w.astype(int) - b).mean() for b in bare_frames] for w in written])
    others = error[~np.eye(len(error), dtype=bool)]
    for name, t in seconds.items():
        print(f"{name:4s} best {min(t):6.2f} s wall, {min(cpu_seconds[name]):6.2f} s CPU  "
              f"(wall of each run: {', '.join(f'{x:.2f}' for x in t)})")
    print(f"mean |job clip - bare clip| of 255: same prompt and seed <= {error.diagonal().max():.1f}, "
          f"another clip >= {others.min():.1f} (the job's clips went through H.264)")
    print(f"CPU time of this process, job / bare = {min(cpu_seconds['job']) / min(cpu_seconds['bare']):.2f}x "
          "(other processes' load does not enter it)")
    print(f"generation job / bare pipeline = {min(seconds['job']) / min(seconds['bare']):.2f}x")


if __name__ == "__main__":
    main()
