"""Family registry: detection from config.model_type, Yes/No ids, module table, prompts, loading."""

from __future__ import annotations

import re

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from synvita.models.families import (
    FAMILIES, FamilyError, answer_token_ids, family_for_model_type, load_video_lmm, quantization_config,
)
from synvita.tiny import build_tiny
from synvita.tiny.lmms import TINY_KINDS

QUESTION = 'Does this video entail the description: "{text}"?'


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {kind: build_tiny(kind, root / kind, seed=1) for kind in TINY_KINDS}


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_loaded_family_knows_its_checkpoint(kind, tiny_dirs):
    lmm = load_video_lmm(tiny_dirs[kind])
    assert lmm.family.name == kind and family_for_model_type(lmm.model.config.model_type) is lmm.family
    assert not lmm.model.training

    # Yes/No ids against an independent scan of the whole vocabulary.
    tok = lmm.tokenizer
    spelled = {i: tok.decode([i]).strip() for i in range(len(tok))}
    assert set(lmm.yes_ids) == {i for i, s in spelled.items() if s in ("Yes", "yes")}
    assert set(lmm.no_ids) == {i for i, s in spelled.items() if s in ("No", "no")}

    # LoRA goes to the LLM's linear layers (all_linear: q/k/v/o and gate/up/down; attention: q/k/v/o)
    # and nowhere else; frozen modules are the vision side.
    names = [n for n, _ in lmm.model.named_modules()]
    layers = lmm.model.config.text_config.num_hidden_layers
    llm = lmm.family.llm_module
    llm_linear = [n for n, m in lmm.model.named_modules() if n.startswith(llm + ".layers.")
                  and isinstance(m, torch.nn.Linear)]
    for preset, per_layer in (("all_linear", 7), ("attention", 4)):
        targets = [n for n in names if re.fullmatch(lmm.family.lora_target_regex(preset), n)]
        assert len(targets) == per_layer * layers and set(targets) <= set(llm_linear), preset
    assert len(llm_linear) == 7 * layers  # all_linear leaves no linear layer of the LLM out
    vision = [n for n in names if n.startswith(lmm.family.frozen_modules())]
    assert vision and not any(n.startswith(llm) for n in vision)

    # The prompt keeps VideoCon's question inside the family's chat format, split at the caption.
    before, after = lmm.prompt_pieces(QUESTION)
    caption = "a man opens a door"
    messages = [{"role": "user", "content": [{"type": "video"},
                                             {"type": "text", "text": QUESTION.format(text=caption)}]}]
    full = lmm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert before + caption + after == full
    assert before.endswith('entail the description: "') and lmm.video_token in before


def test_unknown_model_type_is_refused_with_the_supported_list():
    with pytest.raises(FamilyError, match="'bert'.*qwen2_vl"):
        family_for_model_type("bert")
    assert set(FAMILIES.names()) == set(TINY_KINDS)


def test_tokenizer_without_single_yes_token_is_refused():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # No merges at all: every word is spelled out in bytes.
    tok.train_from_iterator(["abc"], trainers.BpeTrainer(
        vocab_size=10, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    with pytest.raises(FamilyError, match="no single token for 'Yes'"):
        answer_token_ids(fast, "Yes")


def test_dtype_and_quantization_settings(tiny_dirs):
    lmm = load_video_lmm(tiny_dirs["qwen2-vl"], dtype="bfloat16")
    assert {p.dtype for p in lmm.model.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="quantization"):
        quantization_config(lmm.family, "3bit", torch.float16)
    q4 = quantization_config(lmm.family, "4bit", torch.bfloat16)
    assert q4.load_in_4bit and q4.bnb_4bit_compute_dtype == torch.bfloat16
    assert set(q4.llm_int8_skip_modules) == {*lmm.family.frozen_modules(), "lm_head"}
    assert quantization_config(lmm.family, "8bit", torch.float32).load_in_8bit
    with pytest.raises(ValueError, match="exactly once"):
        lmm.prompt_pieces("no placeholder here")


@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@pytest.mark.parametrize("kind", ["qwen2-vl", "mplug-owl-video"])  # transformers' module tree and ours
def test_bitsandbytes_quantises_the_llm_only(quantization, kind, tiny_dirs):
    import bitsandbytes as bnb

    lmm = load_video_lmm(tiny_dirs[kind], quantization=quantization, device="cpu")
    layer = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}[quantization]
    llm = [m for n, m in lmm.model.named_modules() if re.fullmatch(lmm.family.lora_target_regex("all_linear"), n)]
    vision = [m for n, m in lmm.model.named_modules()
              if n.startswith(lmm.family.frozen_modules()) and isinstance(m, torch.nn.Linear)]
    assert llm and all(isinstance(m, layer) for m in llm)
    assert vision and not any(isinstance(m, layer) for m in vision)
    assert not isinstance(lmm.model.get_output_embeddings(), layer)


def _without_video_processor_config(src, dst):
    """A copy of `src` laid out like the released Qwen2-VL checkpoints: an image preprocessor config
    (max_pixels 12845056) and no video one, so transformers builds the video processor from it."""
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "processor_config.json").read_text())
    del config["video_processor"]
    image = config.pop("image_processor")
    image["size"] = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 16384}
    (dst / "processor_config.json").write_text(json.dumps(config))
    (dst / "preprocessor_config.json").write_text(json.dumps({**image, "processor_class": config["processor_class"]}))
    return dst


@pytest.mark.parametrize("kind", ["qwen2-vl", "qwen2.5-vl"])
def test_video_frames_are_capped_at_the_reference_pixels(kind, tiny_dirs, tmp_path):
    import numpy as np
    from transformers import AutoProcessor

    from synvita.models.families import QWEN_VIDEO_MAX_PIXELS

    folder = _without_video_processor_config(tiny_dirs[kind], tmp_path / kind)
    clip = np.zeros((8, 720, 1280, 3), dtype=np.uint8)  # 8 frames of 720p

    def video_tokens(processor) -> int:
        grid = processor.video_processor(videos=[clip], return_tensors="pt")["video_grid_thw"][0]
        return int(grid.prod()) // processor.video_processor.merge_size ** 2

    # What transformers alone gives: the image bound, so 720p at full size (26 x 46 tokens per 2 frames).
    assert video_tokens(AutoProcessor.from_pretrained(folder)) == 4 * 26 * 46
    lmm = load_video_lmm(folder)
    assert lmm.processor.video_processor.size.longest_edge == QWEN_VIDEO_MAX_PIXELS == 768 * 28 * 28
    # 720p shrunk to at most 768 tokens of 28 x 28 pixels per temporal patch: 20 x 36 = 720
    assert video_tokens(lmm.processor) == 4 * 20 * 36
    small = load_video_lmm(folder, video_max_pixels=360 * 420)
    assert video_tokens(small.processor) <= 4 * 360 * 420 // (28 * 28)
    # a checkpoint's own smaller bound is kept
    assert load_video_lmm(tiny_dirs[kind]).processor.video_processor.size.longest_edge == 28 * 28


@pytest.mark.parametrize("kind", ["video-llava", "llava-next-video", "llava-onevision", "qwen2-vl", "qwen2.5-vl"])
def test_fallback_prompt_equals_the_chat_template(kind, tiny_dirs):
    """A checkpoint saved without a chat template prompts as the family's template does (system turn,
    newlines; the tiny models carry the real templates' layout)."""
    lmm = load_video_lmm(tiny_dirs[kind])
    templated = lmm.prompt_pieces(QUESTION)
    lmm.processor.chat_template = None
    assert lmm.prompt_pieces(QUESTION) == templated
