"""SynViTA's objective (thesis Eqs. 5.5-5.7): L = L_real + L_syn^w + λ_scr · L_scr^w.

Views of a triplet (real video V^r, synthetic video V^s, real caption t^r, negative t^s, shared t'):
    "rr" (V^r,t^r) Yes    "rs" (V^r,t^s) No     "rp" (V^r,t')
    "ss" (V^s,t^s) Yes    "sr" (V^s,t^r) No     "sp" (V^s,t')
Each view is a pair (log P(Yes), log P(No)) of full-vocabulary log-probabilities at the answer
position, shape (B,); f = P(Yes) / (P(Yes) + P(No)) = sigmoid(log P(Yes) - log P(No)).

Per triplet i (w_i = 0 when the triplet has no usable synthetic clip):
    real_i = -log P(Yes | rr) - log P(No | rs)
    syn_i  = w_i · (-log P(Yes | ss) - log P(No | sr))
    scr_i  = w_i · (h(f_rr, f_rp, f_rs) + h(f_ss, f_sp, f_sr))                       (Eq. 5.6)
             h(pos, shared, neg) = max(0, γ + shared - pos) + max(0, γ + neg - shared)
so w multiplies both hinges, and a triplet without a clip adds nothing to L_scr.

Two normalisations (`normalization`):
- "per_triplet": each part is Σ_i part_i / `denominator`, with denominator = per-device batch ×
  gradient-accumulation steps (a count of triplets, not Σw). Summing the micro-batch gradients of
  one optimizer step gives Σ over its triplets / (B·A), DDP averages over the P processes, so every
  update is the plain mean over the P·B·A triplets of the global batch, whatever P, B and A are.
- "official" (the authors' code, which produced the published numbers): the cross-entropy is a mean
  over the label tokens of the micro-batch, the answer and the end-of-sequence token of every
  entailment row (rr, rs, and ss, sr of triplets with a clip; the synthetic rows' token losses times
  w), plus the explanation tokens when explanations are mixed in; L_scr is a mean over the
  (real, synthetic) row pairs that have a clip, two per such triplet. The denominators depend on
  what the micro-batch holds, so a different split of the same global batch gives a (slightly)
  different update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import torch

Pair = tuple[torch.Tensor, torch.Tensor]
Normalization = Literal["official", "per_triplet"]
ANSWER_ROWS = ("rr", "rs", "ss", "sr")


@dataclass
class LossParts:
    total: torch.Tensor
    real: torch.Tensor
    syn: torch.Tensor
    scr: torch.Tensor
    explanation: torch.Tensor


@dataclass
class Explanations:
    """The explanation task's token losses: per triplet, Σ token NLL and the number of tokens (0: none)."""

    nll_sum: torch.Tensor
    tokens: torch.Tensor


def alignment(log_p_yes: torch.Tensor, log_p_no: torch.Tensor) -> torch.Tensor:
    """f = P(Yes) / (P(Yes) + P(No)), computed stably from log-probabilities."""
    return torch.sigmoid(log_p_yes - log_p_no)


def answer_nll(log_p_yes: torch.Tensor, log_p_no: torch.Tensor, label_yes: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the answer token (Yes where `label_yes`, else No)."""
    return -torch.where(label_yes, log_p_yes, log_p_no)


def scr_hinges(f_pos: torch.Tensor, f_shared: torch.Tensor, f_neg: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample semantic-consistency hinges for one video: f(t) > f(t') + γ > f(t̄) + 2γ is loss-free."""
    return torch.relu(gamma + f_shared - f_pos) + torch.relu(gamma + f_neg - f_shared)


def synvita_objective(
    views: Mapping[str, Pair],
    w: torch.Tensor,
    has_clip: torch.Tensor,
    *,
    normalization: Normalization,
    denominator: float = 1.0,
    eos: Mapping[str, torch.Tensor] | None = None,
    explanations: Explanations | None = None,
    gamma: float = 0.2,
    lambda_scr: float = 1.0,
    lambda_explanation: float = 1.0,
    syn: bool = True,
    scr: bool = True,
) -> LossParts:
    """The parts and their total (see the module docstring for views and normalisations).

    `w` must be 0 where `has_clip` is 0. `eos[view]` is log P(end of sequence | prompt, label answer)
    for the answer rows, required by "official" (`denominator` is only read by "per_triplet").
    `syn`/`scr` switch L_syn^w and L_scr^w off: a switched-off part is a zero constant, and its views
    are not needed. Required views: rr, rs; ss, sr with `syn`; all six with `scr`.
    """
    if normalization not in ("official", "per_triplet"):
        raise ValueError(f"normalization: {normalization!r} is not one of official, per_triplet")
    missing = [v for v in _needed(syn, scr) if v not in views]
    if missing:
        raise KeyError(f"synvita_objective: views {missing} are needed for syn={syn}, scr={scr}")
    rows = [v for v in ANSWER_ROWS if syn or v in ("rr", "rs")]
    if normalization == "official" and (eos is None or any(v not in eos for v in rows)):
        raise KeyError(f"synvita_objective: normalization 'official' needs eos log-probabilities for {rows}")
    has_clip = has_clip.to(w.dtype)
    yes = torch.ones_like(w, dtype=torch.bool)
    zero = w.new_zeros(())

    def row_loss(view: str) -> torch.Tensor:
        nll = answer_nll(*views[view], yes if view in ("rr", "ss") else ~yes)
        return nll - eos[view] if normalization == "official" else nll

    real = (row_loss("rr") + row_loss("rs")).sum()
    syn_part = (w * (row_loss("ss") + row_loss("sr"))).sum() if syn else zero
    scr_part = zero
    if scr:
        f = {name: alignment(*views[name]) for name in _needed(False, True)}
        scr_part = (w * (scr_hinges(f["rr"], f["rp"], f["rs"], gamma)
                         + scr_hinges(f["ss"], f["sp"], f["sr"], gamma))).sum()
    explanation = zero
    if normalization == "per_triplet":
        if explanations is not None:
            explanation = (explanations.nll_sum / explanations.tokens.clamp(min=1)).sum()
        real, syn_part, scr_part, explanation = (x / denominator for x in (real, syn_part, scr_part, explanation))
    else:
        # Answer + end-of-sequence on every entailment row; synthetic rows only where there is a clip.
        tokens = 2 * (2 * w.new_tensor(len(w)) + (2 * has_clip.sum() if syn else 0))
        if explanations is not None:
            explanation = explanations.nll_sum.sum()
            tokens = tokens + explanations.tokens.sum()
        real, syn_part, explanation = (x / tokens for x in (real, syn_part, explanation))
        scr_part = scr_part / (2 * has_clip.sum()).clamp(min=1)
    total = real + syn_part + lambda_scr * scr_part + lambda_explanation * explanation
    return LossParts(total=total, real=real, syn=syn_part, scr=scr_part, explanation=explanation)


def _needed(syn: bool, scr: bool) -> list[str]:
    if scr:
        return ["rr", "rs", "rp", "ss", "sr", "sp"]
    return ["rr", "rs"] + (["ss", "sr"] if syn else [])
