"""`--adapter`: apply a LoRA adapter to a loaded video LMM, in PEFT's layout or in VideoCon's Owl-Con layout.

PEFT's layout is a folder with `adapter_config.json` (what `synvita train` writes). VideoCon's
published model, Owl-Con (hub `videocon/owl-con`), is instead one pickled state dict of the whole
PEFT-wrapped mPLUG-Owl as an old PEFT saved it: base weights under `base_model.model.<name>` and the
LoRA pairs under `base_model.model.<module>.lora_A.default.weight` / `lora_B.default.weight`, with
no config. Our mPLUG-Owl keeps the checkpoint's module names, so mapping it is:
- keep the `lora_A` / `lora_B` tensors and drop the base weights (the base model has them);
- drop the adapter name (`.default`), which PEFT's saved adapters do not carry;
- rank from the tensors, targets from the module names, and lora_alpha = 16 with dropout 0.05:
  the values of VideoCon's `entailment_inference.py`, which scored their published predictions
  (its training used alpha 32; the file does not record alpha).
Pickled files are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from synvita.errors import SynvitaError
from synvita.models.families import VideoLMM

OWL_CON_ALPHA = 16
OWL_CON_DROPOUT = 0.05
_LORA_KEY = re.compile(r"(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight")


class AdapterError(SynvitaError):
    """An adapter that is neither a PEFT folder nor a state dict with LoRA pairs, or fits no module."""


def _local(source: str) -> Path:
    path = Path(source)
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.bin"]))


def _state_dict_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise AdapterError(f"{folder}: no adapter_config.json (PEFT) and no .safetensors or .bin state dict "
                           "(VideoCon's Owl-Con layout)")
    return files


def read_owl_con(source: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The LoRA tensors of an Owl-Con-layout file or folder under PEFT's saved-adapter names, and the
    LoraConfig arguments they imply."""
    from safetensors.torch import load_file

    path = Path(source)
    files = [path] if path.is_file() else _state_dict_files(path)
    lora: dict[str, torch.Tensor] = {}
    for file in files:
        state = load_file(file) if file.suffix == ".safetensors" else torch.load(
            file, map_location="cpu", weights_only=True, mmap=True)
        for key, tensor in state.items():
            m = _LORA_KEY.fullmatch(key)
            if m:
                lora[f"base_model.model.{m['module']}.lora_{m['ab']}.weight"] = tensor.clone()
    if not lora:
        raise AdapterError(f"{source}: no LoRA tensors (keys ending in lora_A/lora_B[.default].weight) in "
                           f"{', '.join(f.name for f in files)}")
    modules = sorted({k[len("base_model.model."):-len(".lora_A.weight")] for k in lora if ".lora_A." in k})
    ranks = {lora[f"base_model.model.{m}.lora_A.weight"].shape[0] for m in modules}
    unpaired = [m for m in modules if f"base_model.model.{m}.lora_B.weight" not in lora]
    if len(ranks) != 1 or unpaired:
        raise AdapterError(f"{source}: LoRA pairs must share one rank and come in A/B pairs "
                           f"(ranks {sorted(ranks)}, modules without lora_B: {unpaired[:3]})")
    settings = dict(r=ranks.pop(), lora_alpha=OWL_CON_ALPHA, lora_dropout=OWL_CON_DROPOUT, target_modules=modules)
    return lora, settings


def apply_adapter(lmm: VideoLMM, source: str | Path) -> None:
    """Apply the adapter at `source` (folder, file or hub id) to `lmm.model`, merged, in eval mode.

    Merged once, the model keeps its module names (which the family table addresses) and scores at
    full speed.
    """
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    path = _local(str(source))
    if (path / "adapter_config.json").is_file():
        lmm.model = PeftModel.from_pretrained(lmm.model, str(path)).merge_and_unload().eval()
        return
    lora, settings = read_owl_con(path)
    names = {n for n, _ in lmm.model.named_modules()}
    unknown = [m for m in settings["target_modules"] if m not in names]
    if unknown:
        raise AdapterError(f"{source}: LoRA modules not in the {type(lmm.hf_model).__name__}: {unknown[:3]} "
                           f"({len(unknown)} in all); is --model the adapter's base model?")
    peft_model = get_peft_model(lmm.model, LoraConfig(**settings))
    result = set_peft_model_state_dict(peft_model, lora)
    if result.unexpected_keys:
        raise AdapterError(f"{source}: tensors PEFT did not place: {result.unexpected_keys[:3]}")
    lmm.model = peft_model.merge_and_unload().eval()


def load_adapted(model: str, adapter: str | Path | None = None, **load_options) -> VideoLMM:
    """`load_video_lmm(model, **load_options)` with the adapter at `adapter` applied, if one is given:
    how `synvita entail` and `synvita evaluate` load what they score."""
    from synvita.models.families import load_video_lmm

    lmm = load_video_lmm(model, **load_options)
    if adapter:
        apply_adapter(lmm, adapter)
    return lmm
