"""SynViTA's objective: L = L_real + L_syn^w + λ_scr · L_scr^w, from the answer log-probabilities.

Views of a triplet (real video V^r, synthetic video V^s, real caption t^r, negative t^s, shared t'):
    "rr" (V^r,t^r) Yes    "rs" (V^r,t^s) No     "rp" (V^r,t')
    "ss" (V^s,t^s) Yes    "sr" (V^s,t^r) No     "sp" (V^s,t')
Each view is a pair (log P(Yes), log P(No)) of full-vocabulary log-probabilities at the answer
position, shape (B,); f = P(Yes) / (P(Yes) + P(No)) = sigmoid(log P(Yes) - log P(No)).

Per triplet i:
    real_i = -log P(Yes | rr) - log P(No | rs)
    syn_i  = w_i · (-log P(Yes | ss) - log P(No | sr))
    scr_i  = h(f_rr, f_rp, f_rs) + w_i · h(f_ss, f_sp, f_sr),
             h(pos, shared, neg) = max(0, γ + shared - pos) + max(0, γ + neg - shared)
The z=s hinge is present only when the synthetic views are given.

Normalisation: each part is Σ_i part_i / `denominator`, with denominator = per-device batch ×
gradient-accumulation steps (a count of triplets, not Σw, so a batch of low-trust clips pulls less
rather than being rescaled up). Summing the micro-batch gradients of one optimizer step in one
process gives Σ over its triplets / (B·A); DDP then averages over the P processes, so every update
is the plain mean over the P·B·A triplets of the global batch, whatever P, B and A are.
A triplet without a usable synthetic clip carries w = 0 and finite placeholders in its synthetic
views, so it contributes exactly L_real and the z=r hinge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class LossParts:
    total: torch.Tensor
    real: torch.Tensor
    syn: torch.Tensor
    scr: torch.Tensor


def alignment(log_p_yes: torch.Tensor, log_p_no: torch.Tensor) -> torch.Tensor:
    """f = P(Yes) / (P(Yes) + P(No)), computed stably from log-probabilities."""
    return torch.sigmoid(log_p_yes - log_p_no)


def answer_nll(log_p_yes: torch.Tensor, log_p_no: torch.Tensor, label_yes: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the answer token (Yes where `label_yes`, else No)."""
    return -torch.where(label_yes, log_p_yes, log_p_no)


def scr_triplet(f_pos: torch.Tensor, f_shared: torch.Tensor, f_neg: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample semantic-consistency hinge: f(t) > f(t') + γ > f(t̄) + 2γ is loss-free."""
    return torch.relu(gamma + f_shared - f_pos) + torch.relu(gamma + f_neg - f_shared)


def synvita_objective(
    views: Mapping[str, Pair],
    w: torch.Tensor,
    *,
    denominator: float,
    gamma: float = 0.2,
    lambda_scr: float = 1.0,
    syn: bool = True,
    scr: bool = True,
) -> LossParts:
    """The three parts and their total (see the module docstring for views and normalisation).

    `syn`/`scr` switch L_syn^w and L_scr^w off: a switched-off part is a zero constant, and its
    views are not needed. Required views: rr, rs; ss, sr with `syn`; rp (and sp with ss) with `scr`.
    """
    missing = [v for v in _needed(views, syn, scr) if v not in views]
    if missing:
        raise KeyError(f"synvita_objective: views {missing} are needed for syn={syn}, scr={scr}")
    yes = torch.ones_like(w, dtype=torch.bool)
    zero = w.new_zeros(())

    real = (answer_nll(*views["rr"], yes) + answer_nll(*views["rs"], ~yes)).sum()
    syn_part = (w * (answer_nll(*views["ss"], yes) + answer_nll(*views["sr"], ~yes))).sum() if syn else zero
    scr_part = zero
    if scr:
        f = {name: alignment(*pair) for name, pair in views.items()}
        per = scr_triplet(f["rr"], f["rp"], f["rs"], gamma)
        if "ss" in views:
            per = per + w * scr_triplet(f["ss"], f["sp"], f["sr"], gamma)
        scr_part = per.sum()
    real, syn_part, scr_part = (x / denominator for x in (real, syn_part, scr_part))
    return LossParts(total=real + syn_part + lambda_scr * scr_part, real=real, syn=syn_part, scr=scr_part)


def _needed(views: Mapping[str, Pair], syn: bool, scr: bool) -> list[str]:
    needed = ["rr", "rs"]
    if syn:
        needed += ["ss", "sr"]
    if scr:
        needed += ["rp"] + (["sp"] if "ss" in views else [])
    return needed
