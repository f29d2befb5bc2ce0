"""Tiny random-weight image VLMs of the VQAScore member families, built locally in seconds.

LLaVA-1.5 (`LlavaForConditionalGeneration`), InstructBLIP with a T5 language model and Qwen2-VL (the
video LMM class, used here on single frames) are each saved with their real processor, so
`AutoModelForImageTextToText` / `AutoProcessor` load them back like hub checkpoints; CLIP-FlanT5
(`synvita.models.clip_flant5`) is saved with its tokenizer and image processor in the published
layout. The text tokenizers and chat templates are the ones `synvita.tiny.lmms` builds for the
video LMMs, and the T5 tokenizer is the one of the tiny T2V pipelines, so every tiny model in the
suite speaks alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

# Shared with the tiny video LMMs on purpose (same tokenizers and templates, one place to change).
from synvita.tiny.lmms import LLAMA_CHAT_TEMPLATE, SIZES, build_lmm, build_tokenizer, text_config


def _vision(size: dict) -> dict:
    return dict(hidden_size=size["vision_hidden"], intermediate_size=2 * size["vision_hidden"],
                num_hidden_layers=size["vision_layers"], num_attention_heads=4, image_size=size["image"],
                patch_size=14)


def _save(model, processor, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_llava(out_dir: Path, seed: int = 0, size: str = "tiny") -> Path:
    import torch
    import transformers as tf

    tok = build_tokenizer("llama")
    text = text_config("video-llava", SIZES[size], len(tok), tok)
    image = SIZES[size]["image"]
    config = tf.LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **_vision(SIZES[size]), "projection_dim": 32},
        text_config=text, image_token_index=tok.convert_tokens_to_ids(tok.image_token), vision_feature_layer=-1,
        image_seq_length=(image // 14) ** 2,
    )
    processor = tf.LlavaProcessor(
        image_processor=tf.CLIPImageProcessor(size={"shortest_edge": image},
                                              crop_size={"height": image, "width": image}),
        tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAMA_CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    return _save(tf.LlavaForConditionalGeneration(config), processor, out_dir)


def build_instructblip(out_dir: Path, seed: int = 0, size: str = "tiny") -> Path:
    import torch
    import transformers as tf

    from synvita.tiny.pipelines import WORDS, local_t5_tokenizer

    num_query = 4
    processor = tf.InstructBlipProcessor(
        image_processor=tf.BlipImageProcessor(size={"height": SIZES[size]["image"], "width": SIZES[size]["image"]}),
        tokenizer=local_t5_tokenizer(),
        qformer_tokenizer=tf.BertTokenizer(
            vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}),
        num_query_tokens=num_query,
    )
    tok = processor.tokenizer  # the processor added its <image> token: size the vocab after it
    t5 = dict(model_type="t5", vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2,
              num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
              tie_word_embeddings=False)
    config = tf.InstructBlipConfig(
        vision_config=_vision(SIZES[size]),
        qformer_config=dict(vocab_size=len(processor.qformer_tokenizer), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=64, max_position_embeddings=64),
        text_config=t5, num_query_tokens=num_query, image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    return _save(tf.InstructBlipForConditionalGeneration(config), processor, out_dir)


def build_clip_flant5(out_dir: Path, seed: int = 0, size: str = "tiny") -> Path:
    import torch
    import transformers as tf

    from synvita.tiny.pipelines import WORDS, local_t5_tokenizer
    from synvita.models.clip_flant5 import CLIPFlanT5Config, CLIPFlanT5ForConditionalGeneration
    from synvita.text.prompts import CLIP_FLANT5_SYSTEM, VQA_QUESTION

    dims = SIZES[size]
    # the chat prompt's words as whole pieces, so the image is not drowned in single letters
    prompt = f"{CLIP_FLANT5_SYSTEM} USER: {VQA_QUESTION} ASSISTANT:"
    tok = local_t5_tokenizer(words=[*WORDS, *re.findall(r"\w+", prompt)])
    config = CLIPFlanT5Config(
        # 28 unused rows past the tokenizer, as FlanT5's 32128 past its 32100 (the member trims them)
        vocab_size=len(tok) + 28, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
        vision_config=_vision(dims), mm_hidden_size=dims["vision_hidden"], mm_vision_tower=None,
    )
    image = dims["image"]
    processor = tf.LlavaImageProcessorPil(size={"shortest_edge": image}, crop_size={"height": image, "width": image},
                                          do_pad=True)
    torch.manual_seed(seed)
    model = CLIPFlanT5ForConditionalGeneration(config)
    # A unit-variance head (T5's) makes every random answer nearly impossible; a smaller one keeps
    # the score in a range where frames and captions visibly move it.
    torch.nn.init.normal_(model.lm_head.weight, std=0.25)
    out_dir = _save(model, processor, out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def build_qwen2_vl_image(out_dir: Path, seed: int = 0, size: str = "tiny") -> Path:
    # The same checkpoint class answers image prompts; only the member's prompt differs.
    return build_lmm("qwen2-vl", Path(out_dir), seed, size)


# builder(out_dir, seed, size): `size` is a key of synvita.tiny.lmms.SIZES
TINY_MEMBERS: dict[str, Callable[..., Path]] = {
    "llava-1.5": build_llava,
    "instructblip": build_instructblip,
    "qwen2-vl-image": build_qwen2_vl_image,
    "clip-flant5": build_clip_flant5,
}
