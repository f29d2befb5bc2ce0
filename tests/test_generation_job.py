"""The generation job on tiny pipelines: complete manifests, resume after SIGKILL, sharding and
multi-process runs giving the same clips, failures recorded without stopping the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synvita.config import load_config
from synvita.data.records import SyntheticClip, read_manifest
from synvita.data.video import FrameSampler, read_video
from synvita.generators.job import GenerateConfig, merge_manifest, run_generation
from synvita.jobs import split_work
from synvita.utils import stable_seed

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "generation" / "configs" / "tiny_cogvideox.yaml"
TRIPLETS = REPO / "tests" / "data" / "tiny_triplets.jsonl"


def _config(out: Path, tiny_cache: Path, *extra: str, path: Path = TINY) -> GenerateConfig:
    return load_config(GenerateConfig, path, [f"output_dir={out}", f"input={TRIPLETS}",
                                              f"settings.cache_dir={tiny_cache}", *extra])


def _frames(run: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(run)): read_video(p, FrameSampler("all")) for p in sorted(run.glob("clips/**/*.mp4"))}


def _assert_same_clips(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    """The same clips, up to H.264: libx264 at crf 12 (the default, as real runs write) can code the
    same frames differently from one encoding to the next (`write_video`). Once in CI a clip of the
    killed-and-resumed run decoded with one 16x16 frame off by up to 14/255 (about 41 dB over the
    clip). Clips of two different seeds are 9-11 dB apart."""
    assert got.keys() == ref.keys()
    for name in got:
        assert got[name].shape == ref[name].shape, name
        mse = np.mean((got[name].astype(float) - ref[name].astype(float)) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 30, f"{name}: PSNR {10 * np.log10(255**2 / mse):.1f} dB"



@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_cache):
    """One uninterrupted single-process run of the tiny CogVideoX config."""
    out = tmp_path_factory.mktemp("reference")
    counts = run_generation(_config(out, tiny_cache), show_progress=False)
    merge_manifest(out)
    return out, counts


def test_generate_writes_complete_manifest_and_resumes(reference, tiny_cache):
    out, counts = reference
    train = [t for t in map(json.loads, TRIPLETS.read_text().splitlines()) if t["split"] == "train"]
    assert counts == dict(done=2 * len(train), skipped=0, failed=0, total=2 * len(train))
    records = read_manifest(out / "clips.jsonl", SyntheticClip)
    assert sorted(r.id for r in records) == sorted(f"cogvideox/{t['id']}_{k:03d}" for t in train for k in (1, 2))
    by_triplet = {t["id"]: t for t in train}
    for r in records:
        assert r.status == "done" and r.num_frames == 9 and r.error is None and r.elapsed > 0
        assert r.caption == by_triplet[r.triplet_id]["negative"]
        assert r.seed == stable_seed(r.id, "cogvideox", 0)
        assert r.settings["steps"] == 2 and r.settings["fps"] == 8.0 and r.versions["diffusers"]
        assert read_video(out / r.path, FrameSampler("all")).shape == (9, 16, 16, 3)
    # Two clips of one caption differ (different seeds); a rerun redoes nothing.
    clips = _frames(out)
    assert not np.array_equal(clips["clips/cogvideox/tiny_park_001_001.mp4"], clips["clips/cogvideox/tiny_park_001_002.mp4"])
    again = run_generation(_config(out, tiny_cache), show_progress=False)
    assert again == dict(done=0, skipped=len(records), failed=0, total=len(records))


def test_shards_make_the_same_clips(reference, tiny_cache, tmp_path):
    items = list(range(23))
    parts = [split_work(items, (i, 3), (r, 2)) for i in range(3) for r in range(2)]
    assert sorted(x for p in parts for x in p) == items
    for shard in ("0/2", "1/2"):
        run_generation(_config(tmp_path, tiny_cache, f"shard={shard}"), show_progress=False)
    _assert_same_clips(_frames(tmp_path), _frames(reference[0]))


def test_sigkill_then_restart_gives_the_same_clips(reference, tiny_cache, tmp_path):
    cmd = [sys.executable, str(REPO / "generation" / "generate.py"), "--config", str(TINY),
           f"output_dir={tmp_path}", f"input={TRIPLETS}", f"settings.cache_dir={tiny_cache}"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "clips.d"
    deadline = time.time() + 120
    # Kill as soon as two clips are journaled: mid-run, possibly mid-write of the third.
    while time.time() < deadline and sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl")) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    journaled = sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl"))
    assert proc.returncode == -signal.SIGKILL and 2 <= journaled < 8, "the kill did not land mid-run"

    counts = run_generation(_config(tmp_path, tiny_cache), show_progress=False)
    assert counts["skipped"] == journaled and counts["done"] == 8 - journaled and counts["failed"] == 0
    records = merge_manifest(tmp_path)
    assert len(records) == len({r.id for r in records}) == 8
    assert not list(tmp_path.rglob("*.tmp"))
    _assert_same_clips(_frames(tmp_path), _frames(reference[0]))


# An external generator given as a Python entry point: fails on one prompt, makes an odd-sized
# (unencodable) clip for another, and draws the rest from the seed.
def flaky_generator(prompts, seeds, options):
    videos = []
    for prompt, seed in zip(prompts, seeds):
        if options.get("fail_on") and options["fail_on"] in prompt:
            raise RuntimeError(f"simulated generator crash on {prompt!r}")
        size = 15 if options.get("odd_on") and options["odd_on"] in prompt else 16
        # Flat colours per frame: they survive H.264's chroma subsampling within a few levels.
        colours = np.random.default_rng(seed).integers(16, 240, (5, 1, 1, 3), dtype=np.uint8)
        videos.append(np.broadcast_to(colours, (5, size, 16, 3)).copy())
    return videos


def test_failing_clip_is_recorded_and_retried(tmp_path, tiny_cache):
    base = [f"output_dir={tmp_path}", f"input={TRIPLETS}", "splits=[train]", "backend=external", "generator=flaky",
            "settings={entry_point: 'test_generation_job:flaky_generator', fps: 4, "
            "options: {fail_on: Three, odd_on: blue}}"]
    cfg = load_config(GenerateConfig, None, base)
    counts = run_generation(cfg, show_progress=False)
    assert counts == dict(done=2, skipped=0, failed=2, total=4)
    records = {r.triplet_id: r for r in merge_manifest(tmp_path)}
    assert records["tiny_park_001"].status == "failed"
    assert "simulated generator crash" in records["tiny_park_001"].error
    assert records["tiny_street_001"].status == "failed" and "even width and height" in records["tiny_street_001"].error
    assert records["tiny_gym_001"].status == "done" and records["tiny_kitchen_001"].status == "done"
    assert not (tmp_path / records["tiny_park_001"].path).exists()

    cfg.settings["options"] = {}
    counts = run_generation(cfg, show_progress=False)
    assert counts == dict(done=2, skipped=2, failed=0, total=4)
    done = merge_manifest(tmp_path)
    assert [r.status for r in done] == ["done"] * 4
    park = next(r for r in done if r.triplet_id == "tiny_park_001")
    np.testing.assert_allclose(read_video(tmp_path / park.path, FrameSampler("all")).astype(int),
                               flaky_generator(["x"], [park.seed], {})[0], rtol=0, atol=3)


def test_external_command_backend(tmp_path):
    script = ("import json,sys,numpy as np; from synvita.data.video import write_video; "
              "r=json.load(open(sys.argv[1])); "
              "[write_video(f\"{r['out_dir']}/{i}.mp4\", np.full((3,8,8,3), s % 256, np.uint8), 4) "
              "for i, s in enumerate(r['seeds'])]")
    cfg = load_config(GenerateConfig, None, [
        f"output_dir={tmp_path}", f"input={TRIPLETS}", "backend=external", "batch_size=4", "limit=2",
        f"settings={{command: [{sys.executable!r}, -c, {json.dumps(script)}, '{{request}}'], fps: 4}}"])
    assert run_generation(cfg, show_progress=False)["done"] == 2
    for r in merge_manifest(tmp_path):
        frames = read_video(tmp_path / r.path, FrameSampler("all"))
        assert frames.shape == (3, 8, 8, 3) and abs(int(frames.mean()) - r.seed % 256) <= 2


@pytest.mark.slow
def test_two_processes_make_the_same_clips(tiny_cache, tmp_path):
    def generate(launcher: list[str], out: Path, env: dict):
        return subprocess.run([sys.executable, *launcher, str(REPO / "generation" / "generate.py"), "--config",
                               str(TINY), f"output_dir={out}", f"input={TRIPLETS}", f"settings.cache_dir={tiny_cache}"],
                              cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)

    # The reference runs in a fresh process too: CPU kernels can round differently with the
    # allocation history of a long-lived pytest process, and with another thread count (torchrun
    # gives each of several processes one thread).
    one = generate([], tmp_path / "one", {"OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-3000:]
    tmp_path = tmp_path / "two"
    done = generate(["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"], tmp_path,
                    {"ACCELERATE_USE_CPU": "true"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "clips.d").glob("*proc*of2.jsonl"))) == 2
    records = read_manifest(tmp_path / "clips.jsonl", SyntheticClip)
    assert len(records) == 8 and all(r.status == "done" for r in records)
    _assert_same_clips(_frames(tmp_path), _frames(tmp_path.parent / "one"))


def test_backend_settings_and_the_generic_diffusers_backend(tiny_cache):
    from synvita.generators.backends import BACKENDS, SettingsError, to_uint8

    tiny = dict(model="tiny:wan", cache_dir=str(tiny_cache), device="cpu", height=16, width=16, num_frames=9,
                steps=2, guidance=3.0, max_sequence_length=16, fps=16)
    wan = BACKENDS.get("wan").from_settings(tiny)
    generic = BACKENDS.get("diffusers").from_settings(tiny)  # class read from the checkpoint
    assert type(generic.pipe).__name__ == "WanPipeline"
    a, b = wan.generate(["a dog"], [3])[0], generic.generate(["a dog"], [3])[0]
    assert a.dtype == np.uint8 and a.shape == (9, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    # A batch gives each prompt its own seeded noise: the first clip equals the single call
    # (to one level: batched kernels may round differently).
    np.testing.assert_allclose(wan.generate(["a dog", "a cat"], [3, 4])[0].astype(int), a, rtol=0, atol=1)
    with pytest.raises(SettingsError, match="unknown setting.*stpes"):
        BACKENDS.get("wan").from_settings({**tiny, "stpes": 3})
    with pytest.raises(SettingsError, match="no pipeline class 'NoSuchPipeline'"):
        BACKENDS.get("diffusers").from_settings({**tiny, "pipeline_class": "NoSuchPipeline"})
    with pytest.raises(SettingsError, match="set `model`"):
        BACKENDS.get("ltx-video").from_settings({})
    with pytest.raises(FloatingPointError, match="NaN"):
        to_uint8(np.full((2, 4, 4, 3), np.nan), "clip")
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.2, -0.1]), "x"), [0, 128, 255, 0])


@pytest.mark.parametrize("path", sorted((REPO / "generation" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_is_valid(path):
    from synvita.generators.backends import BACKENDS
    from synvita.scoring.job import ScoreConfig
    from synvita.scoring.members import MEMBERS

    if path.name.startswith("score_"):
        cfg = load_config(ScoreConfig, path)
        assert all(spec.resolved()[0] in MEMBERS for spec in cfg.members)
        return
    cfg = load_config(GenerateConfig, path)
    if cfg.backend != "import":
        unknown = set(cfg.settings) - set(BACKENDS.get(cfg.backend).defaults)
        assert not unknown, f"{path.name}: settings the backend rejects: {unknown}"


def test_journal_merge_rules(tmp_path):
    from synvita.data.records import append_record

    def rec(status, clip="g/a_001"):
        return SyntheticClip(id=clip, triplet_id="a", caption="c", generator="g", seed=1, path=f"clips/{clip}.mp4",
                             status=status, error=None if status == "done" else "boom", num_frames=3)

    journals = tmp_path / "clips.d"
    append_record(journals / "w1.jsonl", rec("done"))
    append_record(journals / "w1.jsonl", rec("failed"))  # the same worker later failed: latest wins
    append_record(journals / "w1.jsonl", rec("failed", "g/b_001"))
    append_record(journals / "w2.jsonl", rec("done", "g/b_001"))  # another split made it: done wins
    assert {r.id: r.status for r in merge_manifest(tmp_path)} == {"g/a_001": "failed", "g/b_001": "done"}
    with pytest.raises(Exception, match="misalignments: colour not among"):
        load_config(GenerateConfig, None, ["output_dir=x", "backend=wan", "input=x.jsonl", "misalignments=[colour]"])
    with pytest.raises(Exception, match="input: a VideoCon CSV"):
        load_config(GenerateConfig, None, ["output_dir=x", "backend=wan"])


def test_wan_decodes_with_a_float32_vae(tiny_cache):
    import torch

    from synvita.generators.backends import BACKENDS

    tiny = dict(model="tiny:wan", cache_dir=str(tiny_cache), device="cpu", height=16, width=16, num_frames=9,
                steps=2, guidance=3.0, max_sequence_length=16, fps=16, dtype="bfloat16")
    wan = BACKENDS.get("wan").from_settings(tiny)
    assert wan.pipe.vae.dtype == torch.float32 and wan.pipe.transformer.dtype == torch.bfloat16
    decoded = set()  # observes the latents the VAE's decoder receives
    hook = wan.pipe.vae.decoder.register_forward_pre_hook(lambda m, args: decoded.add(args[0].dtype))
    try:
        clip = wan.generate(["a dog"], [3])[0]
    finally:
        hook.remove()
    assert decoded == {torch.float32} and clip.shape == (9, 16, 16, 3)
    same = BACKENDS.get("wan").from_settings({**tiny, "vae_dtype": None})  # null: the pipeline's dtype
    assert same.pipe.vae.dtype == torch.bfloat16
