"""`synvita entail`: print f(V,t) = P(Yes)/(P(Yes)+P(No)) of one video for each text, one per line."""

from __future__ import annotations

import argparse
import contextlib
import sys

from synvita.data.video import VideoError, read_clip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="hub id or local folder of a supported video LMM")
    parser.add_argument("--video", required=True, help="video file (decoded with PyAV)")
    parser.add_argument("--text", action="append", required=True, help="a description; repeat for several")
    parser.add_argument("--adapter", help="a LoRA adapter: PEFT folder, or VideoCon's Owl-Con layout (file, folder or hub id)")
    parser.add_argument("--frames", type=int,
                        help="frames sampled from the video, as the model family samples them (default: its count)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 or auto (default: cpu)")
    parser.add_argument("--quantization", choices=["4bit", "8bit"], default=None)
    parser.add_argument("--no-prefix-sharing", action="store_true",
                        help="run every (video, text) pair through the whole LLM (slower, same scores)")


def run(args: argparse.Namespace) -> int:
    # Only the scores go to stdout: libraries that log to stdout while loading (deepspeed's
    # accelerator probe) are sent to stderr, so `synvita entail ... > scores.txt` stays clean.
    with contextlib.redirect_stdout(sys.stderr):
        scores = _scores(args)
    if scores is None:
        return 2
    for f in scores.tolist():
        print(f"{f:.6f}")
    return 0


def _scores(args: argparse.Namespace):
    from synvita.models.adapters import AdapterError, load_adapted
    from synvita.models.alignment import AlignmentScorer, VideoTokenMismatchError
    from synvita.models.families import FamilyError, trained_sampler

    try:
        sampler = trained_sampler(args.model, num_frames=args.frames)
        frames = read_clip(args.video, sampler)
        lmm = load_adapted(args.model, args.adapter, dtype=args.dtype, device=args.device,
                           quantization=args.quantization)
        scorer = AlignmentScorer(lmm, sampler, prefix_sharing=not args.no_prefix_sharing)
        return scorer.score_many(frames, args.text)
    except (VideoError, FamilyError, VideoTokenMismatchError, AdapterError, OSError) as err:
        print(f"synvita entail: {err}", file=sys.stderr)
        return None
