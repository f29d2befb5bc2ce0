"""Toy text-to-video generators: failure rates as configured, rendering, ground truth."""

import json
import random

import numpy as np
import pytest

from synvita.data.records import MISALIGNMENTS
from synvita.toyworld.generator import FAILURES, PROFILES, ToyBackend
from synvita.toyworld.grammar import caption
from synvita.toyworld.render import render
from synvita.toyworld.world import random_scene

PROMPTS = [caption(random_scene(i)) for i in range(3000)]


@pytest.mark.parametrize("kind", MISALIGNMENTS)
def test_failure_rate_matches_configuration(kind):
    rate = 0.35
    gen = ToyBackend.from_settings({"profile": "toy-sharp", "failure_rates": {k: 0.0 for k in MISALIGNMENTS} | {kind: rate}})
    trials = failed = 0
    for seed, prompt in enumerate(PROMPTS):
        made = gen.realise(prompt, seed)
        # the failure can only happen where it can apply: judge that on the prompt scene itself
        if FAILURES[kind](made.prompt, random.Random(seed)) is None:
            continue
        trials += 1
        failed += made.rendered != made.prompt
        assert made.failures in ((), (kind,))
        assert (made.rendered != made.prompt) == bool(made.failures)
    assert trials > 300
    sigma = (rate * (1 - rate) / trials) ** 0.5
    assert abs(failed / trials - rate) < 4 * sigma + 0.01, (kind, failed, trials)


def test_failures_do_what_they_say():
    gen = ToyBackend(failure_rates={k: 1.0 for k in MISALIGNMENTS})
    for seed, prompt in enumerate(PROMPTS[:300]):
        made = gen.realise(prompt, seed)
        p, r = made.prompt, made.rendered
        if "hallucination" in made.failures:
            assert len(r.entities) < len(p.entities)
        elif "attribute" in made.failures and "object" not in made.failures and "count" not in made.failures:
            # colours swapped between objects: the same palette, bound differently
            assert sorted(e.colour for e in r.entities) == sorted(e.colour for e in p.entities)
            assert [e.colour for e in r.entities] != [e.colour for e in p.entities]


def test_generate_renders_the_realised_scene_and_records_ground_truth(tmp_path):
    truth = tmp_path / "toy" / "ground_truth.jsonl"
    gen = ToyBackend.from_settings({"profile": "toy-soft", "frames": 8, "size": 32, "ground_truth": str(truth)})
    clips = gen.generate(PROMPTS[:6], list(range(6)))
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(clips) == len(rows) == 6 and gen.fps == 8.0
    for i, (clip, row) in enumerate(zip(clips, rows)):
        made = gen.realise(PROMPTS[i], i)
        assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
        assert np.array_equal(clip, render(made.rendered, PROFILES["toy-soft"].style, i, 8, 32))
        assert row["faithful"] == (made.rendered == made.prompt) and row["prompt"] == PROMPTS[i]
    # a batch equals the single calls
    assert np.array_equal(gen.generate(PROMPTS[3:4], [3])[0], clips[3])


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="steps"):
        ToyBackend.from_settings({"steps": 3})
    with pytest.raises(ValueError, match="toy-sharp"):
        ToyBackend.from_settings({"profile": "nope"})
    with pytest.raises(ValueError, match="flip"):
        ToyBackend.from_settings({"failure_rates": {"flip": 1.5}})
