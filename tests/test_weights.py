import numpy as np
import pytest
import torch

from synvita.data.records import WeightRow
from synvita.weights import DEFAULT_WEIGHTING, WEIGHTINGS, clip_weight, with_weights

# (f_target, f_real) pairs and each strategy's value, worked out by hand.
PAIRS = [(0.9, 0.3), (0.4, 0.7), (0.5, 0.5), (0.0, 1.0)]
EXPECTED = {
    "fixed": [1.0, 1.0, 1.0, 1.0],
    "target": [0.9, 0.4, 0.5, 0.0],
    "target_times_not_real": [0.63, 0.12, 0.25, 0.0],
    "indicator": [1.0, 0.0, 0.0, 0.0],
    "margin": [0.6, 0.0, 0.0, 0.0],
}


def test_registry_names_and_default():
    assert WEIGHTINGS.names() == sorted(EXPECTED)
    assert DEFAULT_WEIGHTING == "margin"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_values_for_floats_arrays_and_tensors(name):
    fn = WEIGHTINGS.get(name)
    for (ft, fr), want in zip(PAIRS, EXPECTED[name]):
        assert float(fn(ft, fr)) == pytest.approx(want)
    ft, fr = np.array(PAIRS).T
    np.testing.assert_allclose(fn(ft, fr), EXPECTED[name], atol=1e-12)
    out = fn(torch.tensor(ft, dtype=torch.float32), torch.tensor(fr, dtype=torch.float32))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor(EXPECTED[name]), atol=1e-6, rtol=0)


def _row(f_target, f_real, weights=None):
    return WeightRow(clip_id="gen/t_001", triplet_id="t", generator="gen", misalignment=None,
                     f_target=f_target, f_real=f_real, weights=weights or {})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_clip_weight_is_computed_from_the_scores(name):
    for (ft, fr), want in zip(PAIRS, EXPECTED[name]):
        # Whatever weights a row carries, w comes from its scores under the weighting asked for.
        assert clip_weight(_row(ft, fr, {name: 123.0}), name) == pytest.approx(want)
    assert clip_weight(_row(0.9, None), name) is None  # no real caption: unscored


def test_with_weights_records_every_weighting():
    for i, (ft, fr) in enumerate(PAIRS):
        assert with_weights(_row(ft, fr)).weights == pytest.approx({k: v[i] for k, v in EXPECTED.items()})
    assert with_weights(_row(0.9, None, {"margin": 1.0})).weights == {}
