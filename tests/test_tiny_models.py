"""Tiny video LMMs: each kind round-trips through the Auto classes and gives logits for a video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

from synvita.cli import main as cli_main
from synvita.tiny import build_tiny
from synvita.tiny.lmms import TINY_KINDS

EXPECTED = {
    "video-llava": ("VideoLlavaForConditionalGeneration", "VideoLlavaProcessor"),
    "llava-next-video": ("LlavaNextVideoForConditionalGeneration", "LlavaNextVideoProcessor"),
    "llava-onevision": ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionProcessor"),
    "qwen2-vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "mplug-owl-video": ("MplugOwlVideoForConditionalGeneration", "MplugOwlVideoProcessor"),
}


def _logits(model, processor, video: np.ndarray) -> torch.Tensor:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": 'Is "a dog" shown?'}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], videos=[video], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_auto_round_trip_gives_video_logits(kind, tmp_path):
    path = build_tiny(kind, tmp_path / kind, seed=3)
    model = tf.AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = tf.AutoProcessor.from_pretrained(path)
    assert (type(model).__name__, type(processor).__name__) == EXPECTED[kind]
    assert not model.training

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    logits = _logits(model, processor, video)
    assert logits.shape[0] == 1 and logits.shape[-1] == model.config.text_config.vocab_size
    assert torch.isfinite(logits).all()
    # The pixels reach the LLM: another video changes the last position's logits.
    other = _logits(model, processor, 255 - video)
    assert (logits[0, -1] - other[0, -1]).abs().max() > 1e-4

    # Same seed, same weights; the tokenizer encodes any text and has single Yes/No tokens.
    again = tf.AutoModelForImageTextToText.from_pretrained(build_tiny(kind, tmp_path / "again", seed=3)).eval()
    assert torch.equal(_logits(again, processor, video), logits)
    tok = processor.tokenizer
    assert tok.decode(tok("naïve 東京 ✓ 42", add_special_tokens=False).input_ids) == "naïve 東京 ✓ 42"
    for word in ("Yes", "No", " Yes", " No"):
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word


def test_tiny_cli_builds_and_rejects_unknown_kinds(tmp_path, capsys):
    assert cli_main(["tiny", "--kind", "qwen2-vl", "--out", str(tmp_path / "q"), "--seed", "1"]) == 0
    assert (tmp_path / "q" / "model.safetensors").is_file()
    assert cli_main(["tiny", "--kind", "no-such-model", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "video-llava" in err


def test_tiny_dispatches_to_the_pipeline_and_member_tables(tmp_path, capsys):
    from synvita.tiny import TINY
    from synvita.tiny.members import TINY_MEMBERS
    from synvita.tiny.pipelines import TINY_PIPELINES

    others = set(TINY.names()) - set(TINY_KINDS)
    assert set(TINY_PIPELINES) | set(TINY_MEMBERS) == others and set(TINY_KINDS) <= set(TINY.names())
    assert len(TINY_PIPELINES) + len(TINY_MEMBERS) + len(TINY_KINDS) == len(TINY.names())  # no kind in two tables
    kind = sorted(TINY_PIPELINES)[0]
    assert cli_main(["tiny", "--kind", kind, "--out", str(tmp_path / kind)]) == 0
    assert capsys.readouterr().out.strip().endswith(kind)
    assert (tmp_path / kind / "model_index.json").is_file()


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_tokenizers_use_their_real_checkpoints_pipeline(kind, tmp_path):
    """Llama/Vicuna: SentencePiece-style Metaspace ("first" prepend), byte fallback, <s> added, no </s>;
    Qwen2: NFC + byte-level BPE, nothing added, <|im_end|> ends a turn. Checked on the reloaded files."""
    import json

    processor = tf.AutoProcessor.from_pretrained(build_tiny(kind, tmp_path / kind))
    tok = processor.tokenizer
    spec = json.loads(tok.backend_tokenizer.to_str())
    text = 'USER: a café\n"x"'
    ids = tok(text).input_ids
    if kind == "mplug-owl-video":  # LLaMA-1's legacy scheme: "▁" before every piece, as the authors encoded
        assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"]
        assert spec["pre_tokenizer"] == {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always",
                                         "split": False}
        assert tok.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
        assert ids[0] == tok.bos_token_id and ids[-1] != tok.eos_token_id and tok.pad_token == "</s>"
        assert tok.tokenize(f"{processor.video_token}a dog")[1:3] == ["▁a", "▁dog"]
        assert tok.convert_tokens_to_ids(processor.video_token) == len(tok) - 1
    elif kind in ("video-llava", "llava-next-video"):
        assert type(tok).__name__ == "LlamaTokenizer"
        assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"]
        assert spec["pre_tokenizer"] == {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                                         "split": False}
        assert tok.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
        assert ids[0] == tok.bos_token_id and ids[-1] != tok.eos_token_id
        pieces = tok.convert_ids_to_tokens(ids)
        assert "<0xC3>" in pieces and "<0xA9>" in pieces and "<0x0A>" in pieces  # é and \n: bytes
        # the real scheme: "▁" before the first piece only, so a caption alone differs from in a prompt
        assert tok.tokenize("a dog")[0] == "▁a" and tok.tokenize(f"{processor.video_token}a dog")[1] == "a"
        assert processor.video_token == "<video>" and tok.pad_token == "<pad>"
    else:
        assert type(tok).__name__ == "Qwen2Tokenizer"
        assert spec["model"]["type"] == "BPE" and not spec["model"]["byte_fallback"]
        assert spec["normalizer"]["type"] == "NFC"
        assert [p["type"] for p in spec["pre_tokenizer"]["pretokenizers"]] == ["Split", "ByteLevel"]
        assert tok.bos_token is None and ids == tok(text, add_special_tokens=False).input_ids
        assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
        assert tok.decode(ids) == text and "Ã" in tok.convert_ids_to_tokens(ids)  # é as two byte symbols
        media = ("<|image_pad|>", "<|video_pad|>") if kind.startswith("qwen") else ("<image>", "<video>")
        assert (processor.image_token, processor.video_token) == media
        specials = {"<|im_start|>", "<|im_end|>", *media}
        if kind.startswith("qwen"):
            specials |= {"<|vision_start|>", "<|vision_end|>"}
        assert specials <= set(tok.all_special_tokens) | set(tok.get_added_vocab())
        assert all(len(tok(s, add_special_tokens=False).input_ids) == 1 for s in specials)
