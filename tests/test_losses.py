import math

import pytest
import torch

from synvita.training.losses import Explanations, answer_nll, scr_hinges, synvita_objective

# (P(Yes), P(No)) per view for three triplets: 1 has a clip with w = 0.5; 2 has no clip (its synthetic
# views are placeholders, w = 0); 3 has a clip whose weight is 0.
PROBS = {
    "rr": [(0.6, 0.2), (0.8, 0.1), (0.5, 0.5)],  # f = 0.75, 8/9, 0.5
    "rs": [(0.3, 0.3), (0.5, 0.1), (0.4, 0.1)],  # f = 0.5, 5/6, 0.8
    "rp": [(0.4, 0.4), (0.2, 0.2), (0.3, 0.1)],  # f = 0.5, 0.5, 0.75
    "ss": [(0.5, 0.25), (1.0, 1.0), (0.2, 0.2)],  # f = 2/3, placeholder, 0.5
    "sr": [(0.2, 0.6), (1.0, 1.0), (0.1, 0.1)],  # f = 0.25, placeholder, 0.5
    "sp": [(0.1, 0.3), (1.0, 1.0), (0.3, 0.3)],  # f = 0.25, placeholder, 0.5
}
W = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
HAS_CLIP = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
# P(end of sequence | prompt, label answer) on the answer rows (placeholders where there is no clip).
EOS = {"rr": [0.9, 0.8, 0.5], "rs": [0.7, 0.6, 0.9], "ss": [0.4, 1.0, 0.8], "sr": [0.5, 1.0, 0.2]}
# L_scr^w by hand (Eq. 5.6, γ = 0.2): only triplet 1 has w > 0.
#   z=r: max(0, .2 + .5 - .75) = 0, max(0, .2 + .5 - .5) = .2;  z=s: max(0, .2 + .25 - 2/3) = 0, max(0, .2 + .25 - .25) = .2
#   triplet 1: .5 * (.2 + .2) = .2.  Triplets 2 and 3 (whose hinges alone would be .53 and .7) add nothing.
SCR_SUM = 0.2
REAL_SUM = -math.log(0.6) - math.log(0.3) - math.log(0.8) - math.log(0.1) - math.log(0.5) - math.log(0.1)
SYN_SUM = 0.5 * (-math.log(0.5) - math.log(0.6))
EOS_REAL_SUM = -sum(math.log(p) for v in ("rr", "rs") for p in EOS[v])
EOS_SYN_SUM = 0.5 * (-math.log(0.4) - math.log(0.5))


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def views():
    return {k: (t(v).log()[:, 0], t(v).log()[:, 1]) for k, v in PROBS.items()}


def eos():
    return {k: t(v).log() for k, v in EOS.items()}


def test_per_triplet_against_hand_values():
    parts = synvita_objective(views(), W, HAS_CLIP, normalization="per_triplet", denominator=3, gamma=0.2,
                              lambda_scr=0.5)
    assert parts.real.item() == pytest.approx(REAL_SUM / 3)
    assert parts.syn.item() == pytest.approx(SYN_SUM / 3)
    assert parts.scr.item() == pytest.approx(SCR_SUM / 3)
    assert parts.explanation.item() == 0
    assert parts.total.item() == pytest.approx((REAL_SUM + SYN_SUM + 0.5 * SCR_SUM) / 3)


def test_official_against_hand_values():
    expl = Explanations(nll_sum=t([1.5, 0.0, 2.0]), tokens=t([3, 0, 4]))
    parts = synvita_objective(views(), W, HAS_CLIP, normalization="official", eos=eos(), explanations=expl,
                              gamma=0.2, lambda_scr=0.5, lambda_explanation=2.0)
    # Label tokens: answer + end of sequence on 3 x (rr, rs) and 2 x (ss, sr) rows, plus 3 + 4 explanation tokens.
    tokens = 2 * (2 * 3 + 2 * 2) + 7
    assert parts.real.item() == pytest.approx((REAL_SUM + EOS_REAL_SUM) / tokens)
    assert parts.syn.item() == pytest.approx((SYN_SUM + EOS_SYN_SUM) / tokens)
    assert parts.explanation.item() == pytest.approx(3.5 / tokens)
    # A mean over the (real, synthetic) row pairs with a clip: two per triplet with a clip.
    assert parts.scr.item() == pytest.approx(SCR_SUM / 4)
    assert parts.total.item() == pytest.approx(
        (REAL_SUM + EOS_REAL_SUM + SYN_SUM + EOS_SYN_SUM + 2.0 * 3.5) / tokens + 0.5 * SCR_SUM / 4)
    # Per triplet, explanations are a mean over each triplet's own tokens.
    per = synvita_objective(views(), W, HAS_CLIP, normalization="per_triplet", denominator=3, explanations=expl)
    assert per.explanation.item() == pytest.approx((1.5 / 3 + 2.0 / 4) / 3)


def test_all_zero_weights_give_no_scr():
    for normalization in ("official", "per_triplet"):
        parts = synvita_objective(views(), torch.zeros(3, dtype=torch.float64), HAS_CLIP, eos=eos(),
                                  normalization=normalization, denominator=3)
        assert parts.scr.item() == 0 and parts.syn.item() == 0


def test_building_blocks():
    lp = torch.tensor([0.7, 0.2]).log()
    ln = torch.tensor([0.1, 0.5]).log()
    got = answer_nll(lp, ln, torch.tensor([True, False]))
    torch.testing.assert_close(got, torch.tensor([-math.log(0.7), -math.log(0.5)]))
    got = scr_hinges(torch.tensor([0.9, 0.3]), torch.tensor([0.6, 0.5]), torch.tensor([0.2, 0.6]), 0.2)
    torch.testing.assert_close(got, torch.tensor([0.0 + 0.0, 0.4 + 0.3]))


def test_switches_remove_parts_and_their_views():
    full = views()
    real_only = {k: full[k] for k in ("rr", "rs")}
    parts = synvita_objective(real_only, W, HAS_CLIP, normalization="per_triplet", denominator=3, syn=False,
                              scr=False)
    assert parts.syn.item() == 0 and parts.scr.item() == 0
    assert parts.total.item() == pytest.approx(REAL_SUM / 3)
    no_syn = synvita_objective(full, W, HAS_CLIP, normalization="per_triplet", denominator=3, syn=False)
    assert no_syn.syn.item() == 0 and no_syn.scr.item() == pytest.approx(SCR_SUM / 3)
    # Official without L_syn: only the real rows' tokens count.
    official = synvita_objective(real_only, W, HAS_CLIP, normalization="official", eos=eos(), syn=False, scr=False)
    assert official.real.item() == pytest.approx((REAL_SUM + EOS_REAL_SUM) / (2 * 2 * 3))
    with pytest.raises(KeyError, match=r"\['ss', 'sr'\]"):
        synvita_objective(real_only, W, HAS_CLIP, normalization="per_triplet", scr=False)
    with pytest.raises(KeyError, match="eos"):
        synvita_objective(full, W, HAS_CLIP, normalization="official")


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
    synvita_objective(batch_views(model, feats), w, w > 0, normalization="per_triplet", denominator=4).total.backward()
    one_batch = grads(model)

    # One process, per-device batch 2, two accumulation steps: denominator 2*2.
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        synvita_objective(batch_views(model, feats[half]), w[half], w[half] > 0, normalization="per_triplet", denominator=4).total.backward()
    for a, b in zip(one_batch, grads(model)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)

    # Two processes with batch 2 each (denominator 2): DDP averages their gradients.
    per_process = []
    for half in (slice(0, 2), slice(2, 4)):
        model.zero_grad()
        synvita_objective(batch_views(model, feats[half]), w[half], w[half] > 0, normalization="per_triplet", denominator=2).total.backward()
        per_process.append(grads(model))
    for a, b, c in zip(one_batch, *per_process):
        torch.testing.assert_close(a, (b + c) / 2, rtol=1e-6, atol=1e-7)
