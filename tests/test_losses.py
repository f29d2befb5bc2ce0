import math

import pytest
import torch

from synvita.training.losses import answer_nll, scr_triplet, synvita_objective

# Probabilities (P(Yes), P(No)) per view for two triplets; triplet 2 has no synthetic clip (w = 0).
PROBS = {
    "rr": [(0.6, 0.2), (0.8, 0.1)],  # f = 0.75, 8/9
    "rs": [(0.3, 0.3), (0.5, 0.1)],  # f = 0.5, 5/6
    "rp": [(0.4, 0.4), (0.2, 0.2)],  # f = 0.5, 0.5
    "ss": [(0.5, 0.25), (0.5, 0.5)],  # f = 2/3, placeholder
    "sr": [(0.2, 0.6), (0.5, 0.5)],  # f = 0.25, placeholder
    "sp": [(0.1, 0.3), (0.5, 0.5)],  # f = 0.25, placeholder
}
W = torch.tensor([0.5, 0.0], dtype=torch.float64)


def views():
    return {k: (torch.tensor(v, dtype=torch.float64).log()[:, 0], torch.tensor(v, dtype=torch.float64).log()[:, 1])
            for k, v in PROBS.items()}


def test_parts_against_hand_values():
    parts = synvita_objective(views(), W, denominator=2, gamma=0.2, lambda_scr=0.5)
    real = (-math.log(0.6) - math.log(0.3) - math.log(0.8) - math.log(0.1)) / 2
    syn = 0.5 * (-math.log(0.5) - math.log(0.6)) / 2
    # Triplet 1, z=r: max(0, .2+.5-.75)=0, max(0, .2+.5-.5)=.2; z=s: .5*(max(0,.2+.25-2/3)=0 + max(0,.2+.25-.25)=.2)
    # Triplet 2, z=r: max(0, .2+.5-8/9)=0, max(0, .2+5/6-.5)=.2+1/3; z=s: w=0.
    scr = (0.2 + 0.1 + 0.2 + 1 / 3) / 2
    assert parts.real.item() == pytest.approx(real)
    assert parts.syn.item() == pytest.approx(syn)
    assert parts.scr.item() == pytest.approx(scr)
    assert parts.total.item() == pytest.approx(real + syn + 0.5 * scr)


def test_building_blocks():
    lp = torch.tensor([0.7, 0.2]).log()
    ln = torch.tensor([0.1, 0.5]).log()
    got = answer_nll(lp, ln, torch.tensor([True, False]))
    torch.testing.assert_close(got, torch.tensor([-math.log(0.7), -math.log(0.5)]))
    got = scr_triplet(torch.tensor([0.9, 0.3]), torch.tensor([0.6, 0.5]), torch.tensor([0.2, 0.6]), 0.2)
    torch.testing.assert_close(got, torch.tensor([0.0 + 0.0, 0.4 + 0.3]))


def test_switches_remove_parts_and_their_views():
    full = views()
    real_only = {k: full[k] for k in ("rr", "rs")}
    parts = synvita_objective(real_only, W, denominator=2, syn=False, scr=False)
    assert parts.syn.item() == 0 and parts.scr.item() == 0
    assert parts.total.item() == pytest.approx(synvita_objective(full, W, denominator=2).real.item())
    # L_scr without L_syn still uses the synthetic hinge when the synthetic views are given.
    no_syn = synvita_objective(full, W, denominator=2, syn=False)
    assert no_syn.syn.item() == 0 and no_syn.scr.item() == pytest.approx((0.2 + 0.1 + 0.2 + 1 / 3) / 2)
    with pytest.raises(KeyError, match=r"\['ss', 'sr'\]"):
        synvita_objective(real_only, W, denominator=2, scr=False)


class TinyScorer(torch.nn.Module):
    """A learnable stand-in for the LMM's answer head: features -> log-softmax over a 5-token vocab."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(3, 5)

    def forward(self, x):
        logp = self.head(x).log_softmax(-1)
        return logp[..., 1], logp[..., 2]


def batch_views(model, feats):
    return {name: model(feats[:, i]) for i, name in enumerate(("rr", "rs", "rp", "ss", "sr", "sp"))}


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_batch_of_4_equals_accumulated_2x2_and_2_processes():
    torch.manual_seed(1)
    feats = torch.randn(4, 6, 3)
    w = torch.tensor([0.3, 0.0, 1.0, 0.7])

    model = TinyScorer()
    synvita_objective(batch_views(model, feats), w, denominator=4).total.backward()
    one_batch = grads(model)

    # One process, per-device batch 2, two accumulation steps: denominator 2*2.
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        synvita_objective(batch_views(model, feats[half]), w[half], denominator=4).total.backward()
    for a, b in zip(one_batch, grads(model)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    # Two processes with batch 2 each (denominator 2): DDP averages their gradients.
    per_process = []
    for half in (slice(0, 2), slice(2, 4)):
        model.zero_grad()
        synvita_objective(batch_views(model, feats[half]), w[half], denominator=2).total.backward()
        per_process.append(grads(model))
    for a, b, c in zip(one_batch, *per_process):
        torch.testing.assert_close(a, (b + c) / 2, rtol=1e-6, atol=1e-7)
