"""Tiny T2V pipelines: seeded generation is repeatable, and a saved pipeline loads back unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synvita.tiny.pipelines import TINY_CALL, TINY_PIPELINES, make_tiny_pipeline


def _generate(pipe, kind, seed, prompt="a man is holding two large dumbbells"):
    out = pipe(
        prompt=[prompt], negative_prompt="", guidance_scale=3.0, output_type="np",
        generator=torch.Generator().manual_seed(seed), **TINY_CALL[kind],
    ).frames
    return np.asarray(out)[0]


@pytest.mark.parametrize("kind", sorted(TINY_PIPELINES))
def test_tiny_pipeline_seeded_and_round_trip(kind, tmp_path):
    from diffusers import DiffusionPipeline

    pipe = make_tiny_pipeline(kind, seed=0)
    first = _generate(pipe, kind, seed=7)
    call = TINY_CALL[kind]
    assert first.shape == (call["num_frames"], call["height"], call["width"], 3)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, _generate(pipe, kind, seed=7))
    # A different noise seed must change the clip, or the equality above proves nothing.
    assert np.abs(first - _generate(pipe, kind, seed=8)).max() > 1e-4

    loaded = DiffusionPipeline.from_pretrained(TINY_PIPELINES[kind](tmp_path / kind, 0))
    assert type(loaded) is type(pipe)
    assert not any(m.training for m in loaded.components.values() if isinstance(m, torch.nn.Module))
    # Same weights (state dicts compare equal); Wan's loaded transformer picks a different CPU kernel
    # path and moves a few values by one float32 ulp, so equality is to float precision.
    np.testing.assert_allclose(first, _generate(loaded, kind, seed=7), rtol=0, atol=1e-6)
