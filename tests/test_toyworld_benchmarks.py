"""Toy benchmarks and triplets in the published formats, read by the project's own parsers."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from synvita.data.records import Triplet, read_manifest
from synvita.data.video import FrameSampler, read_video
from synvita.data.videocon import read_human_csv, read_llm_csv
from synvita.data.benchmarks import read_atp_hard, read_ssv2
from synvita.toyworld import benchmarks
from synvita.toyworld.benchmarks import (
    TEMPLATES, benchmark_writers, held_out, scenes, split, write_benchmarks, write_triplets,
)
from synvita.toyworld.world import random_scene
from synvita.toyworld.grammar import parse


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"), n_llm=20, n_human=20, n_atp=30, frames=8, size=32)


def test_entailment_files_read_as_videocon(bench):
    llm = read_llm_csv(bench / "videocon_llm_entailment.csv", bench)
    human = read_human_csv(bench / "videocon_human.csv", bench)
    assert len(llm) >= 30 and len(human) >= 15
    for t in llm + human:
        assert split(parse(t.caption)) == "test" and parse(t.negative) != parse(t.caption)
        assert read_video(t.video, FrameSampler(num_frames=4)).shape == (4, 32, 32, 3)
    assert {t.hard for t in human} == {True, False}
    for t in human:  # the hard ones are the same events in another order
        p, n = parse(t.caption), parse(t.negative)
        assert t.hard == (p.entities == n.entities and p.relation == n.relation and sorted(map(str, p.events)) == sorted(map(str, n.events)))
        assert ", then" not in t.caption.split(". ")[-1] or t.caption.split(". ")[-1].startswith("After")
    assert len({t.misalignment for t in llm}) == 7


def test_ssv2_like_retrieval(bench):
    pairs = read_ssv2(bench / "eval_ssv2_temporal.csv")
    queries = defaultdict(list)
    for p in pairs:
        queries[p.group].append(p)
    assert len(queries) == len(TEMPLATES) == 18
    for caption, members in queries.items():
        assert len(members) == 216 and sum(p.label for p in members) == 12
        assert caption.startswith("something ")
    # each template's reverse is a template too: order is what separates them
    assert {(b, a) for a, b in TEMPLATES} == set(TEMPLATES)


def test_atp_like_questions(bench):
    pairs = read_atp_hard(bench / "eval-nextqa-atphard.csv", bench / "nextqa-atphard.csv")
    groups = defaultdict(list)
    for p in pairs:
        groups[p.group].append(p)
    assert len(groups) >= 20
    assert {len(g) for g in groups.values()} == {5}
    assert set(Counter(g[0].subset for g in groups.values())) == {"C", "T"}
    for g in groups.values():
        assert len({p.caption for p in g}) == 5 and 0 <= g[0].label < 5


def test_triplets_are_training_scenes_only(tmp_path, bench):
    path = write_triplets(tmp_path, n_scenes=15, frames=8, size=32)
    triplets = read_manifest(path, Triplet)
    assert len(triplets) == 30 and {t.split for t in triplets} == {"train"}
    assert not any(held_out(parse(t.caption)) for t in triplets)
    test_captions = {t.caption for t in read_llm_csv(bench / "videocon_llm_entailment.csv", bench)}
    assert not test_captions & {t.caption for t in triplets}
    assert read_video(path.parent / triplets[0].video, FrameSampler(num_frames=8)).shape == (8, 32, 32, 3)


def test_base_models_pretrain_on_fresh_training_scenes_only(bench):
    """A base model must never see a benchmark scene, and sees each pretraining scene about once."""
    from itertools import islice

    from synvita.toyworld.basemodels import _fresh_clips

    drawn = [scene for scene, *_ in islice(_fresh_clips("pretrain-0", frames=2, size=16), 300)]
    assert not any(held_out(s) for s in drawn)
    assert len(set(drawn)) >= 0.95 * len(drawn)
    test_scenes = {parse(c.caption) for c in read_llm_csv(bench / "videocon_llm_entailment.csv", bench)}
    assert not test_scenes & set(drawn)


def test_member_minimal_pairs_balance_every_caption_and_differ_in_one_thing():
    """Each caption a member is asked is a Yes as often as a No, and a minimal pair's two frames
    are the same drawing of two scenes that differ in one frame-visible thing."""
    import random
    from itertools import islice

    from synvita.toyworld.basemodels import STATIC_KINDS, _fresh_clips, _questions
    from synvita.toyworld.negatives import negative

    drawn = list(islice(_fresh_clips("members-test", frames=8, size=32, pick=lambda i: [i % 8]), 8))
    scene, clip, redraw = drawn[0]
    assert np.array_equal(redraw(scene), clip)  # a redraw of the same scene is the same picture
    clips, texts, questions = _questions(drawn, random.Random(0), hard_share=1.0)
    frames = [c[0] for c in clips]
    assert len(frames) == len(texts) > len(drawn)  # minimal-pair frames were added
    answers = defaultdict(Counter)
    for _, text, yes in questions:
        answers[text][yes] += 1
    assert all(c[True] == c[False] for c in answers.values())
    asked = set(questions)
    for j in range(len(drawn), len(frames)):
        other = next(t for f, t, yes in questions if f == j and yes)
        own = next(t for f, t, yes in questions if f == j and not yes)
        i = next(f for f, t, yes in questions if f < len(drawn) and t == own and yes)
        assert (i, other, False) in asked
        original, _, redraw = drawn[i]
        assert parse(own) == original
        hard = {negative(original, k, random.Random(seed)) for k in STATIC_KINDS for seed in range(1000)}
        assert parse(other) in hard
        assert np.array_equal(frames[j], redraw(parse(other))[0])


def test_without_minimal_pairs_a_step_is_clip_pairs_and_draws_only_its_captions():
    """The LMM's steps (no minimal pairs) stay what they were: cached LMMs are keyed by settings."""
    import random
    from itertools import islice

    from synvita.toyworld.basemodels import _fresh_clips, _questions, _spoken

    drawn = list(islice(_fresh_clips("pretrain-test", frames=2, size=16), 8))
    rng, expected = random.Random(3), random.Random(3)
    clips, texts, questions = _questions(drawn, rng, hard_share=0.0)
    assert texts == [_spoken(s, expected) for s, *_ in drawn] and len(clips) == len(drawn)
    assert rng.getstate() == expected.getstate()
    assert questions[:4] == [(0, texts[0], True), (0, texts[1], False), (1, texts[1], True), (1, texts[0], False)]


def test_split_is_hashed_four_fifths_train_and_one_tenth_each_val_and_test():
    """The base models' checks read validation scenes, the benchmarks test scenes: never the same."""
    from synvita.toyworld.grammar import caption
    from synvita.utils import stable_seed

    sides = Counter(split(random_scene(f"split-{i}")) for i in range(3000))
    assert abs(sides["train"] / 3000 - 0.8) < 0.03 and abs(sides["val"] / 3000 - 0.1) < 0.02
    s = random_scene("split-0")
    h = stable_seed("toyworld-split", caption(s))  # by hand: the caption's hash decides
    assert split(s) == ("train" if h % 5 else "test" if h // 5 % 2 == 0 else "val")
    assert held_out(s) == (split(s) != "train")
    assert {split(x) for x in scenes("check", 30, "val")} == {"val"}
    with pytest.raises(ValueError, match="unknown split"):
        scenes("check", 3, "dev")


def test_heldout_checks_pair_each_caption_with_its_own_negatives():
    from synvita.toyworld.basemodels import STATIC_KINDS, heldout_aucs

    seen = []

    def oracle(clip, texts):  # two "frames" per clip: the own caption (first) scores highest on both
        seen.append(texts)
        return np.array([[1.0] + [0.0] * (len(texts) - 1), [0.9] + [0.1] * (len(texts) - 1)])

    out = heldout_aucs(oracle, frames=2, clip_size=16, kinds=STATIC_KINDS, n=12)
    assert set(out) == {"easy", "hard", *STATIC_KINDS} and set(out.values()) == {100.0}
    assert all(parse(t[0]) != parse(x) for t in seen for x in t[1:])
    assert all(split(parse(t[0])) == "val" for t in seen)
    constant = heldout_aucs(lambda clip, texts: np.ones(len(texts)), 2, 16, ("flip",), n=12)
    assert constant == {"easy": 50.0, "hard": 50.0, "flip": 50.0}


@pytest.mark.parametrize("kind", ["llava-1.5", "qwen2-vl-image"])
def test_teaching_shape_trains_then_freezes_the_tower_alone(kind, tmp_path):
    """`_teach_shape` moves the visual encoder and nothing of the language model, then freezes the
    tower; the projector and the language model stay trainable for the member's own training."""
    import torch

    from synvita.scoring.members import MEMBERS
    from synvita.tiny.members import TINY_MEMBERS
    from synvita.toyworld.basemodels import PROJECTORS, MemberSettings, _image_tokens, _member_name, _teach_shape
    from synvita.toyworld.render import REAL

    TINY_MEMBERS[kind](tmp_path, 0, "tiny")
    member = MEMBERS.get(_member_name(kind)).load(kind, str(tmp_path))
    before = {n: p.detach().clone() for n, p in member.model.named_parameters()}
    settings = MemberSettings(tower_steps=3, tower_batch=4)
    encode = _image_tokens(member.model, member.processor.image_processor)
    accuracy = _teach_shape(member.model, encode, settings, kind, [0, 7], (REAL,))
    assert 0 <= accuracy <= 1
    moved = {n for n, p in member.model.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n, p in member.model.named_parameters() if not p.requires_grad}
    visual = "model.vision_tower." if kind == "llava-1.5" else "model.visual."
    assert frozen and all(n.startswith(visual) and not n.startswith(PROJECTORS[kind]) for n in frozen)
    assert frozen <= moved and any(n.startswith(PROJECTORS[kind]) for n in moved)
    assert all(n.startswith(visual) or n.startswith(PROJECTORS[kind]) for n in moved)


def test_a_benchmark_killed_midway_is_the_only_one_a_resumed_run_writes_again(tmp_path, monkeypatch):
    sizes = dict(n_llm=4, n_human=4, n_atp=6, frames=4, size=32)
    done, killed = benchmark_writers(tmp_path, **sizes)[:2]
    done[0](*done[1:])
    written = []

    def dies_on_the_third_clip(path, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        return write_video(path, *args, **kwargs)

    write_video = benchmarks.write_video
    monkeypatch.setattr(benchmarks, "write_video", dies_on_the_third_clip)
    with pytest.raises(KeyboardInterrupt):
        killed[0](*killed[1:])
    assert len(written) == 2 and not (tmp_path / "videocon_human.csv").exists()
    todo = benchmark_writers(tmp_path, resume=True, **sizes)
    assert [w[0] for w in todo] == [benchmarks.human, benchmarks.ssv2_temporal, benchmarks.atp_hard]
    assert todo == benchmark_writers(tmp_path, **sizes)[1:]  # the same arguments as a fresh run
