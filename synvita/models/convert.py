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
import importlib
import logging
import os
import re
import shutil
from pathlib import Path

from synvita.models.families import FAMILIES, FamilyError, ModelFamily, checkpoint_model_type

log = logging.getLogger(__name__)


def _family_converting(model_type: str | None) -> ModelFamily | None:
    return next((FAMILIES.get(n) for n in FAMILIES if model_type in FAMILIES.get(n).converts_from), None)


def convert_checkpoint(source: str, out: str | Path) -> Path:
    """Convert the checkpoint `source` (folder or hub id) into `out`; complete or not there at all."""
    model_type = checkpoint_model_type(source)
    family = _family_converting(model_type)
    if family is None:
        raise FamilyError(f"{source}: no family converts checkpoints of model_type {model_type!r}")
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["*.json", "*.model", "*.bin", "*.safetensors"]))
    out = Path(out)
    # Per process, so that processes converting at once (a multi-GPU launch) do not write into each other.
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    module, function = family.converter.split(":")
    getattr(importlib.import_module(module), function)(folder, partial)
    try:
        partial.rename(out)
    except OSError:
        if not (out / "config.json").is_file():
            raise
        shutil.rmtree(partial)  # another process finished first
    return out


def cache_path(name_or_path: str) -> Path:
    """Where `load_video_lmm` keeps the converted copy of `name_or_path`."""
    cache = Path(os.environ.get("SYNVITA_CACHE", "~/.cache/synvita")).expanduser() / "converted"
    source = str(Path(name_or_path).resolve()) if Path(name_or_path).is_dir() else name_or_path
    return cache / re.sub(r"[^\w.-]+", "--", source).strip("-")


def converted_checkpoint(name_or_path: str) -> str:
    """`name_or_path`, or for a checkpoint a family converts, its converted copy (made on first use)."""
    if _family_converting(checkpoint_model_type(name_or_path)) is None:
        return name_or_path
    out = cache_path(name_or_path)
    if not (out / "config.json").is_file():
        log.warning("%s needs a one-time conversion (pickled weights to safetensors, our config and processor) "
                    "into %s", name_or_path, out)
        convert_checkpoint(name_or_path, out)
    return str(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="published checkpoint: hub id or folder "
                        "(e.g. MAGAer13/mplug-owl-llama-7b-video)")
    parser.add_argument("--out", type=Path, help="folder to write (safetensors, config, processor); default: "
                        "the cache folder load_video_lmm reads ($SYNVITA_CACHE/converted)")


def run(args: argparse.Namespace) -> int:
    print(convert_checkpoint(args.model, args.out or cache_path(args.model)))
    return 0
