"""Toy benchmarks and triplets in the published formats, read by the project's own parsers."""

from collections import Counter, defaultdict

import pytest

from synvita.data.records import Triplet, read_manifest
from synvita.data.video import FrameSampler, read_video
from synvita.data.videocon import read_human_csv, read_llm_csv
from synvita.evaluation.benchmarks import read_atp_hard, read_ssv2
from synvita.toyworld.benchmarks import TEMPLATES, held_out, write_benchmarks, write_triplets
from synvita.toyworld.grammar import parse


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"), n_llm=20, n_human=20, n_atp=30, frames=8, size=32)


def test_entailment_files_read_as_videocon(bench):
    llm = read_llm_csv(bench / "videocon_llm_entailment.csv", bench)
    human = read_human_csv(bench / "videocon_human.csv", bench)
    assert len(llm) >= 30 and len(human) >= 15
    for t in llm + human:
        assert held_out(parse(t.caption)) and parse(t.negative) != parse(t.caption)
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

    drawn = [scene for scene, _ in islice(_fresh_clips("pretrain-0", frames=2, size=16), 300)]
    assert not any(held_out(s) for s in drawn)
    assert len(set(drawn)) >= 0.95 * len(drawn)
    test_scenes = {parse(c.caption) for c in read_llm_csv(bench / "videocon_llm_entailment.csv", bench)}
    assert not test_scenes & set(drawn)
