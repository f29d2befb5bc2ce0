"""`synvita doctor MODEL [--no-weights]`: check a checkpoint's real tokenizer, processor and model
against what the scorer assumes, before a long job.

It prints the exact prompt (the video placeholder run shown with its count), the Yes/No token ids,
the video tokens of a clip at the configured frames and size, whether prefix sharing is active,
and for M-RoPE families the temporal positions of the clip's frames; it exits 1 on any
inconsistency it can see: video tokens that do not match the vision features, constant temporal
positions (frames without their frame rate), a caption tail that does not split cleanly from the
prompt. `--no-weights` loads only the tokenizer, processor and config.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from synvita.data.video import Clip

# Captions whose tails the scorer must cut from the whole prompt's tokens: a plain one must share the
# whole prefix; the others are the cases tokenizers treat differently inside a prompt.
PLAIN_CAPTION = "a man opens a door"
EDGE_CAPTIONS = ('"quoted" words', " a leading space", "café naïve 日本語")


@dataclass
class Diagnosis:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def say(self, label: str, value) -> None:
        self.lines.append(f"{label + ':':<24}{value}")


def _shown(tokenizer, ids: list[int], video_id: int) -> str:
    """The decoded prompt with each run of video tokens written once with its count."""
    parts = []
    for is_video, run in itertools.groupby(ids, key=lambda i: i == video_id):
        run = list(run)
        parts.append(f"{tokenizer.convert_ids_to_tokens(video_id)}×{len(run)}" if is_video else tokenizer.decode(run))
    return "".join(parts)


def _rope_model(config):
    """The model skeleton on the meta device: M-RoPE positions need its code and config, not weights."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def diagnose(lmm, clip: Clip | np.ndarray, config=None) -> Diagnosis:
    """Check `lmm` (a `VideoLMM`; `model` None for a weights-free check, then `config` is needed) on
    one `clip`. A bare frame array stands for frames passed without their rate."""
    from synvita.models.alignment import AlignmentScorer, CaptionSplitter, VideoTokenMismatchError

    out = Diagnosis()
    tok, video_id = lmm.tokenizer, lmm.video_token_id
    split = CaptionSplitter(lmm)
    frames = getattr(clip, "frames", clip)
    rate = f"{clip.fps:g} fps" if isinstance(clip, Clip) else "no frame rate (processor default)"
    out.say("model", f"{lmm.source} (family {lmm.family.name}, "
                     f"{'weights loaded' if lmm.model is not None else 'tokenizer/processor only'})")
    out.say("clip", f"{len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}, {rate}")
    inputs = lmm.processor(text=[split.prefix_text + PLAIN_CAPTION + split.suffix_text],
                           **lmm.video_inputs([clip]), return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    tokens = ids.count(video_id)
    out.say("prompt", repr(_shown(tok, ids, video_id)))
    for word, answer_ids in (("Yes", lmm.yes_ids), ("No", lmm.no_ids)):
        out.say(f"{word} ids", f"{answer_ids} {tok.convert_ids_to_tokens(answer_ids)}")
    out.say("video tokens per clip", tokens)

    if lmm.model is not None:
        try:
            features = AlignmentScorer(lmm).encode([clip])[0].features.shape[0]
            out.say("video features", f"{features} (match)")
        except VideoTokenMismatchError as err:
            out.say("video features", "MISMATCH")
            out.problems.append(str(err))
    elif "video_grid_thw" in inputs:
        merge = lmm.processor.video_processor.merge_size
        expected = int(inputs["video_grid_thw"].prod(-1).sum()) // merge ** 2
        out.say("video features", f"{expected} from the processor's grid (weights not loaded)")
        if expected != tokens:
            out.problems.append(f"the prompt holds {tokens} video tokens but the processor's grid gives {expected}")
    else:
        out.say("video features", "not checked without weights")

    splits = {}
    for caption in (PLAIN_CAPTION, *EDGE_CAPTIONS):
        try:
            splits[caption] = split(caption)[2]
        except ValueError as err:
            out.problems.append(str(err))
    out.say("caption split", ", ".join(f"{c!r}: {d} prefix token(s) re-spelled" for c, d in splits.items()))
    if splits.get(PLAIN_CAPTION, 0):
        out.problems.append(f"the caption tail does not split cleanly: {PLAIN_CAPTION!r} re-spells "
                            f"{splits[PLAIN_CAPTION]} token(s) of the prompt before it, so every caption does")
    sharing = "active"
    if lmm.model is not None:
        attention = lmm.hf_model.config._attn_implementation
        if attention not in ("sdpa", "eager"):
            sharing = f"off: {attention!r} attention takes no block mask (load with sdpa or eager)"
            out.problems.append(f"prefix sharing needs sdpa or eager attention, not {attention!r}")
    out.say("prefix sharing", sharing)

    if lmm.family.mrope:
        model = lmm.hf_model if lmm.model is not None else _rope_model(config)
        extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "pixel_values_videos")}
        positions, _ = model.model.get_rope_index(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                                  **extra)
        temporal = positions[0, 0][inputs["input_ids"][0] == video_id]
        per_patch = temporal.reshape(int(inputs["video_grid_thw"][0, 0]), -1)[:, 0].tolist()
        out.say("temporal positions", f"{per_patch} (first token of each temporal patch)")
        if len(per_patch) > 1 and not all(b > a for a, b in zip(per_patch, per_patch[1:])):
            out.problems.append(f"the clip's temporal positions {per_patch} do not increase: the model cannot "
                                "tell its frames apart in time (frames passed without their frame rate?)")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="video LMM: hub id or local folder")
    parser.add_argument("--no-weights", action="store_true", help="load only the tokenizer, processor and config")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip, as the scorer samples them")
    parser.add_argument("--height", type=int, default=720, help="frame height of the test clip")
    parser.add_argument("--width", type=int, default=1280, help="frame width of the test clip")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration the test clip's frames span")
    parser.add_argument("--video-max-pixels", type=int, help="per-frame pixel cap (M-RoPE families)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device")
    parser.add_argument("--trust-remote-code", action="store_true")


def run(args: argparse.Namespace) -> int:
    from synvita.models.families import FamilyError, VideoLMM, load_processor_side, load_video_lmm

    try:
        _, config, family, processor, yes, no = load_processor_side(
            args.model, trust_remote_code=args.trust_remote_code, video_max_pixels=args.video_max_pixels)
        if args.no_weights:
            lmm = VideoLMM(model=None, processor=processor, family=family, yes_ids=yes, no_ids=no,
                           source=str(args.model))
        else:
            lmm = load_video_lmm(args.model, dtype=args.dtype, device=args.device,
                                 trust_remote_code=args.trust_remote_code, video_max_pixels=args.video_max_pixels)
    except (FamilyError, OSError) as err:
        print(f"synvita doctor: {err}", file=sys.stderr)
        return 2
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    result = diagnose(lmm, Clip(frames, args.frames / args.seconds), config)
    print("\n".join(result.lines))
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    print("FAILED" if result.problems else "OK")
    return 1 if result.problems else 0
