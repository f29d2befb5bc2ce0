import json
from pathlib import Path

import pytest

from synvita.data.records import ManifestError
from synvita.training.config import DataConfig
from synvita.training.data import load_examples, shard_positions
from training_data import make_run

RULES = {1: "failed", 2: "missing file", 3: "no clip", 4: "unscored"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"), n=6, generators=("gen-a", "gen-b"), real_only=RULES)


def cfg(run: Path, **kw):
    return DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl", weights=run / "weights.jsonl", **kw)


def test_join_and_the_real_only_rule(run):
    examples, report = load_examples(cfg(run), "margin")
    # t0 and t5 have two usable clips each; t1..t4 train real-only, one example each.
    assert [(e.triplet.id, e.clip.generator if e.clip else None) for e in examples] == [
        ("t0", "gen-a"), ("t0", "gen-b"), ("t1", None), ("t2", None), ("t3", None), ("t4", None),
        ("t5", "gen-a"), ("t5", "gen-b")]
    assert report.real_only == {"failed": 1, "clip file missing": 1, "no clip": 1, "unscored": 1}
    assert "6 triplets -> 8 examples (4 with a synthetic clip)" in report.summary()
    # margin = max(0, f_target - f_real): t0 gen-a 0.9-0.2, gen-b 0.8-0.2; t5 (i%3=2, i%2=1) 0.8-0.3, 0.7-0.3
    assert [round(e.w, 6) for e in examples] == [0.7, 0.6, 0, 0, 0, 0, 0.5, 0.4]
    assert all(e.video.is_file() for e in examples)


def test_filters_and_baseline(run):
    examples, _ = load_examples(cfg(run, generators=["gen-b"]), "indicator")
    assert [e.w for e in examples if e.clip] == [1.0, 1.0] and {e.clip.generator for e in examples if e.clip} == {"gen-b"}
    with pytest.raises(ValueError, match=r"data.generators: \['gen-z'\] match no generator in"):
        load_examples(cfg(run, generators=["gen-z"]), "margin")
    # Shell patterns select by name, as the shipped recipes' ["cogvideox*"] does.
    patterned, _ = load_examples(cfg(run, generators=["gen-*"]), "indicator")
    assert {e.clip.generator for e in patterned if e.clip} == {"gen-a", "gen-b"}
    with pytest.raises(ValueError, match="no triplets left"):
        load_examples(cfg(run, misalignments=["flip"]), "margin")
    baseline, report = load_examples(DataConfig(triplets=run / "triplets.jsonl"), "margin")
    assert len(baseline) == 6 and not any(e.clip for e in baseline) and not report.real_only


def test_explanations_without_any_nle_is_an_error_naming_the_field(tmp_path):
    run = make_run(tmp_path / "run", n=4)
    lines = (run / "triplets.jsonl").read_text().splitlines()
    stripped = tmp_path / "no_nle.jsonl"
    stripped.write_text("".join(json.dumps({**json.loads(line), "nle": None}) + "\n" for line in lines))
    with pytest.raises(ValueError, match=r"data.explanations: no triplet in .*no_nle.jsonl.*\(field nle\)"):
        load_examples(DataConfig(triplets=stripped, explanations=True), "margin")
    examples, _ = load_examples(DataConfig(triplets=run / "triplets.jsonl", explanations=True), "margin")
    assert all(e.triplet.nle for e in examples)


def test_bad_weights_row_names_file_and_line(run, tmp_path):
    bad = tmp_path / "weights.jsonl"
    good = '{"clip_id": "t0-gen-a", "triplet_id": "t0", "generator": "gen-a", "misalignment": null, "f_target": 0.5, "f_real": 0.1}'
    bad.write_text(good + '\n{"clip_id": "x", "triplet_id": "t0", "generator": "g", "misalignment": null, "f_real": 0.1}\n')
    with pytest.raises(ManifestError, match=r"weights.jsonl:2: f_target: missing"):
        load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl", weights=bad), "margin")


def test_sharding_covers_each_step_identically_for_any_layout():
    one = shard_positions(16, epoch=0, seed=3, batch=4, accum=1, processes=1, rank=0)
    two = [shard_positions(16, epoch=0, seed=3, batch=2, accum=1, processes=2, rank=r) for r in (0, 1)]
    accum = shard_positions(16, epoch=0, seed=3, batch=2, accum=2, processes=1, rank=0)
    for step in range(4):
        assert sorted(one[step]) == sorted(two[0][step] + two[1][step]) == sorted(accum[2 * step] + accum[2 * step + 1])
    assert sorted(sum(one, [])) == list(range(16))
    assert shard_positions(16, epoch=0, seed=3, batch=4, accum=1, processes=1, rank=0, start_step=2) == one[2:]
    assert one != shard_positions(16, epoch=1, seed=3, batch=4, accum=1, processes=1, rank=0)
    with pytest.raises(ValueError, match="do not fill one optimizer step"):
        shard_positions(3, epoch=0, seed=0, batch=2, accum=1, processes=2, rank=0)
