"""mPLUG-Owl video: the 7B state dict against the authors' names and shapes, loading the published
layout, the processor's frames, normalisation and prompt, and VideoCon's Owl-Con adapter layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from synvita.data.video import FrameSampler
from synvita.models.mplug_owl import MplugOwlVideoConfig, MplugOwlVideoForConditionalGeneration
from synvita.tiny import build_tiny

# VideoCon's src/prepare_data_for_inference.py prompt, written out by hand.
VIDEOCON_PROMPT = ("The following is a conversation between a curious human and AI assistant. The assistant gives "
                   "helpful, detailed, and polite answers to the user's questions.\nHuman: <|video|>\nHuman: Does this "
                   'video entail the description: "a man opens a door"?\nAI: ')
ALL_LINEAR = r"language_model\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny("mplug-owl-video", tmp_path_factory.mktemp("owl") / "model", seed=4)


def test_7b_state_dict_names_and_shapes_equal_the_reference(shared_data):
    reference = json.loads((shared_data / "reference" / "mplug_owl_video_7b.state_dict.json").read_text())
    expected = {k: v for k, v in reference.items() if not k.startswith("_")}
    with torch.device("meta"):
        model = MplugOwlVideoForConditionalGeneration(MplugOwlVideoConfig())
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    # LLaMA's rotary inverse frequencies were persistent buffers in the authors' transformers 4.28
    # (the reference's `_buffers`); current transformers recomputes them, and loading ignores them.
    buffers = set(reference["_buffers"])
    ignore = MplugOwlVideoForConditionalGeneration._keys_to_ignore_on_load_unexpected
    assert buffers and all(any(re.search(p, b) for p in ignore) for b in buffers)
    missing, extra = sorted(set(expected) - buffers - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"missing {len(missing)}: {missing[:20]}; extra {len(extra)}: {extra[:20]}"
    wrong = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert not wrong, f"shapes (ours, reference): {wrong}"
    assert sum(p.numel() for p in model.parameters()) == reference["_stats"]["parameters_total_unique"]
    assert model.config.num_video_tokens == 65


def test_a_checkpoint_in_the_published_layout_loads_with_no_missing_or_unexpected_keys(tiny_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    layers = model.config.text_config.num_hidden_layers
    head_dim = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    published = dict(state)
    for i in range(layers):  # what transformers 4.28 saved
        published[f"language_model.model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(head_dim // 2)
    folder = tmp_path / "published"
    model.config.save_pretrained(folder)
    torch.save(published, folder / "pytorch_model.bin")
    loaded, info = AutoModelForImageTextToText.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_vision_attention_splits_the_fused_projection_per_head(tiny_dir):
    from transformers import AutoModelForImageTextToText

    attention = AutoModelForImageTextToText.from_pretrained(tiny_dir).vision_model.encoder.layers[0].self_attn
    heads, (n, d) = attention.heads, (5, attention.dense.in_features)
    torch.manual_seed(0)
    x = torch.randn(1, n, d)
    w, b = attention.query_key_value.weight, attention.query_key_value.bias
    hd = d // heads
    outs = []
    for h in range(heads):  # the checkpoint's rows: head h holds q, k, v of width hd one after another
        rows = [slice(h * 3 * hd + j * hd, h * 3 * hd + (j + 1) * hd) for j in range(3)]
        q, k, v = (x[0] @ w[r].T + b[r] for r in rows)
        outs.append(torch.softmax(q @ k.T / hd ** 0.5, -1) @ v)
    expected = attention.dense(torch.cat(outs, -1))
    torch.testing.assert_close(attention(x)[0], expected, atol=1e-5, rtol=1e-5)


def test_temporal_modules_mix_a_patch_with_its_neighbouring_frames_only(tiny_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir).eval()
    adapter = model.vision_model.encoder.layers[0].temporal
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, adapter.ln.normalized_shape[0])  # 4 frames, class token + 2x2 patches
    bumped = x.clone()
    bumped[0, 1, 3] += torch.randn(x.shape[-1])  # frame 1, patch 2 (not a constant: LayerNorm removes it)
    with torch.no_grad():
        changed = (adapter(bumped) - adapter(x)).abs().amax(-1)[0] > 1e-6
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0:3, 3] = True  # a 3-frame depthwise kernel: frames 0, 1, 2 of that patch, never a class token
    assert torch.equal(changed, expected)

    # A one-frame clip skips the temporal adapter and the temporal queries; a longer clip uses both.
    video = torch.randn(1, 3, 3, 28, 28)
    with torch.no_grad():
        before = [model.get_video_features(v).pooler_output for v in (video[:, :1], video)]
        model.temporal_query_tokens.add_(1.0)
        model.vision_model.encoder.layers[0].temporal.up_proj.bias.add_(1.0)
        after = [model.get_video_features(v).pooler_output for v in (video[:, :1], video)]
    assert torch.equal(before[0], after[0]) and not torch.allclose(before[1], after[1])
    assert before[1].shape == (1, model.config.num_video_tokens, model.config.text_config.hidden_size)


def test_processor_frames_normalisation_and_prompt(tiny_dir):
    from PIL import Image
    from transformers import AutoProcessor

    from synvita.models.families import load_video_lmm

    lmm = load_video_lmm(tiny_dir)
    before, after = lmm.prompt_pieces('Does this video entail the description: "{text}"?')
    assert before + "a man opens a door" + after == VIDEOCON_PROMPT

    processor = AutoProcessor.from_pretrained(tiny_dir)
    side = processor.video_processor.size["height"]
    video = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    inputs = processor(text=[VIDEOCON_PROMPT], videos=[video], return_tensors="pt")
    # Each frame resized straight to side x side (no crop), scaled to [0, 1], CLIP mean/std.
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
    frames = [np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC), dtype=np.float64) / 255 for f in video]
    expected = torch.tensor(np.stack([(f - mean) / std for f in frames]).transpose(0, 3, 1, 2))
    got = inputs["pixel_values_videos"][0].double()
    assert got.shape == expected.shape and (got - expected).abs().mean() < 0.02
    placeholders = (inputs["input_ids"][0] == lmm.video_token_id).nonzero().flatten()
    assert len(placeholders) == lmm.model.config.num_video_tokens
    assert (placeholders.diff() == 1).all()  # one block where the prompt says <|video|>
    assert lmm.video_token_id == lmm.model.config.text_config.vocab_size  # past the table, as in the 7B


def test_generate_with_the_cache_equals_greedy_decoding_by_full_forwards(tiny_dir):
    from synvita.models.families import load_video_lmm

    lmm = load_video_lmm(tiny_dir)
    video = np.random.default_rng(3).integers(0, 256, (4, 30, 40, 3), dtype=np.uint8)
    inputs = lmm.processor(text=[VIDEOCON_PROMPT], videos=[video], return_tensors="pt")
    with torch.no_grad():
        generated = lmm.model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
        ids = inputs["input_ids"]
        for _ in range(4):  # the whole sequence again at every step, no cache
            logits = lmm.model(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"]).logits
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(generated, ids)


def test_segments_sampler_picks_the_authors_frames_and_is_the_familys_default(tiny_dir):
    from synvita.models.families import trained_sampler

    # mPLUG-Owl's get_index(100, 4): segment 99/4 = 24.75, first at int(12.375) = 12, then 12 + round(24.75 i).
    assert FrameSampler("segments", 4).indices(np.arange(100) / 25, 4.0).tolist() == [12, 37, 62, 86]
    # `synvita evaluate` / `entail` sample as the family was trained unless told otherwise.
    assert trained_sampler(str(tiny_dir)) == FrameSampler("segments", 32)
    assert trained_sampler(str(tiny_dir), "uniform") == FrameSampler("uniform", 32)
    assert trained_sampler(str(tiny_dir), num_frames=8).describe() == "segments-8"


def _owl_con_layout(peft_model) -> dict[str, torch.Tensor]:
    """The PEFT-wrapped model's whole state dict as VideoCon's old PEFT saved it (no `.base_layer`)."""
    return {k.replace(".base_layer", ""): v.clone() for k, v in peft_model.state_dict().items()}


def test_owl_con_adapter_maps_onto_ours_and_changes_the_scores(tiny_dir, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    from synvita.cli import main as cli_main
    from synvita.data.video import write_video
    from synvita.models.adapters import OWL_CON_ALPHA, AdapterError, apply_adapter, read_owl_con
    from synvita.models.families import load_video_lmm

    base = load_video_lmm(tiny_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base.model, LoraConfig(r=4, lora_alpha=OWL_CON_ALPHA, lora_dropout=0.05,
                                                       target_modules=ALL_LINEAR, init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "ours")
    owl_con = tmp_path / "owl-con"
    owl_con.mkdir()
    torch.save(_owl_con_layout(peft_model), owl_con / "pytorch_model.bin")

    lora, settings = read_owl_con(owl_con)
    layers = base.model.config.text_config.num_hidden_layers
    assert settings["r"] == 4 and len(settings["target_modules"]) == 7 * layers and len(lora) == 14 * layers

    ours, mapped = load_video_lmm(tiny_dir), load_video_lmm(tiny_dir)
    apply_adapter(ours, tmp_path / "ours")
    apply_adapter(mapped, str(owl_con))
    expected = ours.model.state_dict()
    assert mapped.model.state_dict().keys() == expected.keys()
    for k, v in mapped.model.state_dict().items():
        assert torch.equal(v, expected[k]), k

    rng = np.random.default_rng(1)
    clip = tmp_path / "clip.mp4"
    write_video(clip, rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=4)
    argv = ["entail", "--model", str(tiny_dir), "--video", str(clip), "--frames", "4", "--text", "a dog jumps",
            "--text", "two cats sit"]
    capsys.readouterr()
    scores = {}
    for name, adapter in (("base", []), ("ours", ["--adapter", str(tmp_path / "ours")]),
                          ("owl-con", ["--adapter", str(owl_con / "pytorch_model.bin")])):
        assert cli_main(argv + adapter) == 0
        scores[name] = np.array([float(x) for x in capsys.readouterr().out.split()])
    assert np.allclose(scores["owl-con"], scores["ours"], atol=1e-6)
    assert np.abs(scores["owl-con"] - scores["base"]).max() > 1e-3

    # A state dict without LoRA pairs, or for another model's modules, is refused by name.
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.bin")
    with pytest.raises(AdapterError, match="no LoRA tensors"):
        apply_adapter(load_video_lmm(tiny_dir), tmp_path / "plain.bin")
    other = {k.replace("language_model.model", "llm"): v for k, v in _owl_con_layout(peft_model).items()}
    torch.save(other, tmp_path / "other.bin")
    with pytest.raises(AdapterError, match="not in the MplugOwlVideoForConditionalGeneration"):
        apply_adapter(load_video_lmm(tiny_dir), tmp_path / "other.bin")


def test_the_shipped_recipe_trains_the_tiny_model_with_lora_on_every_llm_linear_layer(tiny_dir, tmp_path):
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    from synvita.config import load_config
    from synvita.training.config import TrainConfig
    from synvita.training.loop import train
    from training_data import make_run

    data = make_run(tmp_path / "data", n=4)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "mplug_owl" / "synvita.yaml"
    cfg = load_config(TrainConfig, recipe, [
        f"model.name_or_path={tiny_dir}", f"data.triplets={data / 'triplets.jsonl'}",
        f"data.clips={data / 'clips.jsonl'}", f"data.weights={data / 'weights.jsonl'}",
        f"output_dir={tmp_path / 'out'}", "data.frames.num_frames=4", "per_device_batch_size=2", "max_steps=2",
        "data.generators=null",
        'mixed_precision="no"', "resume_from=null", "lora.r=4"])
    AcceleratorState._reset_state(True)
    result = train(cfg)
    logged = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert all(logged[-1][k] > 0 for k in ("loss_real", "loss_syn", "loss_scr", "loss_explanation"))
    trained = load_file(result.checkpoint / "adapter" / "adapter_model.safetensors")
    kinds = {re.search(r"\.(\w+_proj)\.lora_A", k).group(1) for k in trained if "lora_A" in k}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)


def _published_folder(folder: Path, seed: int = 0):
    """A tiny checkpoint in the authors' published layout: model_type `mplug-owl`, pickled shards with
    the stale rotary buffers, a sentencepiece LLaMA tokenizer under their class name, CLIP settings."""
    import io

    import sentencepiece as spm

    from synvita.tiny.lmms import _CORPUS

    folder.mkdir(parents=True)
    lines = [line for line in _CORPUS.splitlines() if line.strip()] + ["Yes No yes no"] * 20 + [VIDEOCON_PROMPT] * 5
    proto = io.BytesIO()
    # LLaMA's sentencepiece settings: BPE with byte fallback, split digits, no whitespace clean-up.
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=proto, vocab_size=500, model_type="bpe",
                                   byte_fallback=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2)
    (folder / "tokenizer.model").write_bytes(proto.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "MplugOwlTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "MplugOwlImageProcessor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711]}))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=28,
                  patch_size=14, initializer_range=0.2)
    abstractor = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      encoder_hidden_size=32, initializer_range=0.2)
    text = dict(model_type="llama", vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, initializer_range=0.2, pad_token_id=2)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "mplug-owl", "architectures": ["MplugOwlForConditionalGeneration"], "num_query_tokens": 8,
        "vision_config": {**vision, "model_type": "mplug_owl_vision_model"},
        "visual_abstractor_config": {**abstractor, "model_type": "mplug_owl_visual_abstract"}, "text_config": text}))
    torch.manual_seed(seed)
    model = MplugOwlVideoForConditionalGeneration(MplugOwlVideoConfig(
        vision_config=vision, visual_abstractor_config=abstractor, text_config=text, num_query_tokens=8,
        initializer_range=0.2))
    state = model.state_dict()
    names = sorted(state)
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:]), 1):
        shard = {k: state[k] for k in part}
        if i == 2:
            shard.update({f"language_model.model.layers.{n}.self_attn.rotary_emb.inv_freq": torch.ones(8)
                          for n in range(2)})
        torch.save(shard, folder / f"pytorch_model-0000{i}-of-00002.bin")
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    return state, sp


def test_the_published_layout_converts_once_on_first_load(tmp_path, monkeypatch, capsys):
    from synvita.cli import main as cli_main
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import family_for_checkpoint, load_video_lmm

    monkeypatch.setenv("SYNVITA_CACHE", str(tmp_path / "cache"))
    state, sp = _published_folder(tmp_path / "published")
    assert family_for_checkpoint(tmp_path / "published").name == "mplug-owl-video"  # before any conversion
    lmm = load_video_lmm(tmp_path / "published")
    converted = Path(lmm.source)
    assert converted.parent == tmp_path / "cache" / "converted" and not list(converted.glob("*.bin"))
    loaded = lmm.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)

    # The whole prompt tokenizes as the authors' processor did: BOS, then each text piece around the
    # video encoded on its own by sentencepiece, the placeholder repeated 9 times (8 queries + eos).
    head, tail = VIDEOCON_PROMPT.split("<|video|>")
    expected = [1] + sp.encode(head) + [lmm.video_token_id] * 9 + sp.encode(tail)
    assert lmm.processor(text=[VIDEOCON_PROMPT])["input_ids"][0] == expected
    assert lmm.video_token_id == 500 and sp.id_to_piece(lmm.yes_ids[0]).strip("▁").lower() == "yes"
    video = np.random.default_rng(2).integers(0, 256, (4, 30, 40, 3), dtype=np.uint8)
    f = AlignmentScorer(lmm).score([video, video], ["a man opens a door", "a dog"])
    assert torch.isfinite(f).all() and 0 < f.min() and f.max() < 1

    stamp = (converted / "config.json").stat().st_mtime_ns
    assert load_video_lmm(tmp_path / "published").source == str(converted)
    assert (converted / "config.json").stat().st_mtime_ns == stamp  # converted once

    assert cli_main(["convert", "--model", str(tmp_path / "published"), "--out", str(tmp_path / "by-hand")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "by-hand")
    assert cli_main(["convert", "--model", str(converted), "--out", str(tmp_path / "again")]) == 2
    assert "no family converts checkpoints of model_type 'mplug_owl_video'" in capsys.readouterr().err
