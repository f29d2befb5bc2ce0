"""The toy world: scenes, captions, hard negatives, rendering."""

import dataclasses
import random

import numpy as np
import pytest

from synvita.data.records import MISALIGNMENTS
from synvita.toyworld.grammar import PHRASINGS, CaptionError, caption, parse
from synvita.toyworld.negatives import negative
from synvita.toyworld.render import REAL, Style, render, shape_patches
from synvita.toyworld.world import COLOURS, SHAPES, Entity, Event, Scene, random_scene

SCENES = [random_scene(i) for i in range(400)]


def test_random_scenes_are_valid_and_deterministic():
    assert all(not s.problems() for s in SCENES)
    assert random_scene(7) == random_scene(7) and random_scene(7) != random_scene(8)
    assert {len(s.events) for s in SCENES} == {1, 2, 3} and {len(s.entities) for s in SCENES} == {1, 2, 3}


@pytest.mark.parametrize("phrasing", PHRASINGS)
def test_caption_round_trip(phrasing):
    for s in SCENES:
        text = caption(s, phrasing)
        assert parse(text) == s, text
        assert caption(parse(text), phrasing) == text


def test_caption_by_hand():
    s = Scene((Entity("circle", "red", "small", 2), Entity("square", "blue", "big")),
              (Event(0, "move up"), Event(1, "vanish"), Event(0, "spin")),
              "left of")
    assert caption(s) == ("Two small red circles are left of a big blue square. The small red circles move up, "
                          "then the big blue square vanishes, then the small red circles spin.")
    assert caption(s, "first") == ("Two small red circles are left of a big blue square. First the small red "
                                   "circles move up, next the big blue square vanishes, and finally the small "
                                   "red circles spin.")
    assert caption(s, "after").split(". ")[1] == ("After the small red circles move up, the big blue square "
                                                  "vanishes, then the small red circles spin.")


@pytest.mark.parametrize("bad", [
    "There is a small red circle.",  # no events
    "There is a small red circle. The big blue square jumps.",  # never introduced
    "There is a small red circle. The small red circle dances.",
    "There is two small red circle. The small red circle jumps.",
])
def test_parse_rejects(bad):
    with pytest.raises(CaptionError):
        parse(bad)


def _diff(a: Scene, b: Scene) -> set[str]:
    """What differs between two scenes, computed field by field (independent of the operators)."""
    out = set()
    if a.relation != b.relation and a.relation is not None and b.relation is not None:
        out.add("relation")
    if len(a.entities) != len(b.entities):
        return out | {"entities"}
    for x, y in zip(a.entities, b.entities):
        for f in ("shape", "colour", "size", "count"):
            if getattr(x, f) != getattr(y, f):
                out.add(f)
    if a.events != b.events:
        out.add("order" if sorted(a.events, key=str) == sorted(b.events, key=str) else "events")
    return out


EXPECTED = {"action": {"events"}, "attribute": ({"colour"}, {"size"}), "object": {"shape"},
            "count": {"count"}, "relation": {"relation"}, "flip": {"order"}, "hallucination": {"entities"}}


@pytest.mark.parametrize("kind", MISALIGNMENTS)
def test_each_operator_changes_one_thing(kind):
    made = 0
    for i, s in enumerate(SCENES):
        n = negative(s, kind, random.Random(i))
        if n is None:
            continue
        made += 1
        assert not n.problems() and n != s
        expected = EXPECTED[kind]
        assert _diff(s, n) in (expected if isinstance(expected, tuple) else (expected,)), (kind, s, n)
        assert parse(caption(n)) == n and caption(n) != caption(s)
        if kind == "hallucination":
            assert n.entities[:-1] == s.entities
            assert [e for e in n.events if e.entity < len(s.entities)] == list(s.events)
        if kind == "flip":
            k = next(j for j in range(len(s.events)) if s.events[j] != n.events[j])
            assert (n.events[k], n.events[k + 1]) == (s.events[k + 1], s.events[k])
    assert made >= 100, f"{kind} applied to only {made} of {len(SCENES)} scenes"


def test_flip_needs_two_events():
    s = Scene((Entity("circle", "red", "small"),), (Event(0, "jump"),))
    assert negative(s, "flip", random.Random(0)) is None
    assert negative(s, "relation", random.Random(0)) is None


def test_render_is_deterministic_and_shows_the_story():
    s = Scene((Entity("circle", "red", "big"),), (Event(0, "move right"), Event(0, "vanish")))
    flat = Style("flat")
    clip = render(s, flat, seed=3, frames=9, size=40)
    assert clip.shape == (9, 40, 40, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, render(s, flat, seed=3, frames=9, size=40))
    red = (clip[..., 0].astype(int) - clip[..., 2] > 100)
    xs = [np.nonzero(red[f])[1].mean() for f in range(5)]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs  # moving right during the first half
    assert red[0].sum() > 50 and red[-1].sum() == 0  # gone at the end


def test_shape_patches_name_the_shape_each_rendered_patch_shows():
    """Against the pixels: on a flat floor, the share of each patch painted in an entity's colour
    (in scenes whose entities differ in colour and never fade)."""
    flat, size, grid = Style("flat"), 48, 4
    seen = {"shape": 0, "none": 0}
    for i, s in enumerate(SCENES[:80]):
        if len({e.colour for e in s.entities}) < len(s.entities) or any(
                ev.action in ("appear", "vanish") for ev in s.events):
            continue
        for f in (0, 5):
            frame = render(s, flat, seed=i, frames=8, size=size, pick=[f])[0].astype(int)
            # a pixel at least half inside a shape is nearest its colour, of the floor's and the shapes'
            nearest = np.argmin([np.abs(frame - c).sum(-1) for c in
                                 (flat.background, *(COLOURS[e.colour] for e in s.entities))], axis=0)
            painted = np.zeros((1 + len(SHAPES), size, size))
            for k, e in enumerate(s.entities):
                painted[1 + SHAPES.index(e.shape)] += nearest == 1 + k
            g = size // grid
            cover = painted.reshape(-1, grid, g, grid, g).mean((2, 4)).reshape(len(painted), -1)
            labels = shape_patches(s, i, 8, f, size, grid)
            for p, label in enumerate(labels):
                if cover[:, p].max() >= 0.2:
                    assert label == cover[:, p].argmax(), (i, f, p)
                    seen["shape"] += 1
                elif cover[:, p].max() <= 0.04:
                    assert label == 0, (i, f, p)
                    seen["none"] += 1
    assert min(seen.values()) > 50, seen


def test_real_and_synthetic_styles_differ_in_appearance():
    s = random_scene(1)
    real, syn = render(s, REAL, 0), render(s, Style("syn", blur=1.0, flicker=0.2), 0)
    # sensor noise and texture: large high-frequency energy in the real style only
    hf = lambda v: np.abs(np.diff(v.astype(float), axis=2)).mean()
    assert hf(real) > 2 * hf(syn)
    # flicker: frame brightness varies in the synthetic style
    assert syn.reshape(len(syn), -1).mean(1).std() > real.reshape(len(real), -1).mean(1).std()


def test_textured_background_is_scipys_cubic_zoom_of_the_blotches():
    from scipy.ndimage import zoom

    from synvita.toyworld.render import _background

    for size in (34, 50):
        for seed in range(50):
            got = _background(REAL, size, np.random.default_rng(seed))
            rng = np.random.default_rng(seed)  # the same draws, upsampled by scipy itself
            blotches = rng.normal(0, 1, (6, 6, 1)) + 0.3 * rng.normal(0, 1, (6, 6, 3))
            want = np.full((size, size, 3), REAL.background, np.float32)
            want += 22 * zoom(blotches, (size / 6, size / 6, 1), order=3) + rng.normal(0, 6, (size, size, 3))
            np.testing.assert_array_equal(got, want)


def test_invalid_scene_is_refused():
    bad = Scene((Entity("circle", "red", "small", 3), Entity("square", "red", "small")), (Event(0, "jump"),), "above")
    assert bad.problems()
    with pytest.raises(ValueError, match="objects"):
        render(bad)
    assert dataclasses.asdict(random_scene(3)) == random_scene(3).to_json()
    assert Scene.from_json(random_scene(3).to_json()) == random_scene(3)


@pytest.mark.parametrize("style", ["llama", "qwen"])
def test_toy_words_are_single_tokens_of_the_tiny_tokenizers(style):
    """Base models learn the toy world from scratch: a word split into letters costs them steps."""
    from synvita.tiny.lmms import build_tokenizer

    tok = build_tokenizer(style)
    words = set()
    for i in range(60):
        for phrasing in PHRASINGS:
            words |= set(caption(random_scene(f"tok-{i}"), phrasing).replace(".", " ").replace(",", " ").split())
    split = sorted(w for w in words if len(tok(" " + w, add_special_tokens=False).input_ids) > 1)
    assert not split, f"toy words split into several tokens: {split}"


def test_side_by_side_runs_each_job_in_a_new_one_thread_process_and_keeps_order():
    import os

    import torch

    from synvita.toyworld.pool import side_by_side

    out = side_by_side([(os.getpid,), (torch.get_num_threads,), (abs, -3)], processes=2)
    assert out[0] != os.getpid() and out[1:] == [1, 3]
    # one process at a time, still a new one per job: no job inherits another's state
    pids = side_by_side([(os.getpid,)] * 3, processes=1)
    assert len(set(pids)) == 3 and os.getpid() not in pids
    with pytest.raises(ValueError, match="invalid literal"):
        side_by_side([(abs, -1), (int, "x")], processes=2)


def _seed_then_report(seed: int | None) -> tuple[bool, int]:
    """A job: whether its process had the heavy libraries imported before it ran, and torch's seed
    (after seeding it, when `seed` is given)."""
    import sys

    import torch

    loaded = all(name in sys.modules for name in ("transformers", "peft", "accelerate"))
    if seed is not None:
        torch.manual_seed(seed)
    return loaded, torch.initial_seed()


def test_side_by_side_starts_every_job_from_the_same_state_with_the_libraries_imported():
    from synvita.toyworld.pool import side_by_side

    # torch seeds itself at random in a new process: equal seeds mean one starting state, forked
    reports = side_by_side([(_seed_then_report, 123), (_seed_then_report, None), (_seed_then_report, None)],
                           processes=1)
    assert all(ready for ready, _ in reports)
    assert reports[0][1] == 123 and reports[1][1] == reports[2][1] != 123


def test_side_by_side_sends_the_jobs_standard_error_to_the_log(tmp_path):
    import warnings

    from synvita.toyworld.pool import side_by_side

    log = tmp_path / "jobs.log"
    assert side_by_side([(warnings.warn, "from a job")], log=log) == [None]
    assert "from a job" in log.read_text()
