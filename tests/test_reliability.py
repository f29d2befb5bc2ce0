"""Regression tests for the bad cases of issue 17: each one failed before its fix.

Ids that leave the run, pickles run on resume, torn journals, unpaired weight rows, duplicate ids,
non-finite training, metrics corrupted by restarts, relative manifest paths.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synvita.config import ConfigError, load_config
from synvita.data.records import (
    Failure, ManifestError, ScoreRow, SyntheticClip, Triplet, WeightRow, append_record, read_manifest, write_manifest,
)
from synvita.data.videocon import read_llm_csv
from synvita.data.video import write_video
from synvita.generators.job import GenerateConfig, merge_manifest, run_generation
from synvita.scoring.job import ScoreConfig, finalize
from test_harness import tiny_atp  # noqa: F401  (a tiny Qwen2-VL and ATP-Hard files for three clips)
from test_training import TINY_YAML, tiny_setup  # noqa: F401  (tiny_setup: the tiny Video-LLaVA and colour run)


def flat_generator(prompts, seeds, options):
    """An external generator for these tests: one flat colour per clip, drawn from its seed."""
    colours = [np.random.default_rng(s).integers(16, 240, (1, 1, 1, 3), dtype=np.uint8) for s in seeds]
    return [np.broadcast_to(c, (4, 16, 16, 3)).copy() for c in colours]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def triplet(tid: str, negative: str = "a blue square", video: str = "videos/a.mp4", **extra) -> dict:
    return {"id": tid, "video": video, "caption": "a red square", "negative": negative,
            "misalignment": "attribute", "source": "test", "split": "train", **extra}


def generate_config(out: Path, triplets: Path, *extra: str) -> GenerateConfig:
    return load_config(GenerateConfig, None, [
        f"output_dir={out}", f"input={triplets}", "backend=external", "generator=flat",
        "settings={entry_point: 'test_reliability:flat_generator', fps: 4}", *extra])


# ---- 1. an id may not write (or delete) outside the run directory ----

def test_an_unsafe_triplet_id_is_refused_and_nothing_outside_the_run_is_touched(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # The stale-temp cleanup of clip "x_001" would delete this file.
    planted = outside / ".x_001.keep.mp4.tmp"
    planted.write_text("not the suite's")
    manifest = write_jsonl(tmp_path / "in" / "triplets.jsonl", [triplet("ok_001"), triplet("../../../outside/x")])
    with pytest.raises(ManifestError, match=r"triplets.jsonl:2: id: '\.\./\.\./\.\./outside/x' is not a safe id"):
        run_generation(generate_config(tmp_path / "run", manifest), show_progress=False)
    assert planted.read_text() == "not the suite's"
    assert sorted(p.name for p in outside.iterdir()) == [planted.name]
    assert not (tmp_path / "run" / "clips").exists()


def test_importer_ids_are_safe_and_stable(tmp_path):
    path = tmp_path / "llm.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "videopath", "caption", "neg_caption", "split", "misalignment"])
        writer.writerow(["MSR-VTT", "msrvtt/video6323.mp4", "a", "b", "train", "count"])
        writer.writerow(["MSR-VTT", "my clips/a (1)/..x y.mp4", "a", "b", "train", "count"])
        writer.writerow(["MSR-VTT", "my clips/a (1)/..x y.mp4", "a", "c", "train", "count"])
    ids = [t.id for t in read_llm_csv(path, tmp_path)]
    # VideoCon's own stems keep their ids; others lose the unsafe characters, and still count per video.
    assert ids == ["msr-vtt_video6323_001", "msr-vtt_..x-y_001", "msr-vtt_..x-y_002"]
    assert ids == [t.id for t in read_llm_csv(path, tmp_path)]


def test_a_generator_name_must_be_a_safe_id(tmp_path):
    with pytest.raises(ConfigError, match=r"generator: '\.\./x' is not a safe id"):
        generate_config(tmp_path, tmp_path / "t.jsonl", "generator=../x")


# ---- 2. resuming never unpickles anything from the checkpoint ----

class _Planted:
    """Unpickling this creates `marker`: the proof that a loader ran code from the checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_resume_runs_no_code_planted_in_a_checkpoint(tiny_setup, tmp_path):
    from test_training import adapter, assert_same_adapter, make_cfg, run

    args = ("max_steps=4", "save_every=2", "keep_checkpoints=3", "lora.dropout=0.1", "optim.lr=1e-2")
    full = run(make_cfg(tiny_setup, tmp_path / "full", *args))
    step2 = tmp_path / "full" / "checkpoints" / "step-0000002"

    ckpt = tmp_path / "killed" / "checkpoints" / "step-0000002"
    shutil.copytree(step2, ckpt)
    marker = tmp_path / "code-ran"
    # Where accelerate kept the scheduler, which it unpickled without `weights_only`.
    torch.save(_Planted(marker), ckpt / "custom_checkpoint_0.pkl")
    try:
        resumed = run(make_cfg(tiny_setup, tmp_path / "killed", *args, "resume_from=latest"))
    finally:
        assert not marker.exists(), "resuming ran code from the checkpoint"
    assert_same_adapter(adapter(full.checkpoint), adapter(resumed.checkpoint), atol=1e-6)
    assert not [p.name for p in step2.rglob("*") if p.suffix in (".pkl", ".bin", ".pt", ".pth")]


# ---- 3. a full disk or a kill never leaves a journal no stage can read ----

def score_row(i: int) -> ScoreRow:
    return ScoreRow(clip_id=f"gen/c{i:03d}", member="m", role="target", caption="a blue square", frames=[0, 1],
                    p_yes=[0.25, 0.5])


def test_appends_are_all_or_nothing_on_a_full_disk(tmp_path):
    journal = tmp_path / "scores.d" / "w.jsonl"
    # A file-size limit makes the write that crosses it short, as a full disk does.
    code = f"""
import resource, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_reliability import score_row
from synvita.data.records import append_record
resource.setrlimit(resource.RLIMIT_FSIZE, (1010, resource.RLIM_INFINITY))
ok = 0
for i in range(40):
    try:
        append_record({str(journal)!r}, score_row(i))
        ok += 1
    except OSError:
        pass
print(ok)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ok = int(done.stdout)
    assert 0 < ok < 40
    assert journal.read_bytes().endswith(b"\n")
    assert read_manifest(journal, ScoreRow) == [score_row(i) for i in range(ok)]


def test_a_torn_last_line_is_dropped_with_a_warning_and_cut_before_the_next_append(tmp_path):
    journal = tmp_path / "w.jsonl"
    append_record(journal, score_row(0))
    with open(journal, "a") as f:
        f.write('{"clip_id": "gen/c001", "member": "m", "ro')  # a writer killed mid-line
    with pytest.warns(UserWarning, match=r"w\.jsonl:2: dropped an unterminated last line"):
        assert read_manifest(journal, ScoreRow) == [score_row(0)]
    with pytest.warns(UserWarning, match=r"w\.jsonl: dropped an unterminated last line"):
        append_record(journal, score_row(2))
    assert read_manifest(journal, ScoreRow) == [score_row(0), score_row(2)]
    # A bad line that is not the last is still an error, with its place.
    journal.write_text('{"clip_id": \n' + journal.read_text())
    with pytest.raises(ManifestError, match=r"w\.jsonl:1: \(line\): invalid JSON"):
        read_manifest(journal, ScoreRow)


# ---- 4. unpaired clips: weight rows every stage reads; a mistyped input path is an error ----

def scored_run(root: Path) -> Path:
    """Two clips scored by one member: `gen/t0_001` has its triplet t0, `gen/imported` has none."""
    write_jsonl(root / "triplets.jsonl", [triplet("t0")])
    write_manifest(root / "clips.jsonl", [
        SyntheticClip(id=f"gen/{stem}", triplet_id=tid, caption="a blue square", generator="gen", seed=0,
                      path=f"clips/gen/{stem}.mp4", status="done", num_frames=4)
        for stem, tid in (("t0_001", "t0"), ("imported", "imported"))])
    for stem in ("t0_001", "imported"):
        write_video(root / "clips" / "gen" / f"{stem}.mp4", flat_generator([""], [0], {})[0], fps=4)
    for clip_id, role, caption, p in (("gen/t0_001", "target", "a blue square", 0.8),
                                      ("gen/t0_001", "real", "a red square", 0.3),
                                      ("gen/imported", "target", "a blue square", 0.6)):
        append_record(root / "scores.d" / "w.jsonl", ScoreRow(clip_id=clip_id, member="m", role=role,
                                                              caption=caption, frames=[0], p_yes=[p]))
    return root


def score_config(root: Path, *extra: str) -> ScoreConfig:
    return load_config(ScoreConfig, None, [f"run_dir={root}", "members=[{name: m}]", "frames=1", *extra])


def test_an_unpaired_clip_is_scored_and_every_stage_reads_its_row(tmp_path):
    from synvita.report.html import build_report
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    run = scored_run(tmp_path)
    finalize(score_config(run))
    rows = {r.clip_id: r for r in read_manifest(run / "weights.jsonl", WeightRow)}
    assert rows["gen/imported"].f_real is None and rows["gen/imported"].weights == {}
    assert rows["gen/t0_001"].f_real == pytest.approx(0.3) and rows["gen/t0_001"].f_target == pytest.approx(0.8)
    # Training: t0's clip trains with its weight; the unpaired clip has no triplet to train with.
    examples, report = load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl",
                                                weights=run / "weights.jsonl"), "margin")
    assert [(e.clip.id, e.w) for e in examples] == [("gen/t0_001", pytest.approx(0.5))]
    assert "Alignment gaps" in build_report(run)


def test_an_unpaired_clip_of_a_triplet_trains_real_only_as_unscored(tmp_path):
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    run = scored_run(tmp_path)
    finalize(score_config(run))
    # The same clip, with its f_real gone (scored without the triplets): unscored, so real-only.
    rows = [json.loads(line) for line in (run / "weights.jsonl").read_text().splitlines()]
    for r in rows:
        r["f_real"], r["weights"] = None, {}
    write_jsonl(run / "weights.jsonl", rows)
    examples, report = load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl",
                                                weights=run / "weights.jsonl"), "margin")
    assert [e.clip for e in examples] == [None] and report.real_only == {"unscored": 1}


def test_a_mistyped_triplets_path_is_an_error_and_keeps_the_weights(tmp_path):
    run = scored_run(tmp_path)
    finalize(score_config(run))
    good = (run / "weights.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"triplets: .*tripelts\.jsonl does not exist"):
        finalize(score_config(run, f"triplets={run / 'tripelts.jsonl'}"))
    assert (run / "weights.jsonl").read_text() == good


# ---- 5. duplicate ids are refused; a clip joins only the triplet whose negative it shows ----

def test_duplicate_triplet_ids_are_refused(tmp_path):
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    path = write_jsonl(tmp_path / "triplets.jsonl", [triplet("t0"), triplet("t1"), triplet("t0", "a green square")])
    with pytest.raises(ManifestError, match=r"triplets\.jsonl:3: id: 't0' is already on line 1"):
        load_examples(DataConfig(triplets=path), "fixed")


def test_a_clip_made_for_another_caption_is_never_used_for_the_triplet(tmp_path):
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    run = scored_run(tmp_path)
    # t0's negative changed after its clip was made (or the id was reused): the clip shows "a blue square".
    write_jsonl(run / "triplets.jsonl", [triplet("t0", "a green square")])
    finalize(score_config(run))
    rows = {r.clip_id: r for r in read_manifest(run / "weights.jsonl", WeightRow)}
    assert rows["gen/t0_001"].f_real is None
    examples, report = load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl",
                                                weights=run / "weights.jsonl"), "margin")
    assert [e.clip for e in examples] == [None]
    assert report.real_only == {"clip caption is not the negative": 1}


# ---- 6. learning rate, warmup and gradient norm are checked; a non-finite loss stops the run ----

@pytest.mark.parametrize("override, problem", [
    ("optim.lr=.nan", "optim.lr: must be a finite number > 0, got nan"),
    ("optim.lr=.inf", "optim.lr: must be a finite number > 0, got inf"),
    ("optim.lr=0", "optim.lr: must be a finite number > 0, got 0"),
    ("optim.warmup_steps=-5", "optim.warmup_steps: must be >= 0, got -5"),
    ("optim.max_grad_norm=-1", "optim.max_grad_norm: must be a finite number > 0 or null, got -1"),
    ("optim.max_grad_norm=.nan", "optim.max_grad_norm: must be a finite number > 0 or null, got nan"),
])
def test_optimizer_settings_are_validated(override, problem):
    from synvita.training.config import TrainConfig

    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(TrainConfig, TINY_YAML, [override])


def test_a_non_finite_loss_stops_before_the_optimizer_step_and_any_checkpoint(tiny_setup, tmp_path):
    from synvita.errors import SynvitaError
    from test_training import adapter, make_cfg, metrics, run

    # Adam moves every weight by ~lr per step: at 1e30 the next forward overflows.
    out = tmp_path / "run"
    with pytest.raises(SynvitaError, match=r"step (\d+): the loss is not finite") as err:
        run(make_cfg(tiny_setup, out, "optim.lr=1e30", "optim.warmup_steps=0", "max_steps=8", "save_every=1",
                     "keep_checkpoints=10"))
    failed = int(re.search(r"step (\d+)", str(err.value)).group(1))
    steps = [int(p.name[5:]) for p in sorted((out / "checkpoints").glob("step-*"))]
    assert steps == list(range(1, failed))
    for step in steps:
        assert all(torch.isfinite(t).all() for t in adapter(out / "checkpoints" / f"step-{step:07d}").values())
    assert [m["step"] for m in metrics(out)] == steps and all(np.isfinite(m["loss"]) for m in metrics(out))


# ---- 7. restarts and concurrent runs cannot corrupt metrics.jsonl ----

def test_metrics_are_trimmed_to_the_resumed_step_even_without_a_checkpoint(tiny_setup, tmp_path):
    from test_training import make_cfg, metrics, run

    args = ("max_steps=4", "save_every=100", "optim.lr=1e-2")
    full = tmp_path / "full"
    run(make_cfg(tiny_setup, full, *args))
    # Killed at step 3, before its first checkpoint: the restart trains steps 1-3 again.
    killed = tmp_path / "killed"
    killed.mkdir()
    logged = (full / "metrics.jsonl").read_text().splitlines(keepends=True)
    (killed / "metrics.jsonl").write_text("".join(logged[:3]))
    run(make_cfg(tiny_setup, killed, *args, "resume_from=latest"))
    assert [m["step"] for m in metrics(killed)] == [1, 2, 3, 4]
    for a, b in zip(metrics(killed), metrics(full)):
        assert a == pytest.approx(b, rel=1e-5)


def test_a_fresh_run_into_a_used_directory_is_refused(tiny_setup, tmp_path):
    from synvita.errors import SynvitaError
    from test_training import make_cfg, metrics, run

    args = ("max_steps=2", "save_every=2")
    run(make_cfg(tiny_setup, tmp_path, *args))
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(SynvitaError, match=r"checkpoints: holds checkpoints of an earlier run; continue it with "
                                           r"resume_from=latest"):
        run(make_cfg(tiny_setup, tmp_path, *args))
    assert (tmp_path / "metrics.jsonl").read_text() == before and [m["step"] for m in metrics(tmp_path)] == [1, 2]


def test_a_second_run_into_a_locked_directory_is_refused(tiny_setup, tmp_path):
    import fcntl
    import os

    from synvita.errors import SynvitaError
    from test_training import make_cfg, run

    # Another process training into the folder holds its lock (flock: per open file, so this fd counts).
    fd = os.open(tmp_path / ".lock-0", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(SynvitaError, match=r"this training output_dir is in use by another running process"):
            run(make_cfg(tiny_setup, tmp_path, "max_steps=2"))
    finally:
        os.close(fd)
    assert not (tmp_path / "metrics.jsonl").exists()


# ---- 8. relative video paths in an input manifest mean the manifest's folder ----

def test_relative_video_paths_resolve_against_the_input_manifest(tmp_path):
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    source = tmp_path / "source"
    write_video(source / "videos" / "a.mp4", flat_generator([""], [1], {})[0], fps=4)
    inside = tmp_path / "run" / "real" / "b.mp4"
    write_video(inside, flat_generator([""], [2], {})[0], fps=4)
    manifest = write_jsonl(source / "triplets.jsonl", [
        triplet("t0"), triplet("t1", video="../run/real/b.mp4"), triplet("t2", video=str(source / "videos" / "a.mp4"))])
    run = tmp_path / "run"
    assert run_generation(generate_config(run, manifest), show_progress=False)["done"] == 3
    merge_manifest(run)
    copied = {t.id: t.video for t in read_manifest(run / "triplets.jsonl", Triplet)}
    # Outside the run: absolute; inside it: relative to the run, so the run can move.
    assert copied == {"t0": str(source / "videos" / "a.mp4"), "t1": "real/b.mp4", "t2": str(source / "videos" / "a.mp4")}
    examples, _ = load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl",
                                           split="train"), "fixed")
    assert sorted(str(e.video) for e in examples) == sorted([str(source / "videos" / "a.mp4"), str(inside),
                                                             str(source / "videos" / "a.mp4")])
    assert all(e.video.is_file() and e.clip_path.is_file() for e in examples)


# ---- files are created with the user's umask ----

def test_outputs_get_the_users_umask_not_0600(tmp_path):
    code = f"""
import os
os.umask(0o027)
import numpy as np
from synvita.data.records import write_manifest
from synvita.data.video import write_video
from synvita.utils import atomic_write_text
atomic_write_text({str(tmp_path / 'a.json')!r}, "{{}}")
write_manifest({str(tmp_path / 'm.jsonl')!r}, [])
write_video({str(tmp_path / 'v.mp4')!r}, np.zeros((2, 8, 8, 3), np.uint8), 4)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == \
        {"a.json": "0o640", "m.jsonl": "0o640", "v.mp4": "0o640"}


# ---- per-item failures stay per item ----

def test_a_caption_a_member_cannot_take_fails_that_clip_only(tmp_path, tiny_cache):
    from synvita.scoring.job import run_scoring

    run = scored_run(tmp_path)
    (run / "scores.d").rename(run / "scores.earlier")  # score from scratch
    # The member's own image token inside a caption: its processor cannot pair images and tokens.
    write_jsonl(run / "triplets.jsonl", [triplet("t0")])
    clips = read_manifest(run / "clips.jsonl", SyntheticClip)
    clips[1].caption = "a blue <image> square"
    write_manifest(run / "clips.jsonl", clips)
    cfg = score_config(run, f"cache_dir={tiny_cache}", "members=[{name: m, kind: llava-1.5, model: 'tiny:llava-1.5'}]")
    counts = run_scoring(cfg, show_progress=False)
    assert (counts["scored"], counts["failed"]) == (1, 1)
    (failure,) = read_manifest(run / "failed.d" / "score.shard0of1.proc0of1.jsonl", Failure)
    assert failure.item == "gen/imported" and failure.error
    rows, _ = finalize(cfg)
    assert [r.clip_id for r in rows] == ["gen/t0_001"]


@pytest.mark.parametrize("videos_per_pass", [1, 3])
def test_a_video_that_fails_is_journaled_and_the_evaluation_goes_on(tiny_atp, tmp_path, videos_per_pass):
    from synvita.evaluation.harness import failures_path
    from test_harness import run_model as run_harness

    def run_model(*args):
        return run_harness(*args, "--videos-per-pass", str(videos_per_pass))

    root, model, ann = tiny_atp
    videos = tmp_path / "videos"
    shutil.copytree(root / "videos", videos)
    broken = sorted(videos.rglob("*.mp4"))[0]
    good = broken.read_bytes()
    broken.write_bytes(b"not a video")
    out = tmp_path / "out.json"
    assert run_model(tmp_path, model, ann, out) == 0
    counts = json.loads(out.read_text())["counts"]
    assert (counts["pairs_failed"], counts["pairs_scored"], counts["pairs_reused"]) == (5, 10, 0)
    (failure,) = read_manifest(failures_path(tmp_path / "out.predictions.csv"), Failure)
    assert broken.stem in failure.item and failure.error.startswith("VideoError")
    # Mended, the video is scored by the next run; nothing else is scored again.
    broken.write_bytes(good)
    assert run_model(tmp_path, model, ann, out) == 0
    counts = json.loads(out.read_text())["counts"]
    assert (counts["pairs_failed"], counts["pairs_scored"], counts["pairs_reused"]) == (0, 5, 10)
    assert not failures_path(tmp_path / "out.predictions.csv").exists()


def test_a_caption_that_fails_fails_its_video_only_where_videos_share_passes(tiny_atp, tmp_path):
    from synvita.evaluation.benchmarks import read_predictions
    from synvita.evaluation.harness import failures_path
    from synvita.models.families import load_video_lmm
    from test_harness import QUESTIONS, run_model, write_atp

    _, model, _ = tiny_atp
    placeholder = load_video_lmm(str(model)).video_token
    questions = [list(q) for q in QUESTIONS]
    questions[1][4] = [*questions[1][4][:4], f"It shows {placeholder} twice."]  # refused by the scorer
    ann = write_atp(tmp_path, questions)
    alone, shared = tmp_path / "alone.json", tmp_path / "shared.json"
    assert run_model(tmp_path, model, ann, alone) == 0
    assert run_model(tmp_path, model, ann, shared, "--videos-per-pass", "3") == 0
    counts = json.loads(shared.read_text())["counts"]
    assert (counts["pairs_failed"], counts["pairs_scored"]) == (5, 10)
    (failure,) = read_manifest(failures_path(tmp_path / "shared.predictions.csv"), Failure)
    assert failure.item.endswith(f"/{QUESTIONS[1][0]}.mp4") and "placeholder" in failure.error
    rows = {p: sorted((r.video, r.text, r.score) for r in read_predictions(tmp_path / f"{p}.predictions.csv"))
            for p in ("alone", "shared")}
    assert len(rows["shared"]) == 10 and rows["shared"] == rows["alone"]


def test_an_unreadable_clip_trains_real_only(tmp_path):
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples

    run = scored_run(tmp_path)
    finalize(score_config(run))
    (run / "clips" / "gen" / "t0_001.mp4").write_bytes(b"\x00" * 100)  # truncated by a full disk, say
    examples, report = load_examples(DataConfig(triplets=run / "triplets.jsonl", clips=run / "clips.jsonl",
                                                weights=run / "weights.jsonl"), "margin")
    assert [e.clip for e in examples] == [None] and report.real_only == {"clip unreadable": 1}
