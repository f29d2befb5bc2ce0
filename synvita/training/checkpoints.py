"""Checkpoints: the PEFT adapter (safetensors) plus what resuming needs, written atomically.

A checkpoint is `checkpoints/step-<N>/` holding
    adapter/                 `PeftModel.from_pretrained(base, ".../adapter")` loads it
    optimizer.{json,safetensors}, scheduler.json, rng-<process>.{json,safetensors}
                             the optimizer's tensors in safetensors, everything else JSON; under
                             DeepSpeed, its own sharded files under pytorch_model/ instead of
                             optimizer.* (without the frozen base weights)
    trainer_state.json       global step, epoch and the step inside it (the data position)
No pickle is ever loaded: a checkpoint is data, so resuming from a planted or tampered one cannot
run code (accelerate's `save_state` pickles RNG and registered objects and unpickles them on load).
DeepSpeed's files are read with torch's weights-only loader.
Everything is written into `checkpoints/.tmp-step-<N>/` and renamed when complete, so a run killed
while saving leaves the previous checkpoint as the latest one; leftovers are removed on resume.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from synvita.errors import SynvitaError

_STEP_DIR = re.compile(r"^step-(\d+)$")
DEEPSPEED_TAG = "pytorch_model"  # the folder accelerate gave DeepSpeed's files; kept for old checkpoints


def _is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume_from: str | None, root: Path) -> Path | None:
    if resume_from is None:
        return None
    if resume_from == "latest":
        found = list_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume_from)
    if not (path / "trainer_state.json").is_file():
        raise SynvitaError(f"resume_from: {path} is not a complete checkpoint (no trainer_state.json)")
    return path


def save_checkpoint(accelerator: Accelerator, model, peft_model, optimizer, scheduler, root: Path, state: dict,
                    keep: int) -> Path:
    """Write checkpoint `step-<state['step']>` collectively (every process must call this).
    `model` is the prepared module (a DeepSpeed engine under DeepSpeed)."""
    final = root / f"step-{state['step']:07d}"
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Under ZeRO-3 the parameters are partitioned: only the adapter's are gathered (collectively).
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    with _gathered(accelerator, trainable):
        if accelerator.is_main_process:
            peft_model.save_pretrained(tmp / "adapter", safe_serialization=True)
    if _is_deepspeed(accelerator):
        # ZeRO partitions the optimizer across processes: DeepSpeed writes its own shards, collectively.
        model.save_checkpoint(str(tmp), DEEPSPEED_TAG, exclude_frozen_parameters=True)
    elif accelerator.is_main_process:
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        _save_tree(tmp / "optimizer", {"optimizer": optimizer.state_dict(), "scaler": scaler})
    _save_tree(tmp / f"rng-{accelerator.process_index}", _rng_state())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()))
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, model, peft_model, optimizer, scheduler, path: Path) -> dict:
    """Restore adapter, optimizer, scheduler and RNG from `path`; returns its trainer state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if accelerator.is_main_process:
        for stale in path.parent.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    if _is_deepspeed(accelerator):
        # DeepSpeed's module checkpoint holds the trainable (adapter) weights already.
        model.checkpoint_engine.load = _weights_only_load
        model.load_checkpoint(str(path), DEEPSPEED_TAG, load_module_strict=False, load_lr_scheduler_states=False)
    else:
        set_peft_model_state_dict(peft_model, load_file(path / "adapter" / "adapter_model.safetensors"))
        saved = _load_tree(path / "optimizer")
        optimizer.load_state_dict(saved["optimizer"])
        if accelerator.scaler is not None and saved["scaler"] is not None:
            accelerator.scaler.load_state_dict(saved["scaler"])
    scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
    rng = path / f"rng-{accelerator.process_index}.json"
    if not rng.is_file():
        raise SynvitaError(f"{rng}: missing; resume with the number of processes the checkpoint was saved with")
    _set_rng_state(_load_tree(rng.with_suffix("")))
    return json.loads((path / "trainer_state.json").read_text())


def _weights_only_load(path: str, map_location=None):
    """DeepSpeed's shard loader, restricted to tensors, plain data and DeepSpeed's own plain-data
    classes (its loader unpickles anything)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    with torch.serialization.safe_globals([LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]):
        return torch.load(path, map_location=map_location, weights_only=True)


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_tree(stem: Path, tree) -> None:
    """Nested dicts/lists of plain values and tensors as `stem.json` + `stem.safetensors` (no pickle)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}

    def encode(x):
        if isinstance(x, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = x.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(x, dict):
            if all(isinstance(k, str) for k in x):
                return {k: encode(v) for k, v in x.items()}
            return {"__items__": [[k, encode(v)] for k, v in x.items()]}  # an optimizer's int keys
        if isinstance(x, (list, tuple)):
            return [encode(v) for v in x]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"{stem}: {type(x).__name__} cannot be stored without pickle")

    text = json.dumps(encode(tree))
    save_file(tensors, str(stem.with_suffix(".safetensors")))
    stem.with_suffix(".json").write_text(text)


def _load_tree(stem: Path):
    from safetensors.torch import load_file

    tensors = load_file(str(stem.with_suffix(".safetensors")))

    def decode(x):
        if isinstance(x, dict):
            if "__tensor__" in x:
                return tensors[x["__tensor__"]]
            if "__items__" in x:
                return {k: decode(v) for k, v in x["__items__"]}
            return {k: decode(v) for k, v in x.items()}
        if isinstance(x, list):
            return [decode(v) for v in x]
        return x

    return decode(json.loads(stem.with_suffix(".json").read_text()))


def _gathered(accelerator: Accelerator, params):
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)
