"""Convert the published mPLUG-Owl video folder (`MAGAer13/mplug-owl-llama-7b-video`) into ours, once.

The published folder holds the authors' remote-code layout: config model_type `mplug-owl`, pickled
`.bin` weights, a sentencepiece LLaMA tokenizer under a custom class name and CLIP's image
processor settings. The conversion writes a folder that `load_video_lmm` / the Auto classes load:
- our config (`mplug_owl_video`) with the same vision, abstractor and LLaMA settings;
- the weights as safetensors shards, names unchanged (ours are the checkpoint's), read with
  `torch.load(weights_only=True)`; the stale rotary `inv_freq` buffers are dropped;
- LLaMA's tokenizer plus a `<|video|>` placeholder after the vocabulary, and our processor (the
  authors' 224 px frames with CLIP normalisation, their conversation template).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

from synvita.errors import SynvitaError
from synvita.models.mplug_owl.configuration import MplugOwlVideoConfig
from synvita.models.mplug_owl.processing import (
    VIDEO_TOKEN, MplugOwlVideoProcessor, MplugOwlVideoVideoProcessor, legacy_llama_tokenizer,
)

log = logging.getLogger(__name__)
SOURCE_MODEL_TYPE = "mplug-owl"
_STALE = re.compile(r".*rotary_emb\.inv_freq")


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise SynvitaError(f"{folder}: no pytorch_model*.bin or *.safetensors weights to convert")
    return files


def _load(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(file)
    return torch.load(file, map_location="cpu", weights_only=True)


def convert_checkpoint(source: Path, out: Path) -> Path:
    """Write the converted model, config and processor of the published folder `source` into `out`."""
    from safetensors.torch import save_file
    from tqdm import tqdm
    from transformers import LlamaTokenizer

    raw = json.loads((source / "config.json").read_text())
    if raw.get("model_type") != SOURCE_MODEL_TYPE:
        raise SynvitaError(f"{source}: config model_type is {raw.get('model_type')!r}, not {SOURCE_MODEL_TYPE!r}")
    tokenizer = legacy_llama_tokenizer(LlamaTokenizer.from_pretrained(source, add_bos_token=True))
    video_id = len(tokenizer)
    tokenizer.add_tokens([VIDEO_TOKEN], special_tokens=True)
    sub = {k: {n: v for n, v in raw.get(k, {}).items() if n != "model_type"}
           for k in ("vision_config", "visual_abstractor_config")}
    config = MplugOwlVideoConfig(**sub, text_config=raw["text_config"],
                                 num_query_tokens=raw.get("num_query_tokens", 64), video_token_id=video_id,
                                 architectures=["MplugOwlVideoForConditionalGeneration"])
    preprocessor = source / "preprocessor_config.json"
    clip = json.loads(preprocessor.read_text()) if preprocessor.is_file() else {}
    side = config.vision_config.image_size
    videos = MplugOwlVideoVideoProcessor(size={"height": side, "width": side},
                                         **{k: clip[k] for k in ("image_mean", "image_std") if k in clip})

    out.mkdir(parents=True, exist_ok=True)
    files = _weight_files(source)
    weight_map, total = {}, 0
    for i, file in enumerate(tqdm(files, desc="mPLUG-Owl: weights to safetensors", unit="shard"), 1):
        state = {k: v.contiguous() for k, v in _load(file).items() if not _STALE.fullmatch(k)}
        name = f"model-{i:05d}-of-{len(files):05d}.safetensors"
        save_file(state, out / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(state, name))
        total += sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(out)
    MplugOwlVideoProcessor(video_processor=videos, tokenizer=tokenizer,
                           num_video_tokens=config.num_video_tokens).save_pretrained(out)
    log.info("converted %s into %s", source, out)
    return out
