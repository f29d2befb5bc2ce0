"""`synvita convert`: turn a published checkpoint that needs remote code into a folder our classes load.

A family lists the `model_type`s of such checkpoints (`ModelFamily.converts_from`) and the function
that converts them (`ModelFamily.converter`, "module:function(source_dir, out_dir)"). Today that is
mPLUG-Owl video (`MAGAer13/mplug-owl-llama-7b-video`, model_type `mplug-owl`). `load_video_lmm`
converts such a checkpoint on first use into $SYNVITA_CACHE/converted (default ~/.cache/synvita),
so `--model MAGAer13/mplug-owl-llama-7b-video` works as it is; this command does it beforehand (do
so before a multi-process launch, or every process converts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synvita.models.families import cache_path, convert_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="published checkpoint: hub id or folder "
                        "(e.g. MAGAer13/mplug-owl-llama-7b-video)")
    parser.add_argument("--out", type=Path, help="folder to write (safetensors, config, processor); default: "
                        "the cache folder load_video_lmm reads ($SYNVITA_CACHE/converted)")


def run(args: argparse.Namespace) -> int:
    print(convert_checkpoint(args.model, args.out or cache_path(args.model)))
    return 0
