"""Records, JSON Lines manifests, their validation errors, and the datasets.Dataset view."""

from __future__ import annotations

import json

import pytest

from synvita.data.records import (
    MISALIGNMENTS, ManifestError, ScoreRow, SyntheticClip, Triplet, WeightRow,
    append_record, manifest_dataset, read_manifest, write_manifest,
)

TRIPLET = dict(id="vatex_abc_001", video="/data/vatex/abc.mp4", caption="a man climbs a palm tree",
               negative="a man climbs down a palm tree", misalignment="relation", source="VaTeX", split="train")
CLIP = dict(id="vatex_abc_001-toy-0", triplet_id="vatex_abc_001", caption="a man climbs down a palm tree",
            generator="toy", seed=123, path="clips/toy/vatex_abc_001-toy-0.mp4", status="done",
            settings={"steps": 4, "guidance": 6.0, "size": [32, 48]}, num_frames=8, error=None,
            elapsed=0.5, versions={"torch": "2.14.1"})
SCORE = dict(clip_id="vatex_abc_001-toy-0", member="llava-1.5", role="target",
             caption="a man climbs down a palm tree", frames=[0, 3, 5, 7], p_yes=[0.9, 0.8, 0.7, 1])


def test_misalignment_names_are_the_contract():
    assert MISALIGNMENTS == ("action", "attribute", "object", "count", "relation", "flip", "hallucination")


def test_round_trip_every_record_kind(tmp_path):
    records = {
        Triplet: [Triplet(**TRIPLET), Triplet(**{**TRIPLET, "id": "h_1", "misalignment": None, "nle": "no", "hard": True})],
        SyntheticClip: [SyntheticClip(**CLIP), SyntheticClip(**{**CLIP, "id": "x", "status": "failed", "error": "OOM"})],
        ScoreRow: [ScoreRow(**SCORE)],
        WeightRow: [WeightRow("c", "t", "toy", "flip", 0.75, 0.25, {"m": {"target": 0.75, "real": 0.25}}, {"margin": 0.5})],
    }
    for cls, items in records.items():
        path = tmp_path / f"{cls.__name__}.jsonl"
        write_manifest(path, items)
        assert read_manifest(path, cls) == items
        assert len(path.read_text().splitlines()) == len(items)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ScoreRow.jsonl", "SyntheticClip.jsonl", "Triplet.jsonl", "WeightRow.jsonl"]


def test_append_record_writes_one_line_each(tmp_path):
    path = tmp_path / "run" / "clips.jsonl"
    first, second = SyntheticClip(**CLIP), SyntheticClip(**{**CLIP, "id": "second", "seed": 7})
    append_record(path, first)
    append_record(path, second)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [CLIP["id"], "second"]
    assert read_manifest(path, SyntheticClip) == [first, second]


def write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


@pytest.mark.parametrize("cls, bad, field, problem", [
    (Triplet, {k: v for k, v in TRIPLET.items() if k != "caption"}, "caption", "missing"),
    (Triplet, {**TRIPLET, "misalignment": "counting"}, "misalignment", "'counting' is not one of action"),
    (Triplet, {**TRIPLET, "caption": "   "}, "caption", "must not be empty"),
    (Triplet, {**TRIPLET, "hard": "yes"}, "hard", "expected bool"),
    (Triplet, {**TRIPLET, "captoin": "typo"}, "captoin", "unknown field for Triplet"),
    (SyntheticClip, {**CLIP, "seed": "123"}, "seed", "expected int, got str"),
    (SyntheticClip, {**CLIP, "seed": True}, "seed", "expected int, got bool"),
    (SyntheticClip, {**CLIP, "status": "ok"}, "status", "'ok' is not one of done, failed"),
    (SyntheticClip, {**CLIP, "status": "failed"}, "error", "a failed clip needs an error message"),
    (SyntheticClip, {**CLIP, "settings": [1]}, "settings", "expected an object"),
    (ScoreRow, {**SCORE, "p_yes": [0.5, 1.5, 0.1, 0.2]}, "p_yes", "item 1: 1.5 is not a probability"),
    (ScoreRow, {**SCORE, "p_yes": [0.5]}, "p_yes", "needs one value per frame (4 frames, 1 values)"),
    (ScoreRow, {**SCORE, "frames": [0, 1.5, 2, 3]}, "frames", "item 1: expected int"),
    (ScoreRow, {**SCORE, "role": "synthetic"}, "role", "'synthetic' is not one of target, real"),
])
def test_validation_errors_name_file_line_and_field(tmp_path, cls, bad, field, problem):
    good = {Triplet: TRIPLET, SyntheticClip: CLIP, ScoreRow: SCORE}[cls]
    path = tmp_path / "m.jsonl"
    second = {**good, "id": "other_001"} if cls is Triplet else good  # triplet ids are unique
    write_lines(path, [good, "", second, bad])  # the blank line still counts: the bad record is on line 4
    with pytest.raises(ManifestError) as err:
        read_manifest(path, cls)
    assert str(err.value).startswith(f"{path}:4: {field}: {problem}")


def test_invalid_json_and_non_objects(tmp_path):
    path = tmp_path / "m.jsonl"
    write_lines(path, [TRIPLET, '{"id": "x",'])
    with pytest.raises(ManifestError, match=rf"^{path}:2: \(line\): invalid JSON"):
        read_manifest(path, Triplet)
    write_lines(path, ["[1, 2]"])
    with pytest.raises(ManifestError, match=rf"^{path}:1: \(record\): expected a JSON object"):
        read_manifest(path, Triplet)
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "absent.jsonl", Triplet)


def test_records_validate_on_construction():
    with pytest.raises(ValueError, match="misalignment"):
        Triplet(**{**TRIPLET, "misalignment": "colour"})
    with pytest.raises(TypeError, match="not a manifest record"):
        write_manifest("/nonexistent/never.jsonl", [dict(TRIPLET)])


def test_manifest_as_dataset(tmp_path):
    path = tmp_path / "clips.jsonl"
    clips = [SyntheticClip(**CLIP), SyntheticClip(**{**CLIP, "id": "b", "settings": {"other": "kind"}, "seed": 9})]
    write_manifest(path, clips)
    ds = manifest_dataset(path, SyntheticClip)
    assert ds.num_rows == 2
    assert ds.column_names == list(CLIP)
    assert ds["seed"] == [123, 9]
    assert [json.loads(s) for s in ds["settings"]] == [c.settings for c in clips]

    scores = tmp_path / "scores.jsonl"
    write_manifest(scores, [ScoreRow(**SCORE)])
    row = manifest_dataset(scores, ScoreRow)[0]
    assert row["frames"] == SCORE["frames"] and row["p_yes"] == pytest.approx(SCORE["p_yes"])
