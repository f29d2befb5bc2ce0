"""The training config: one typed dataclass tree, filled from a recipe YAML plus key=value overrides.

Defaults follow the authors' released SynViTA code for Video-LLaVA, which produced the published
numbers (README, "Fidelity"): LoRA r=32, α=32, dropout 0.05 on every linear layer of the LLM; AdamW
lr 5e-5, weight decay 1e-4, 200 warmup steps and a cosine decay; one epoch; γ=0.2; λ_scr=1.0
(mPLUG-Owl used 0.01); the official loss normalisation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from synvita.data.video import FrameSampler
from synvita.models.families import LORA_PRESETS
from synvita.weights import DEFAULT_WEIGHTING, WEIGHTINGS


@dataclass
class ModelConfig:
    name_or_path: str = ""
    quantization: Literal["4bit", "8bit"] | None = None
    trust_remote_code: bool = False
    gradient_checkpointing: bool = True


@dataclass
class LoraConfig:
    r: int = 32
    alpha: int = 32
    dropout: float = 0.05
    # A preset (all_linear: attention and MLP projections of the LLM, as the authors' code;
    # attention: q/k/v/o only, as the thesis text says) or a regex PEFT full-matches against module names.
    targets: str = "all_linear"

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"lora: need r >= 1, alpha > 0, 0 <= dropout < 1; got {self}")
        if self.targets not in LORA_PRESETS:
            try:
                re.compile(self.targets)
            except re.error as err:
                raise ValueError(f"lora.targets: {self.targets!r} is neither one of "
                                 f"{', '.join(LORA_PRESETS)} nor a valid regex ({err})") from None


@dataclass
class DataConfig:
    triplets: Path = Path("triplets.jsonl")
    # Without clips the run is the VideoCon baseline: every triplet trains on its real video only.
    clips: Path | None = None
    weights: Path | None = None
    split: str | None = "train"
    # None keeps all; otherwise only clips of these generators (shell patterns: "cogvideox*") /
    # triplets of these misalignments.
    generators: list[str] | None = None
    misalignments: list[str] | None = None
    frames: FrameSampler = field(default_factory=FrameSampler)
    # VideoCon's explanation task on (V^r, t^s), answered with the triplet's `nle`.
    explanations: bool = False
    # Folder of the videos' and clips' vision features (synvita.models.features), shared by the runs
    # and evaluations of one base model.
    feature_cache: Path | None = None
    num_workers: int = 0


@dataclass
class LossConfig:
    weighting: str = DEFAULT_WEIGHTING
    gamma: float = 0.2
    lambda_scr: float = 1.0
    syn: bool = True
    scr: bool = True
    lambda_explanation: float = 1.0
    # official: the authors' code (cross-entropy over label tokens incl. end of sequence, L_scr a mean
    # over clip pairs); per_triplet: sums over triplets / (B·A), invariant to how the batch is split.
    normalization: Literal["official", "per_triplet"] = "official"

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"loss.weighting: {self.weighting!r} is not one of {', '.join(WEIGHTINGS.names())}")
        if self.gamma < 0 or self.lambda_scr < 0 or self.lambda_explanation < 0:
            raise ValueError("loss: gamma, lambda_scr and lambda_explanation must be >= 0")


@dataclass
class OptimConfig:
    lr: float = 5e-5
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    # adamw_8bit is bitsandbytes' paged 8-bit AdamW (QLoRA); it needs a CUDA device.
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"

    def __post_init__(self):
        # A NaN learning rate trained "successfully" into a NaN adapter: every number is checked.
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"optim.lr: must be a finite number > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"optim.weight_decay: must be a finite number >= 0, got {self.weight_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas: each must be in [0, 1), got {self.betas}")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"optim.max_grad_norm: must be a finite number > 0 or null, got {self.max_grad_norm}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    output_dir: Path = Path("runs/train")
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    epochs: int = 1
    # Caps the optimizer steps (the schedule is laid out over min(max_steps, the epochs' steps)).
    max_steps: int | None = None
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    # "latest", a checkpoint directory, or None for a fresh run.
    resume_from: str | None = None
    # Accelerate's trackers, given the resolved config as hyperparameters; "none": metrics.jsonl and stdout only.
    report_to: list[Literal["tensorboard", "wandb", "trackio", "none"]] = field(default_factory=lambda: ["tensorboard"])

    def __post_init__(self):
        if not self.model.name_or_path:
            raise ValueError("model.name_or_path: required (a hub id or a local directory)")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "epochs", "log_every",
                     "save_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: must be >= 1, got {self.max_steps}")
        if self.data.clips is not None and self.loss.weighting != "fixed" and self.data.weights is None:
            raise ValueError(f"data.weights: weighting {self.loss.weighting!r} needs the weights manifest")
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ValueError(f"report_to: 'none' cannot be combined with trackers, got {self.report_to}")
        if self.data.explanations and self.loss.lambda_explanation == 0:
            raise ValueError("data.explanations is on but loss.lambda_explanation is 0")

    def missing_trackers(self) -> list[str]:
        """Trackers in `report_to` whose package is not installed (accelerate would skip them silently)."""
        import importlib.util

        return [t for t in self.report_to if t != "none" and importlib.util.find_spec(t) is None]
