"""The Accelerate training loop: LoRA on the LLM, the SynViTA objective, logging, checkpoints.

Per micro-batch of B triplets the vision tower encodes each real and synthetic video once; the six
views (or two for the VideoCon baseline) are scored from those features. Normalisation (see
losses.py): the objective divides by B ("per_triplet") or by the micro-batch's label tokens and
clip pairs ("official"), `accelerator.backward` (or DeepSpeed) divides by the A accumulation steps,
and DDP averages over processes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from synvita.config import dump_resolved, flat_dict
from synvita.data.records import read_jsonl
from synvita.errors import SynvitaError
from synvita.models.features import FeatureCache
from synvita.training import checkpoints
from synvita.training.config import TrainConfig
from synvita.training.data import DecodedExamples, check_captions, load_examples, shard_positions, steps_per_epoch
from synvita.training.losses import synvita_objective
from synvita.training.views import TripletScorer, explanation_nll
from synvita.utils import MIXED_PRECISION_DTYPES, append_line, atomic_write_text, exclusive_lock, stable_seed

log = logging.getLogger("synvita.train")


class Objective(nn.Module):
    """The trained module: what DDP/DeepSpeed wrap, so that their hooks see every forward."""

    def __init__(self, peft_model: nn.Module, scorer: TripletScorer, cfg: TrainConfig):
        super().__init__()
        self.peft_model = peft_model
        self.scorer = scorer
        self.cfg = cfg

    def forward(self, batch) -> dict[str, torch.Tensor]:
        loss = self.cfg.loss
        examples, real, syn = zip(*batch)
        official = loss.normalization == "official"
        views, eos, w, has_clip = self.scorer(list(examples), list(real), list(syn), use_syn=loss.syn,
                                              use_scr=loss.scr, eos=official)
        explanations = (explanation_nll(self.scorer.scorer.lmm, list(examples), list(real))
                        if self.cfg.data.explanations else None)
        # per_triplet divides by B here; `accelerator.backward` divides by the A accumulation steps.
        parts = synvita_objective(views, w, has_clip, normalization=loss.normalization,
                                  denominator=self.cfg.per_device_batch_size, eos=eos, explanations=explanations,
                                  gamma=loss.gamma, lambda_scr=loss.lambda_scr,
                                  lambda_explanation=loss.lambda_explanation, syn=loss.syn, scr=loss.scr)
        return {"loss": parts.total, "loss_real": parts.real, "loss_syn": parts.syn, "loss_scr": parts.scr,
                "loss_explanation": parts.explanation, "w": w.detach(), "has_clip": has_clip}


def _build_model(cfg: TrainConfig, accelerator):
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from synvita.models.families import load_video_lmm

    quant = cfg.model.quantization
    lmm = load_video_lmm(cfg.model.name_or_path, dtype=MIXED_PRECISION_DTYPES[cfg.mixed_precision],
                         device=str(accelerator.device) if quant else None, quantization=quant,
                         trust_remote_code=cfg.model.trust_remote_code)
    if quant:
        lmm.model = prepare_model_for_kbit_training(lmm.model, use_gradient_checkpointing=False)
    if cfg.model.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad (the LLM's inputs are frozen embeddings).
        lmm.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=lmm.family.lora_target_regex(cfg.lora.targets), bias="none")
    # LoRA's A init draws from the global RNG; seeding here keeps it independent of how the base
    # was loaded (ZeRO-3's partitioned load consumes random numbers differently).
    set_seed(cfg.seed)
    peft_model = get_peft_model(lmm.model, lora)
    peft_model.train()
    return lmm, peft_model


def _optimizer(cfg: TrainConfig, params):
    o = cfg.optim
    if o.optimizer == "adamw_8bit":
        if not torch.cuda.is_available():
            raise SynvitaError("optim.optimizer=adamw_8bit needs a CUDA device (bitsandbytes); use adamw on CPU")
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def _configure_deepspeed(accelerator, cfg: TrainConfig) -> None:
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    # No dataloader goes through `prepare`, so the "auto" values accelerate would infer are set here.
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
    ds["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
    ds["gradient_clipping"] = cfg.optim.max_grad_norm or 0.0


@dataclass
class TrainResult:
    checkpoint: Path  # the last checkpoint; its adapter/ is the trained LoRA
    model: nn.Module  # the PEFT model as trained (on this process)


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) training to the end of the schedule."""
    # One lock per process rank: a second run into this folder is refused instead of interleaving
    # its metrics and checkpoints with this one's.
    rank = os.environ.get("RANK", "0")
    with exclusive_lock(Path(cfg.output_dir) / f".lock-{rank}", "this training output_dir"):
        ckpt_root = Path(cfg.output_dir) / "checkpoints"
        if cfg.resume_from is None and checkpoints.list_checkpoints(ckpt_root):
            raise SynvitaError(f"{ckpt_root}: holds checkpoints of an earlier run; continue it with "
                               "resume_from=latest, or choose another output_dir")
        return _train(cfg)


def _train(cfg: TrainConfig) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from synvita.models.alignment import AlignmentScorer

    out = Path(cfg.output_dir)
    if cfg.missing_trackers():
        raise SynvitaError(f"report_to: {', '.join(cfg.missing_trackers())} not installed; pip install it, "
                           "or set report_to=[tensorboard] or report_to=[none]")
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=[t for t in cfg.report_to if t != "none"] or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tensorboard")),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    log.info("%s, %d process(es), device %s", accelerator.distributed_type, accelerator.num_processes, accelerator.device)
    _configure_deepspeed(accelerator, cfg)
    set_seed(cfg.seed)

    examples, report = load_examples(cfg.data, cfg.loss.weighting)
    log.info("data: %s", report.summary())
    layout = dict(batch=cfg.per_device_batch_size, accum=cfg.gradient_accumulation_steps,
                  processes=accelerator.num_processes)
    per_epoch = steps_per_epoch(len(examples), **layout)
    total_steps = per_epoch * cfg.epochs if cfg.max_steps is None else min(cfg.max_steps, per_epoch * cfg.epochs)

    lmm, peft_model = _build_model(cfg, accelerator)
    alignment = AlignmentScorer(lmm, cfg.data.frames)
    # LoRA stays in the LLM (lora_target_regex), so the tower's features hold for the whole run.
    cache = FeatureCache(cfg.data.feature_cache, alignment) if cfg.data.feature_cache else None
    scorer = TripletScorer(alignment, cache)
    check_captions(examples, scorer.scorer.split, cfg.data.triplets)
    objective = Objective(peft_model, scorer, cfg)
    params = [p for p in objective.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)  # before ZeRO-3 partitions them
    optimizer = _optimizer(cfg, params)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.optim.warmup_steps, total_steps)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    # The scheduler steps once per optimizer step whatever the process count, so it is not
    # prepared (accelerate would step it once per process); checkpoints hold it.

    ckpt_root = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    state = {"step": 0, "epoch": 0, "step_in_epoch": 0}
    resume = checkpoints.resolve_resume(cfg.resume_from, ckpt_root)
    if resume is not None:
        state = checkpoints.load_checkpoint(accelerator, objective, peft_model, optimizer, scheduler, resume)
        log.info("resumed from %s at step %d", resume, state["step"])
    if accelerator.is_main_process and metrics_path.is_file():
        # Steps logged after the checkpoint (all of them without one) are trained, and logged, again.
        kept = [row for _, row in read_jsonl(metrics_path) if row["step"] <= state["step"]]
        atomic_write_text(metrics_path, "".join(json.dumps(row) + "\n" for row in kept))
    if accelerator.is_main_process:
        dump_resolved(cfg, out / "resolved.yaml")
    accelerator.init_trackers("synvita", config=flat_dict(cfg))
    log.info("%d examples, %d steps/epoch, %d steps; %d trainable parameters", len(examples), per_epoch,
             total_steps, n_trainable)

    # The explanation task reads the real frames through the model's own forward, so they are decoded.
    dataset = DecodedExamples(examples, cfg.data.frames,
                              skip=cache.holds if cache is not None and not cfg.data.explanations else None)
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", disable=not accelerator.is_main_process)
    step_logs: list[dict] = []
    final = None
    while state["step"] < total_steps:
        micro = shard_positions(len(examples), epoch=state["epoch"], seed=cfg.seed, rank=accelerator.process_index,
                                start_step=state["step_in_epoch"], **layout)
        # Its own generator: drawing the workers' base seed from the global RNG would shift the
        # dropout stream of a run resumed mid-epoch against an uninterrupted one.
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=micro, collate_fn=list, num_workers=cfg.data.num_workers,
            generator=torch.Generator().manual_seed(stable_seed("loader", cfg.seed, state["epoch"])))
        for batch in loader:
            with accelerator.accumulate(objective):
                out_parts = objective(batch)
                _stop_if_not_finite(accelerator, out_parts["loss"], state["step"])
                accelerator.backward(out_parts["loss"])
                if accelerator.sync_gradients and cfg.optim.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.optim.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step_logs.append({k: v.detach().float() for k, v in out_parts.items()})
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state["step"] += 1
            state["step_in_epoch"] += 1
            bar.update(1)
            if state["step"] % cfg.log_every == 0 or state["step"] == total_steps:
                record = _step_metrics(accelerator, step_logs, state["step"], scheduler.get_last_lr()[0])
                accelerator.log({k: v for k, v in record.items() if v is not None}, step=state["step"])
                if accelerator.is_main_process:
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                    append_line(metrics_path, json.dumps(record) + "\n")
            step_logs = []
            done = state["step"] >= total_steps
            if state["step_in_epoch"] == per_epoch:
                state["epoch"] += 1
                state["step_in_epoch"] = 0
            if done or state["step"] % cfg.save_every == 0:
                final = checkpoints.save_checkpoint(accelerator, objective, peft_model, optimizer, scheduler,
                                                    ckpt_root, dict(state), cfg.keep_checkpoints)
            if done or state["step_in_epoch"] == 0:
                break
    bar.close()
    accelerator.end_training()
    return TrainResult(final if final is not None else checkpoints.list_checkpoints(ckpt_root)[-1], peft_model)


def _stop_if_not_finite(accelerator, loss: torch.Tensor, step: int) -> None:
    """Stop before a non-finite loss reaches the optimizer (and so any checkpoint); every process
    stops together, as the check is collective."""
    bad = accelerator.reduce((~torch.isfinite(loss.detach())).float().reshape(1), "sum")
    if bad.item():
        raise SynvitaError(f"step {step + 1}: the loss is not finite ({loss.item()}); stopped before the optimizer "
                           f"step, so the last checkpoint (step <= {step}) is intact. Lower optim.lr, or check "
                           "the data and weights")


def _step_metrics(accelerator, step_logs: list[dict], step: int, lr: float) -> dict:
    """One optimizer step's losses (mean over processes) and weight statistics (over all its clips)."""
    accum = len(step_logs)
    losses = torch.stack([sum(s[k] for s in step_logs) / accum
                          for k in ("loss", "loss_real", "loss_syn", "loss_scr", "loss_explanation")])
    losses = accelerator.reduce(losses.to(accelerator.device), "mean").tolist()
    w = accelerator.gather(torch.cat([s["w"] for s in step_logs]).to(accelerator.device))
    has = accelerator.gather(torch.cat([s["has_clip"] for s in step_logs]).to(accelerator.device)).bool()
    w = w[has]
    record = dict(zip(("loss", "loss_real", "loss_syn", "loss_scr", "loss_explanation"), losses))
    record = {"step": step, "lr": lr, **record}
    if len(w):
        record.update(w_mean=w.mean().item(), w_min=w.min().item(), w_max=w.max().item(),
                      w_zero_share=(w == 0).float().mean().item())
    else:
        record.update(w_mean=None, w_min=None, w_max=None, w_zero_share=None)
    return record
