"""Checkpoints: the PEFT adapter (safetensors) plus what resuming needs, written atomically.

A checkpoint is `checkpoints/step-<N>/` holding
    adapter/                 `PeftModel.from_pretrained(base, ".../adapter")` loads it
    optimizer, scheduler, RNG states of every process (accelerate's `save_state`; DeepSpeed's own
                             sharded files under ZeRO, without the frozen base weights)
    trainer_state.json       global step, epoch and the step inside it (the data position)
Everything is written into `checkpoints/.tmp-step-<N>/` and renamed when complete, so a run killed
while saving leaves the previous checkpoint as the latest one; leftovers are removed on resume.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import DistributedType

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def install_state_hooks(accelerator: Accelerator) -> None:
    """Keep accelerate from writing or reading the full base model: the adapter is saved apart."""

    def drop_weights(models, weights, output_dir):
        weights.clear()

    def skip_models(models, input_dir):
        models.clear()

    accelerator.register_save_state_pre_hook(drop_weights)
    accelerator.register_load_state_pre_hook(skip_models)


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
        raise FileNotFoundError(f"resume_from: {path} is not a complete checkpoint (no trainer_state.json)")
    return path


def save_checkpoint(accelerator: Accelerator, peft_model, root: Path, state: dict, keep: int) -> Path:
    """Write checkpoint `step-<state['step']>` collectively (every process must call this)."""
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
    kwargs = {"exclude_frozen_parameters": True} if _is_deepspeed(accelerator) else {}
    accelerator.save_state(str(tmp), **kwargs)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, peft_model, path: Path) -> dict:
    """Restore adapter, optimizer, scheduler and RNG from `path`; returns its trainer state."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if accelerator.is_main_process:
        for stale in path.parent.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    if _is_deepspeed(accelerator):
        # DeepSpeed's module checkpoint holds the trainable (adapter) weights already.
        accelerator.load_state(str(path), load_module_strict=False)
    else:
        set_peft_model_state_dict(peft_model, load_file(path / "adapter" / "adapter_model.safetensors"))
        accelerator.load_state(str(path))
    return json.loads((path / "trainer_state.json").read_text())


def _gathered(accelerator: Accelerator, params):
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)
