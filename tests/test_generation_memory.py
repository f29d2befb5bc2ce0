"""Generation memory options: offload onto the process's own device (CUDA mocked: the device handed to
diffusers is checked, per process under a 2-process launch), group offload giving the same clips, and
an out-of-memory batch retried once in halves before its clips are recorded as failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from synvita.config import load_config
from synvita.generators.backends import BACKENDS, SettingsError
from synvita.generators.job import GenerateConfig, merge_manifest, run_generation
from synvita.utils import stable_seed

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(model="tiny:cogvideox", height=16, width=16, num_frames=9, steps=2, guidance=3.0,
                max_sequence_length=16)


def _recording_offload(monkeypatch, gpus: int) -> list:
    """Pretend this machine has `gpus` CUDA devices and record what diffusers' offload calls receive."""
    import diffusers

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload"):
        monkeypatch.setattr(diffusers.DiffusionPipeline, name,
                            lambda self, device=None, _name=name: calls.append((_name, device)))
    monkeypatch.setattr(diffusers.DiffusionPipeline, "enable_group_offload",
                        lambda self, onload_device, **kw: calls.append(("enable_group_offload", onload_device, kw)))
    return calls


@pytest.mark.parametrize("offload, method", [("model", "enable_model_cpu_offload"),
                                             ("sequential", "enable_sequential_cpu_offload"),
                                             ("group", "enable_group_offload")])
def test_offload_goes_to_this_process_gpu(monkeypatch, tiny_cache, offload, method):
    calls = _recording_offload(monkeypatch, gpus=4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    BACKENDS.get("cogvideox").from_settings({**SETTINGS, "cache_dir": str(tiny_cache), "offload": offload,
                                             "group_offload": {"num_blocks_per_group": 2}})
    assert calls[0][:2] == (method, torch.device("cuda", 3))
    if offload == "group":
        assert calls[0][2] == {"offload_type": "block_level", "num_blocks_per_group": 2}
    calls.clear()
    # An explicit index is the user's choice.
    BACKENDS.get("cogvideox").from_settings({**SETTINGS, "cache_dir": str(tiny_cache), "offload": offload,
                                             "device": "cuda:1"})
    assert calls[0][:2] == (method, torch.device("cuda", 1))


def test_unknown_offload_is_refused(tiny_cache):
    with pytest.raises(SettingsError, match="offload 'cpu' is not one of null, model, sequential, group"):
        BACKENDS.get("cogvideox").from_settings({**SETTINGS, "cache_dir": str(tiny_cache), "offload": "cpu"})


def test_group_offload_makes_the_same_clips(tiny_cache):
    prompts, seeds = ["a red ball rolls", "two cats sleep"], [3, 4]
    plain = BACKENDS.get("cogvideox").from_settings({**SETTINGS, "cache_dir": str(tiny_cache)})
    grouped = BACKENDS.get("cogvideox").from_settings({**SETTINGS, "cache_dir": str(tiny_cache), "device": "cpu",
                                                       "offload": "group"})
    for a, b in zip(plain.generate(prompts, seeds), grouped.generate(prompts, seeds)):
        np.testing.assert_array_equal(a, b)


LAUNCHED = textwrap.dedent("""
    import json, os, sys
    import pytest, torch
    sys.path.insert(0, {tests!r})
    from test_generation_memory import _recording_offload
    from synvita.generators.backends import BACKENDS

    with pytest.MonkeyPatch.context() as mp:
        calls = _recording_offload(mp, gpus=2)
        BACKENDS.get("cogvideox").from_settings({settings!r})
    rank = os.environ["RANK"]
    with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump([calls[0][0], str(calls[0][1])], f)
""")


@pytest.mark.slow
def test_two_launched_processes_offload_to_their_own_gpus(tiny_cache, tmp_path):
    settings = {**SETTINGS, "cache_dir": str(tiny_cache), "offload": "model"}
    BACKENDS.get("cogvideox").from_settings({**settings, "offload": None})  # build the tiny pipeline once
    script = tmp_path / "place.py"
    script.write_text(LAUNCHED.format(tests=str(REPO / "tests"), settings=settings, out=str(tmp_path)))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    placed = {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert placed == {0: ["enable_model_cpu_offload", "cuda:0"], 1: ["enable_model_cpu_offload", "cuda:1"]}


# ---- out of memory: one retry at half the batch ----

BATCHES: list[int] = []


def oom_above_two(prompts, seeds, options):
    """A generator that runs out of memory on batches over 2, and always on a prompt saying "huge";
    frame values encode the seed, so each clip shows which seed made it."""
    BATCHES.append(len(prompts))
    if len(prompts) > 2 or any("huge" in p for p in prompts):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    return [np.full((4, 8, 8, 3), seed % 251, np.uint8) for seed in seeds]


def test_an_oom_batch_is_retried_once_at_half_size(tmp_path):
    triplets = tmp_path / "triplets.jsonl"
    negatives = ["a dog jumps", "a cat sits", "a huge wave", "a bird sings", "a car stops"]
    triplets.write_text("".join(json.dumps({
        "id": f"t{i}", "video": f"v{i}.mp4", "caption": f"caption {i}", "negative": n, "misalignment": "action",
        "source": "test", "split": "train"}) + "\n" for i, n in enumerate(negatives)))
    cfg = load_config(GenerateConfig, None, [
        "backend=external", "generator=fake", f"input={triplets}", f"output_dir={tmp_path / 'run'}", "batch_size=4",
        f"settings.entry_point={__name__}:oom_above_two"])
    BATCHES.clear()
    counts = run_generation(cfg, show_progress=False)
    # Batch 1 (t0..t3) fails at 4, then runs as t0,t1 (done) and t2,t3 (t2 "huge": fails again); batch 2 is t4.
    assert BATCHES == [4, 2, 2, 1]
    assert counts == dict(done=3, skipped=0, failed=2, total=5)
    records = {r.triplet_id: r for r in merge_manifest(tmp_path / "run")}
    for tid in ("t2", "t3"):
        assert records[tid].status == "failed"
        assert records[tid].error.startswith("out of memory") and "retried at batch 2" in records[tid].error
    from synvita.data.video import FrameSampler, read_video

    for tid in ("t0", "t1", "t4"):
        r = records[tid]
        assert r.status == "done" and r.seed == stable_seed(r.id, "fake", 0)
        assert read_video(tmp_path / "run" / r.path, FrameSampler("all"))[0, 0, 0, 0] == pytest.approx(r.seed % 251, abs=3)
