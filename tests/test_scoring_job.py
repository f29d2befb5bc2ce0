"""The scoring job with tiny members: complete manifests checked by hand, one decode per clip
however many members, the per-member cache (interrupted and extended runs), and the real
synthetic clips of ../shared/data/synvita-samples scored end to end."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

import synvita.scoring.ensemble as ensemble
from synvita.config import load_config
from synvita.data.records import ScoreRow, SyntheticClip, Triplet, read_manifest, write_manifest
from synvita.data.video import FrameSampler, read_video
from synvita.generators.job import GenerateConfig, merge_manifest, run_generation
from synvita.generators.job import main as generate_main
from synvita.scoring.job import ScoreConfig, finalize, run_scoring
from synvita.scoring.job import main as score_main
from synvita.scoring.members import MemberSpec, load_member

REPO = Path(__file__).resolve().parents[1]
MEMBERS = ["{name: llava, kind: llava-1.5, model: 'tiny:llava-1.5', batch_size: 3}",
           "{name: blip, kind: instructblip, model: 'tiny:instructblip', batch_size: 8}",
           "{name: qwen, kind: qwen2-vl, model: 'tiny:qwen2-vl-image', batch_size: 8}"]


def _score_config(run: Path, tiny_cache: Path, members=MEMBERS, *extra: str) -> ScoreConfig:
    return load_config(ScoreConfig, None, [f"run_dir={run}", f"cache_dir={tiny_cache}",
                                           f"members=[{', '.join(members)}]", *extra])



@pytest.fixture(scope="module")
def generated(tmp_path_factory, tiny_cache):
    run = tmp_path_factory.mktemp("run")
    cfg = load_config(GenerateConfig, REPO / "generation" / "configs" / "tiny_cogvideox.yaml", [
        f"output_dir={run}", f"input={REPO / 'tests' / 'data' / 'tiny_triplets.jsonl'}",
        f"settings.cache_dir={tiny_cache}", "limit=3", "clips_per_caption=1"])
    run_generation(cfg, show_progress=False)
    merge_manifest(run)
    return run


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = ensemble.read_video

    def counting(path, sampler):
        calls.append(Path(path))
        return real(path, sampler)

    monkeypatch.setattr(ensemble, "read_video", counting)
    return calls


def test_generate_then_score_complete_and_by_hand(generated, tiny_cache, count_decodes):
    cfg = _score_config(generated, tiny_cache)
    counts = run_scoring(cfg, show_progress=False)
    records, summary = finalize(cfg)
    clips = read_manifest(generated / "clips.jsonl", SyntheticClip)
    triplets = {t.id: t for t in read_manifest(generated / "triplets.jsonl", Triplet)}
    assert counts == dict(scored=3, cached=0, failed=0, total=3, decodes=3)
    assert sorted(count_decodes) == sorted(generated / c.path for c in clips)  # once per clip, 3 members

    rows = {(r.clip_id, r.member, r.role): r for r in read_manifest(generated / "scores.jsonl", ScoreRow)}
    assert len(rows) == 3 * 3 * 2
    for clip in clips:
        assert rows[clip.id, "llava", "target"].caption == clip.caption
        assert rows[clip.id, "llava", "real"].caption == triplets[clip.triplet_id].caption
        assert rows[clip.id, "qwen", "real"].frames == [0, 3, 5, 8]  # 4 uniform of 9 frames
    # Stored P(Yes) equals a member run directly on independently decoded frames.
    clip = clips[0]
    frames = read_video(generated / clip.path, FrameSampler("uniform", 4))
    blip = load_member(MemberSpec(name="blip", kind="instructblip", model="tiny:instructblip"), cache_dir=tiny_cache)
    direct = blip.p_yes(list(frames), [clip.caption, triplets[clip.triplet_id].caption])
    np.testing.assert_allclose(rows[clip.id, "blip", "target"].p_yes, direct[:, 0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(rows[clip.id, "blip", "real"].p_yes, direct[:, 1].numpy(), rtol=0, atol=1e-6)

    weights = [json.loads(line) for line in (generated / "weights.jsonl").read_text().splitlines()]
    assert weights == [dataclasses.asdict(r) for r in records] and len(weights) == 3
    for w in weights:
        per = {m: {role: sum(rows[w["clip_id"], m, role].p_yes) / 4 for role in ("target", "real")}
               for m in ("llava", "blip", "qwen")}
        ft = sum(per[m]["target"] for m in per) / 3
        fr = sum(per[m]["real"] for m in per) / 3
        assert w["f_target"] == pytest.approx(ft, abs=1e-12) and w["f_real"] == pytest.approx(fr, abs=1e-12)
        expected = {"fixed": 1.0, "target": ft, "target_times_not_real": ft * (1 - fr),
                    "indicator": float(ft > fr), "margin": max(ft - fr, 0.0)}
        assert w["weights"] == pytest.approx(expected, abs=1e-12)
        assert w["misalignment"] == triplets[w["triplet_id"]].misalignment

    stored = json.loads((generated / "score_summary.json").read_text())
    assert stored["groups"] == summary and stored["members"] == ["llava", "blip", "qwen"]
    overall = next(s for s in summary if s["misalignment"] == "all" and s["generator"] == "all")
    d = [w["f_target"] - w["f_real"] for w in weights]
    q25, q50, q75 = statistics.quantiles(d, n=4, method="inclusive")
    assert overall["n"] == 3 and overall["mean"] == pytest.approx(statistics.fmean(d))
    assert (overall["q25"], overall["q50"], overall["q75"]) == pytest.approx((q25, q50, q75))
    assert overall["share_below_zero"] == pytest.approx(sum(x < 0 for x in d) / 3)
    assert {s["misalignment"] for s in summary} == {"all", *(w["misalignment"] for w in weights)}


def test_cache_interrupted_and_extended_runs(generated, tiny_cache, count_decodes, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("clips.jsonl", "triplets.jsonl"):
        (run / name).write_text((generated / name).read_text())
    (run / "clips").symlink_to(generated / "clips")
    two = MEMBERS[:2]
    # An "interrupted" run: only shard 0 of 2 got done.
    first = run_scoring(_score_config(run, tiny_cache, two, "shard=0/2"), show_progress=False)
    assert first == dict(scored=2, cached=0, failed=0, total=2, decodes=2)
    rest = run_scoring(_score_config(run, tiny_cache, two), show_progress=False)
    assert rest == dict(scored=1, cached=2, failed=0, total=3, decodes=1)
    journal_lines = lambda: sum(len(p.read_text().splitlines()) for p in (run / "scores.d").glob("*.jsonl"))
    assert journal_lines() == 3 * 2 * 2
    # A new member: each clip is decoded once more, and only the new member's rows are computed.
    count_decodes.clear()
    extended = run_scoring(_score_config(run, tiny_cache, MEMBERS), show_progress=False)
    assert extended == dict(scored=3, cached=0, failed=0, total=3, decodes=3) and len(count_decodes) == 3
    assert journal_lines() == 3 * 3 * 2
    assert run_scoring(_score_config(run, tiny_cache, MEMBERS), show_progress=False)["decodes"] == 0
    # A clip that no longer decodes is reported and left out; the others stay as they were.
    clips = read_manifest(run / "clips.jsonl", SyntheticClip)
    (run / "clips").unlink()
    (run / "clips").mkdir()
    for c in clips[1:]:
        (run / c.path).parent.mkdir(parents=True, exist_ok=True)
        (run / c.path).symlink_to(generated / c.path)
    (run / clips[0].path).write_bytes(b"not a video")
    cfg = _score_config(run, tiny_cache, [*MEMBERS, "{name: llava2, kind: llava-1.5, model: 'tiny:llava-1.5'}"])
    assert run_scoring(cfg, show_progress=False) == dict(scored=2, cached=0, failed=1, total=3, decodes=3)
    records, _ = finalize(_score_config(run, tiny_cache, MEMBERS))
    assert len(records) == 3


def test_synvita_samples_scored_end_to_end(shared_data, tiny_cache, tmp_path):
    root = shared_data / "synvita-samples"
    captions = json.loads((root / "captions.json").read_text())
    stems = sorted(captions)
    # The samples come without their real captions; each clip's "real" caption here is another
    # sample's caption, a wrong-caption control for the diagnostics.
    triplets = [Triplet(id=s, video=f"{s}.mp4", caption=captions[stems[(i + 1) % len(stems)]], negative=captions[s],
                        misalignment=None, source="synvita-samples", split="test") for i, s in enumerate(stems)]
    write_manifest(tmp_path / "given.jsonl", triplets)
    assert generate_main(["--config", str(REPO / "generation" / "configs" / "import_synvita_samples.yaml"),
                          f"output_dir={tmp_path}", f"settings.root={root}", f"input={tmp_path / 'given.jsonl'}"]) == 0
    clips = read_manifest(tmp_path / "clips.jsonl", SyntheticClip)
    assert len(clips) == 9 and {c.generator for c in clips} == {"cogvideox", "lavie", "videocrafter2"}
    assert all(c.caption == captions[c.triplet_id] and c.num_frames in (32, 49) for c in clips)
    # the thesis's third member beside the others; 2 frames keep this CPU test short
    members = [*MEMBERS, "{name: clip-flant5, kind: clip-flant5, model: 'tiny:clip-flant5', batch_size: 4}"]
    cfg = _score_config(tmp_path, tiny_cache, members, "frames=2")
    assert run_scoring(cfg, show_progress=False)["decodes"] == 9
    records, summary = finalize(cfg)
    assert len(records) == 9 and all(len(r.weights) == 5 for r in records)
    assert all(0 <= r.f_target <= 1 and 0 <= r.f_real <= 1 for r in records)
    assert {(s["misalignment"], s["generator"]) for s in summary} >= {("unknown", "lavie"), ("all", "all")}
    rows = read_manifest(tmp_path / "scores.jsonl", ScoreRow)
    assert len(rows) == 9 * 4 * 2 and all(len(r.frames) == 2 and r.frames[0] == 0 for r in rows)
    # the CLIP-FlanT5 rows are the member's own scores of the clip's frames
    clip = clips[0]
    frames = read_video(tmp_path / clip.path, FrameSampler("uniform", 2))
    cf5 = load_member(MemberSpec(name="cf5", kind="clip-flant5", model="tiny:clip-flant5"), cache_dir=tiny_cache)
    direct = cf5.p_yes(list(frames), [clip.caption])[:, 0].numpy()
    stored = next(r for r in rows if (r.clip_id, r.member, r.role) == (clip.id, "clip-flant5", "target"))
    np.testing.assert_allclose(stored.p_yes, direct, rtol=1e-6, atol=0)
    assert all(r.members["clip-flant5"]["target"] > 0 for r in records)


def test_score_command_line(generated, tiny_cache, capsys):
    config = REPO / "generation" / "configs" / "score_tiny.yaml"
    assert score_main(["--config", str(config), f"run_dir={generated}", f"cache_dir={tiny_cache}"]) == 0
    out = capsys.readouterr().out
    assert "f̄(V^s,t^s) - f̄(V^s,t^r)" in out and "score: 3 clips in" in out
    summary = json.loads((generated / "score_summary.json").read_text())
    assert summary["members"] == ["tiny-llava-1.5", "tiny-instructblip", "tiny-clip-flant5"] and summary["clips"] == 3
    assert score_main(["--config", str(config), f"run_dir={generated}", "members=[]"]) == 2
    assert "members: the ensemble needs at least one member" in capsys.readouterr().err
