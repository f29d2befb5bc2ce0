"""The training recipe on a tiny random Video-LLaVA and a learnable colour data set (tests/training_data.py)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from synvita.config import load_config
from synvita.tiny.lmms import TINY_KINDS
from synvita.training.config import TrainConfig
from training_data import make_run

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "recipes" / "configs" / "tiny" / "synvita_cpu.yaml"
METRIC_KEYS = {"step", "lr", "loss", "loss_real", "loss_syn", "loss_scr", "loss_explanation", "w_mean", "w_min", "w_max", "w_zero_share"}


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    from synvita.tiny import build_tiny

    root = tmp_path_factory.mktemp("training")
    model = build_tiny("video-llava", root / "video-llava")
    data = make_run(root / "data", n=8, real_only={3: "failed"})
    return model, data


def make_cfg(tiny_setup, out: Path, *overrides: str) -> TrainConfig:
    model, data = tiny_setup
    return load_config(TrainConfig, TINY_YAML, [
        f"model.name_or_path={model}", f"data.triplets={data / 'triplets.jsonl'}",
        f"data.clips={data / 'clips.jsonl'}", f"data.weights={data / 'weights.jsonl'}", f"output_dir={out}",
        *overrides])


def run(cfg: TrainConfig):
    from accelerate.state import AcceleratorState

    from synvita.training.loop import train

    # Each run in this process starts from a fresh accelerate state, as a new launch would.
    AcceleratorState._reset_state(True)
    return train(cfg)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def adapter(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "adapter" / "adapter_model.safetensors")


def assert_same_adapter(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f"{k}: {m}")


def test_loss_falls_lora_changes_frozen_does_not(tiny_setup, tmp_path):
    from peft import PeftModel

    from synvita.models.families import load_video_lmm

    out = tmp_path / "run"
    result = run(make_cfg(tiny_setup, out, "epochs=3", "max_steps=null", "optim.lr=1e-2", "save_every=100"))
    logged = metrics(out)
    assert [m["step"] for m in logged] == list(range(1, 13)) and set(logged[0]) == METRIC_KEYS
    first, last = (sum(m["loss"] for m in part) / 4 for part in (logged[:4], logged[-4:]))
    assert last < 0.5 * first, (first, last)
    # t3's clip failed: it trains real-only and is left out of the weight statistics.
    assert all(0 < m["w_min"] <= m["w_mean"] <= m["w_max"] for m in logged)

    base = load_video_lmm(tiny_setup[0]).model.state_dict()
    trained = {k.replace("base_model.model.", "", 1).replace(".base_layer", ""): v
               for k, v in result.model.state_dict().items()}
    lora = {k: v for k, v in trained.items() if "lora_" in k}
    assert lora and all(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero
    frozen = {k: v for k, v in trained.items() if "lora_" not in k}
    assert frozen.keys() == base.keys()
    for k, v in frozen.items():
        assert torch.equal(v, base[k]), k
    assert {n for n, p in result.model.named_parameters() if p.requires_grad} == {
        n for n in dict(result.model.named_parameters()) if "lora_" in n}

    reloaded = PeftModel.from_pretrained(load_video_lmm(tiny_setup[0]).model, result.checkpoint / "adapter")
    for k, v in reloaded.state_dict().items():
        if "lora_" in k:
            torch.testing.assert_close(v, result.model.state_dict()[k])
    resolved = (out / "resolved.yaml").read_text()
    assert "lr: 0.01" in resolved and "transformers:" in resolved


@pytest.mark.parametrize("syn, scr", [(False, False), (True, False), (False, True)])
def test_switching_losses_off_removes_them(tiny_setup, tmp_path, syn, scr):
    run(make_cfg(tiny_setup, tmp_path, "max_steps=1", f"loss.syn={str(syn).lower()}", f"loss.scr={str(scr).lower()}"))
    (m,) = metrics(tmp_path)
    assert (m["loss_syn"] > 0) == syn and (m["loss_scr"] > 0) == scr
    assert m["loss"] == pytest.approx(m["loss_real"] + m["loss_syn"] + m["loss_scr"], rel=1e-6)


def test_accumulation_matches_the_big_batch(tiny_setup, tmp_path):
    # per_triplet is the normalisation that is invariant to the split of the global batch.
    big = run(make_cfg(tiny_setup, tmp_path / "big", "max_steps=2", "per_device_batch_size=4", "optim.lr=1e-2",
                       "loss.normalization=per_triplet"))
    acc = run(make_cfg(tiny_setup, tmp_path / "acc", "max_steps=2", "per_device_batch_size=2",
                       "gradient_accumulation_steps=2", "optim.lr=1e-2", "loss.normalization=per_triplet"))
    assert_same_adapter(adapter(big.checkpoint), adapter(acc.checkpoint), atol=1e-6)
    assert metrics(tmp_path / "big")[-1]["loss"] == pytest.approx(metrics(tmp_path / "acc")[-1]["loss"], rel=1e-5)


def test_resume_after_a_kill_gives_the_same_adapter(tiny_setup, tmp_path):
    # 8 examples / batch 2 = 4 steps per epoch: resuming at step 2 is mid-epoch and crosses into the
    # second. Dropout on, so the restored RNG matters too.
    args = ("epochs=2", "max_steps=6", "save_every=2", "keep_checkpoints=3", "lora.dropout=0.1", "optim.lr=1e-2")
    full = run(make_cfg(tiny_setup, tmp_path / "full", *args))

    # What a run killed while writing step 4 leaves: a complete step-2 (mid-epoch) and a partial temp dir.
    killed = tmp_path / "killed" / "checkpoints"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-0000002", killed / "step-0000002")
    (killed / ".tmp-step-0000004" / "adapter").mkdir(parents=True)
    # It had logged step 3 too: that step is trained again and must be logged once.
    logged = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "killed" / "metrics.jsonl").write_text("".join(logged[:3]))
    resumed = run(make_cfg(tiny_setup, tmp_path / "killed", *args, "resume_from=latest"))
    assert resumed.checkpoint.name == "step-0000006" and not (killed / ".tmp-step-0000004").exists()
    assert [m["step"] for m in metrics(tmp_path / "killed")] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(metrics(tmp_path / "killed"), metrics(tmp_path / "full")):
        assert a == pytest.approx(b, rel=1e-5)
    assert_same_adapter(adapter(full.checkpoint), adapter(resumed.checkpoint), atol=1e-6)


def launch(tmp_path: Path, tiny_setup, out: str, launcher: list[str], *overrides: str) -> Path:
    import os
    import subprocess
    import sys

    model, data = tiny_setup
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", *launcher, str(REPO / "recipes" / "finetune.py"),
           "--config", str(TINY_YAML), f"model.name_or_path={model}", f"data.triplets={data / 'triplets.jsonl'}",
           f"data.clips={data / 'clips.jsonl'}", f"data.weights={data / 'weights.jsonl'}",
           f"output_dir={tmp_path / out}", *overrides]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"} if "--multi_gpu" in launcher else dict(os.environ)
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / out


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tiny_setup, tmp_path):
    args = ("max_steps=2", "optim.lr=1e-2", "loss.normalization=per_triplet")
    one = run(make_cfg(tiny_setup, tmp_path / "one", *args, "per_device_batch_size=4"))
    two = launch(tmp_path, tiny_setup, "two", ["--multi_gpu", "--num_processes", "2"], *args, "per_device_batch_size=2")
    assert len(list((two / "checkpoints" / "step-0000002").glob("rng-*.safetensors"))) == 2
    assert_same_adapter(adapter(one.checkpoint), adapter(two / "checkpoints" / "step-0000002"), atol=1e-6)
    assert [m["loss"] for m in metrics(two)] == pytest.approx([m["loss"] for m in metrics(tmp_path / "one")], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_initialises_steps_saves_and_resumes(tiny_setup, tmp_path, stage):
    pytest.importorskip("deepspeed")
    # DeepSpeed's CPU accelerator runs one process here (accelerate sees a world of 1 for 2 CPU ranks).
    config = tmp_path / f"zero{stage}.yaml"
    config.write_text(f"distributed_type: DEEPSPEED\ndeepspeed_config: {{zero_stage: {stage}}}\n"
                      "num_machines: 1\nnum_processes: 1\nmachine_rank: 0\nuse_cpu: false\n")
    # Tolerance 1e-4: ZeRO's partitioned reductions change float summation order, and Adam's
    # g/sqrt(v) turns that noise into up to ~1e-5 on near-zero-gradient weights.
    args = ("optim.lr=1e-2", "per_device_batch_size=4", "epochs=2", "max_steps=4", "save_every=2",
            "keep_checkpoints=3")
    plain = run(make_cfg(tiny_setup, tmp_path / "plain", *args))
    out = launch(tmp_path, tiny_setup, "ds", ["--config_file", str(config)], *args)
    assert (out / "checkpoints" / "step-0000004" / "pytorch_model").is_dir()
    assert_same_adapter(adapter(plain.checkpoint), adapter(out / "checkpoints" / "step-0000004"), atol=1e-4)
    # Killed after step 2's checkpoint: resume from DeepSpeed's own files.
    shutil.rmtree(out / "checkpoints" / "step-0000004")
    launch(tmp_path, tiny_setup, "ds", ["--config_file", str(config)], *args, "resume_from=latest")
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4]
    assert_same_adapter(adapter(plain.checkpoint), adapter(out / "checkpoints" / "step-0000004"), atol=1e-4)


def test_explanation_nll_matches_the_models_own_label_loss(tiny_setup):
    from synvita.data.video import read_video
    from synvita.models.families import load_video_lmm
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples
    from synvita.text.prompts import EXPLAIN_QUESTION
    from synvita.training.views import explanation_nll

    lmm = load_video_lmm(tiny_setup[0])
    examples, _ = load_examples(DataConfig(triplets=tiny_setup[1] / "triplets.jsonl"), "fixed")
    frames = [read_video(e.video) for e in examples[:2]]
    got = explanation_nll(lmm, examples[:2], frames)

    # Independent: the model's built-in loss with labels masked up to the processed prompt's length.
    for e, clip, nll_sum, tokens in zip(examples[:2], frames, got.nll_sum, got.tokens):
        before, after = lmm.prompt_pieces(EXPLAIN_QUESTION)
        prompt = before + e.triplet.negative + after
        full = lmm.processor(text=[prompt + " " + e.triplet.nle + lmm.tokenizer.eos_token], videos=[clip],
                             return_tensors="pt")
        n_prompt = lmm.processor(text=[prompt], videos=[clip], return_tensors="pt")["input_ids"].shape[1]
        labels = full["input_ids"].clone()
        labels[:, :n_prompt] = -100
        with torch.no_grad():
            want = lmm.model(**full, labels=labels).loss
        assert tokens.item() == (labels[:, 1:] != -100).sum().item()
        torch.testing.assert_close((nll_sum / tokens).detach(), want, rtol=1e-4, atol=1e-5)


def test_explanations_add_their_loss(tiny_setup, tmp_path):
    run(make_cfg(tiny_setup, tmp_path, "max_steps=1", "data.explanations=true"))
    (m,) = metrics(tmp_path)
    assert m["loss_explanation"] > 0
    assert m["loss"] == pytest.approx(m["loss_real"] + m["loss_syn"] + m["loss_scr"] + m["loss_explanation"], rel=1e-6)


def test_feature_cache_reuses_real_video_features_and_keys_on_settings(tiny_setup, tmp_path):
    import os

    from synvita.data.video import Clip, FrameSampler, read_clip
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm
    from synvita.models.features import FeatureCache, frozen_tensors
    from synvita.training.config import DataConfig
    from synvita.training.data import load_examples
    from synvita.training.views import TripletScorer

    lmm = load_video_lmm(tiny_setup[0])
    examples, _ = load_examples(DataConfig(triplets=tiny_setup[1] / "triplets.jsonl"), "fixed")
    examples = examples[:2]
    frames = [read_clip(e.video) for e in examples]
    scorer = AlignmentScorer(lmm)
    cache = FeatureCache(tmp_path, scorer)
    with torch.no_grad():
        fresh = TripletScorer(scorer)(examples, frames, [None, None], use_syn=False, use_scr=True)[0]
        first = TripletScorer(scorer, cache)(examples, frames, [None, None], use_syn=False, use_scr=True)[0]
        assert len(list(tmp_path.glob("*.safetensors"))) == 2
        # Frames that are not the video's: only a cache hit can still give the true scores.
        blank = [Clip(np.zeros_like(f.frames), f.fps) for f in frames]
        cached = TripletScorer(scorer, cache)(examples, blank, [None, None], use_syn=False, use_scr=True)[0]
    for name in fresh:
        for a, b, c in zip(fresh[name], first[name], cached[name]):
            torch.testing.assert_close(a, b)
            torch.testing.assert_close(a, c)
    video = examples[0].video
    assert FeatureCache(tmp_path, AlignmentScorer(lmm, FrameSampler(num_frames=4))).path(video) != cache.path(video)
    llm_weight = next(p for n, p in lmm.model.named_parameters() if n.startswith(lmm.family.llm_module))
    tower_weight = next(t for _, t in frozen_tensors(lmm) if t.is_floating_point())
    with torch.no_grad():
        llm_weight.add_(1.0)  # what an adapter merged into the LLM does: the features stay valid
        assert FeatureCache(tmp_path, scorer).path(video) == cache.path(video)
        tower_weight.add_(1.0)
        assert FeatureCache(tmp_path, scorer).path(video) != cache.path(video)
    before = cache.path(video)
    os.utime(video, ns=(1, 1))
    assert cache.path(video) != before


def test_a_warm_feature_cache_trains_the_same_adapter_without_decoding_or_encoding(tiny_setup, tmp_path,
                                                                                     monkeypatch):
    import synvita.training.data as data_module
    from synvita.models.families import load_video_lmm

    decoded, encoded = [], []
    read_clip = data_module.read_clip
    monkeypatch.setattr(data_module, "read_clip", lambda path, sampler: decoded.append(path) or read_clip(path, sampler))
    lmm = load_video_lmm(tiny_setup[0])
    tower_type = type(lmm.model.get_submodule(lmm.family.vision_modules[0]))
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: encoded.append(1) if isinstance(module, tower_type) else None)
    args = ("max_steps=2", "optim.lr=1e-2", "per_device_batch_size=4")
    cache = f"data.feature_cache={tmp_path / 'features'}"
    runs = {}
    try:
        for name, extra in (("plain", ()), ("cold", (cache,)), ("warm", (cache,))):
            del decoded[:], encoded[:]
            runs[name] = (run(make_cfg(tiny_setup, tmp_path / name, *args, *extra)), len(decoded), len(encoded))
    finally:
        hook.remove()
    (plain, plain_decoded, plain_encoded), (cold, _, _), (warm, warm_decoded, warm_encoded) = runs.values()
    assert plain_decoded > 0 and plain_encoded > 0
    assert warm_decoded == 0 and warm_encoded == 0  # real videos and synthetic clips alike come from the cache
    for result in (cold, warm):
        assert_same_adapter(adapter(plain.checkpoint), adapter(result.checkpoint), atol=1e-6)


def test_gradient_checkpointing_gives_the_same_adapter(tiny_setup, tmp_path):
    args = ("max_steps=2", "optim.lr=1e-2")
    plain = run(make_cfg(tiny_setup, tmp_path / "plain", *args))
    ckpt = run(make_cfg(tiny_setup, tmp_path / "ckpt", *args, "model.gradient_checkpointing=true"))
    assert ckpt.model.base_model.model.is_gradient_checkpointing
    assert_same_adapter(adapter(plain.checkpoint), adapter(ckpt.checkpoint), atol=1e-6)


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_adapter(tiny_setup, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    model, data = tiny_setup
    args = ["epochs=2", "max_steps=8", "save_every=2", "keep_checkpoints=5", "lora.dropout=0.1", "optim.lr=1e-2",
            f"model.name_or_path={model}", f"data.triplets={data / 'triplets.jsonl'}",
            f"data.clips={data / 'clips.jsonl'}", f"data.weights={data / 'weights.jsonl'}"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "recipes" / "finetune.py"), "--config", str(TINY_YAML),
                             *args, f"output_dir={out}"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "step-0000002").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [p.name for p in (out / "checkpoints").glob("step-*")]
    assert done and "step-0000008" not in done, f"the run was not killed mid-way: {done}"

    resumed = run(load_config(TrainConfig, TINY_YAML, [*args, f"output_dir={out}", "resume_from=latest"]))
    full = run(load_config(TrainConfig, TINY_YAML, [*args, f"output_dir={tmp_path / 'full'}"]))
    assert resumed.checkpoint.name == "step-0000008"
    assert_same_adapter(adapter(full.checkpoint), adapter(resumed.checkpoint), atol=1e-6)
    assert_same_adapter(adapter(full.checkpoint), adapter(resumed.checkpoint), atol=1e-6)


@pytest.mark.parametrize("kind", [k for k in TINY_KINDS if k != "video-llava"])  # video-llava: the tests above
def test_every_family_trains(tiny_setup, tmp_path, kind):
    from synvita.tiny import build_tiny

    model = build_tiny(kind, tmp_path / kind)
    # Two steps: warmup makes the first learning rate 0.
    result = run(make_cfg(tiny_setup, tmp_path / "out", f"model.name_or_path={model}", "max_steps=2",
                          "data.explanations=true", "model.gradient_checkpointing=true"))
    m = metrics(tmp_path / "out")[-1]
    assert all(m[k] > 0 for k in ("loss_real", "loss_syn", "loss_scr", "loss_explanation"))
    trained = adapter(result.checkpoint)
    assert trained and all(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)
    assert all(".language_model." in k for k in trained)


def test_a_caption_the_model_cannot_score_stops_training_before_it_starts(tiny_setup, tmp_path):
    from synvita.errors import SynvitaError

    _, data = tiny_setup
    lines = (data / "triplets.jsonl").read_text().splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["negative"] = "a <video> in the caption"  # the tiny Video-LLaVA's video placeholder
    (data / "bad_triplets.jsonl").write_text(lines[0] + json.dumps(bad) + "\n" + "".join(lines[2:]))
    with pytest.raises(SynvitaError, match=r"bad_triplets.jsonl:2: negative: caption .* contains the video placeholder"):
        run(make_cfg(tiny_setup, tmp_path / "out", "max_steps=1", f"data.triplets={data / 'bad_triplets.jsonl'}"))
    assert not (tmp_path / "out" / "checkpoints").exists()
