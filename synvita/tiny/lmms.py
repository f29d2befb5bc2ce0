"""Tiny random-weight video LMMs of the real architectures, built in seconds and nothing downloaded.

Each kind is the family's own model class, configured small, with the family's own image/video
processor classes and a small-vocabulary tokenizer trained here on a few sentences but built with
its real checkpoint's pipeline (Llama's Metaspace BPE with byte fallback for the Llama/Vicuna
families, Qwen2's byte-level BPE for the Qwen2 ones), so any text encodes, "Yes"/"No" are single
tokens, and a caption splits from its prompt as it does with the real vocabulary. `save_pretrained` writes a normal folder that
`AutoModelForImageTextToText` / `AutoProcessor` load back.
"""

from __future__ import annotations

from pathlib import Path

TINY_KINDS = ("video-llava", "llava-next-video", "llava-onevision", "qwen2-vl", "qwen2.5-vl", "mplug-owl-video")
# Kinds whose LLM is LLaMA (and whose tokenizer follows LLaMA's).
_LLAMA_KINDS = ("video-llava", "llava-next-video", "mplug-owl-video")

# "tiny" is for tests (2 layers, a handful of video tokens); "small" is the benchmark's
# tiny-but-realistic model (4 layers, >= 512 video tokens for 8 frames).
SIZES = {
    "tiny": dict(layers=2, hidden=64, heads=4, kv_heads=2, vision_hidden=32, vision_layers=2, image=28),
    "small": dict(layers=4, hidden=256, heads=8, kv_heads=4, vision_hidden=64, vision_layers=2, image=112),
    # the toy world's base model (synvita.toyworld.basemodels): sees 4x4 patches, trains on 2 cores
    "toy": dict(layers=3, hidden=128, heads=4, kv_heads=2, vision_hidden=64, vision_layers=2, image=56,
                init=0.02),
}
# The toy world's words (synvita.toyworld), repeated so that BPE makes each a single token: a model
# trained from scratch then sees "diamond", not five letters it must first assemble.
_TOY_WORDS = ("circle circles square squares triangle triangles diamond diamonds red green blue yellow "
              "purple small big one two three There is are also The the a A Two Three moves move left right "
              "up down grows grow shrinks shrink spins spin jumps jump appears appear vanishes vanish above "
              "below of then next before after After First Finally first finally and Describe video")

_CORPUS = """
Yes No yes no Yes. No. YES NO
Does this video entail the description? Please answer yes or no. Does this figure show it?
A person is pouring water into a glass, then the glass is lifted and put down on the table.
Someone pushes a red ball from left to right; the ball rolls and falls off the edge.
Two dogs run across a green field before a man throws a stick, and one dog catches it.
A woman opens the door, walks in, and closes it behind her. The cat jumps onto the sofa.
Moving something up and down, turning the camera left, putting three blue cubes next to a box.
The square moves towards the circle, then away; a triangle appears above it and spins slowly.
USER: ASSISTANT: system user assistant You are a helpful assistant.
0 1 2 3 4 5 6 7 8 9 10 100 first second third before after while during
"""

LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }} {% endif %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<video>\n{% elif c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% else %} {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def _qwen_chat(video: str, image: str) -> str:
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}"
        "{% else %}{% for c in message['content'] %}"
        f"{{% if c['type'] == 'video' %}}{video}{{% elif c['type'] == 'image' %}}{image}"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


# Quotes that merge, as they do in the real vocabularies: a caption opening with a quote then fuses
# with the prompt's opening quote, the case the scorers' token-level split exists for.
_QUOTES = 'He said: "" and: ""a"" or ""the"" then "" "" "'


def _training_texts() -> list[str]:
    # The answer words are repeated so that they become single tokens; newlines are left out, so a
    # Llama tokenizer spells them with its byte tokens as the real one does.
    texts = [_CORPUS] + ["Yes No yes no Yes No", "Yes", "No"] * 50 + [_TOY_WORDS] * 20 + [_QUOTES] * 20
    return [t.replace("\n", " ") for t in texts]


def _trained_bpe(tokenizer, vocab_size: int, specials: list[str], alphabet: list[str]) -> tuple[dict, list]:
    """(vocab, merges) of a BPE trained on the tiny corpus with `tokenizer`'s pre-tokenization."""
    import json

    from tokenizers import trainers

    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet))
    tokenizer.train_from_iterator(_training_texts(), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


LLAVA_MEDIA_TOKENS = {"image_token": "<image>", "video_token": "<video>"}


def build_llama_tokenizer(vocab_size: int = 1000, media_tokens: dict[str, str] = LLAVA_MEDIA_TOKENS):
    """A small-vocabulary tokenizer built with the real Llama / Vicuna pipeline: transformers'
    `LlamaTokenizer` (SentencePiece-style BPE, Metaspace with the non-legacy "first" prepend scheme,
    byte fallback through the 256 `<0xNN>` tokens, `<s>` added in front, no `</s>` at the end), ids
    0-2 `<unk>`, `<s>`, `</s>` then the byte tokens as in Llama-2, and `<pad>` plus the
    `media_tokens` (processor attribute -> token) added as special tokens as the llava-hf
    checkpoints do."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>"]
    trainer_side = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # SentencePiece never merges across a space: train on words; the tokenizer itself does not split.
    trainer_side.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    alphabet = [c for c in string.printable if not c.isspace()] + ["▁"]
    trained, merges = _trained_bpe(trainer_side, vocab_size - 256, specials, alphabet)
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in sorted(trained, key=trained.get):
        vocab.setdefault(piece, len(vocab))
    return LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_bos_token=True, add_eos_token=False,
                          pad_token="<pad>", extra_special_tokens=dict(media_tokens), model_max_length=4096,
                          padding_side="left")


# The special tokens of the Qwen2-VL / Qwen2.5-VL instruct tokenizers.
QWEN2_VL_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                     "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                     "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN2_VL_MEDIA_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}


def build_qwen2_tokenizer(vocab_size: int = 1000, specials: tuple[str, ...] = QWEN2_VL_SPECIALS,
                          media_tokens: dict[str, str] = QWEN2_VL_MEDIA_TOKENS):
    """A small-vocabulary tokenizer built with the real Qwen2 pipeline: transformers' `Qwen2Tokenizer`
    (NFC, the Qwen split regex, byte-level BPE over the 256 byte symbols, no BOS/EOS added),
    `<|im_end|>` as EOS, `<|endoftext|>` as padding, `specials` and `media_tokens` special."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Qwen2Tokenizer

    # Trained with the very normalizer and pre-tokenizer the tokenizer will use.
    pipeline = Qwen2Tokenizer().backend_tokenizer
    trainer_side = Tokenizer(models.BPE())
    trainer_side.normalizer, trainer_side.pre_tokenizer = pipeline.normalizer, pipeline.pre_tokenizer
    vocab, merges = _trained_bpe(trainer_side, vocab_size, ["<|endoftext|>"], pre_tokenizers.ByteLevel.alphabet())
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", extra_special_tokens=dict(media_tokens), model_max_length=4096,
                         padding_side="left")
    tok.add_tokens([t for t in specials if t not in tok.get_vocab()], special_tokens=True)
    return tok


def build_tokenizer(style: str, vocab_size: int = 1000):
    """The tiny tokenizer of a family style: "llama" (Video-LLaVA, LLaVA-NeXT-Video, LLaVA-1.5),
    "llama-legacy" (mPLUG-Owl: LLaMA-1's legacy prepend scheme, no pad or media tokens),
    "qwen" (Qwen2-VL, Qwen2.5-VL) or "chatml" (LLaVA-OneVision: Qwen2 with `<image>` / `<video>`)."""
    if style == "llama":
        return build_llama_tokenizer(vocab_size)
    if style == "llama-legacy":
        from synvita.models.mplug_owl.processing import legacy_llama_tokenizer

        return legacy_llama_tokenizer(build_llama_tokenizer(vocab_size, media_tokens={}))
    if style == "qwen":
        return build_qwen2_tokenizer(vocab_size)
    if style == "chatml":
        return build_qwen2_tokenizer(vocab_size, ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), LLAVA_MEDIA_TOKENS)
    raise ValueError(f"unknown tokenizer style {style!r}; known: llama, llama-legacy, qwen, chatml")


def text_config(kind: str, size: dict, vocab: int, tok) -> dict:
    head_dim = size["hidden"] // size["heads"]
    cfg = dict(
        vocab_size=vocab, hidden_size=size["hidden"], intermediate_size=2 * size["hidden"],
        num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
        num_key_value_heads=size["kv_heads"], max_position_embeddings=4096,
        # Random-weight test models use a wider init than the 0.02 default so that f(V,t) varies
        # visibly between inputs; models trained from scratch (size "toy") keep 0.02.
        initializer_range=size.get("init", 0.2), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=False,
    )
    if kind.startswith("qwen"):
        half = head_dim // 2
        section = [half - 2 * (half // 3), half // 3, half // 3]
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    else:
        cfg["model_type"] = "llama" if kind in _LLAMA_KINDS else "qwen2"
    return cfg


def build_lmm(kind: str, out_dir: Path, seed: int, size: str) -> Path:
    import torch
    import transformers as tf

    dims = SIZES[size]
    style = "llama-legacy" if kind == "mplug-owl-video" else "llama" if kind in _LLAMA_KINDS else (
        "qwen" if kind.startswith("qwen") else "chatml")
    tok = build_tokenizer(style)
    vocab = len(tok)
    text = text_config(kind, dims, vocab, tok)
    img, vh = dims["image"], dims["vision_hidden"]
    clip = dict(hidden_size=vh, intermediate_size=2 * vh, num_hidden_layers=dims["vision_layers"],
                num_attention_heads=4, image_size=img, patch_size=14, projection_dim=vh)
    crop = {"height": img, "width": img}
    # mPLUG-Owl's tokenizer carries no media tokens (its placeholder is added past the vocabulary).
    ids = dict(image_token_index=tok.convert_tokens_to_ids(tok.image_token),
               video_token_index=tok.convert_tokens_to_ids(tok.video_token)) if style != "llama-legacy" else {}

    if kind == "video-llava":
        config = tf.VideoLlavaConfig(vision_config={"model_type": "clip_vision_model", **clip}, text_config=text,
                                     **ids, vision_feature_layer=-1)
        processor = tf.VideoLlavaProcessor(
            image_processor=tf.VideoLlavaImageProcessor(size={"shortest_edge": img}, crop_size=crop),
            video_processor=tf.VideoLlavaVideoProcessor(size={"shortest_edge": img}, crop_size=crop),
            tokenizer=tok, patch_size=14, vision_feature_select_strategy="default", chat_template=LLAMA_CHAT_TEMPLATE)
    elif kind == "llava-next-video":
        config = tf.LlavaNextVideoConfig(vision_config={"model_type": "clip_vision_model", **clip}, text_config=text,
                                         **ids, image_grid_pinpoints=[[img, img]], vision_feature_layer=-1,
                                         image_seq_length=(img // 14) ** 2, video_seq_length=(img // 28) ** 2)
        processor = tf.LlavaNextVideoProcessor(
            video_processor=tf.LlavaNextVideoVideoProcessor(size={"shortest_edge": img}, crop_size=crop),
            image_processor=tf.LlavaNextImageProcessor(size={"shortest_edge": img}, crop_size=crop,
                                                       image_grid_pinpoints=[[img, img]]),
            tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
            num_additional_image_tokens=1, chat_template=LLAMA_CHAT_TEMPLATE)
    elif kind == "llava-onevision":
        siglip = {k: v for k, v in clip.items() if k != "projection_dim"}
        config = tf.LlavaOnevisionConfig(vision_config={"model_type": "siglip_vision_model", **siglip},
                                         text_config=text, **ids, image_grid_pinpoints=[[img, img]])
        processor = tf.LlavaOnevisionProcessor(
            image_processor=tf.LlavaOnevisionImageProcessor(size={"height": img, "width": img},
                                                            image_grid_pinpoints=[[img, img]]),
            video_processor=tf.LlavaOnevisionVideoProcessor(size={"height": img, "width": img}),
            tokenizer=tok, num_image_tokens=(img // 14) ** 2, vision_feature_select_strategy="full",
            chat_template=_qwen_chat("<video>\n", "<image>\n"))
    elif kind in ("qwen2-vl", "qwen2.5-vl"):
        vision = dict(depth=dims["vision_layers"], num_heads=4, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, hidden_size=vh if kind == "qwen2.5-vl" else text["hidden_size"])
        if kind == "qwen2-vl":
            vision.update(embed_dim=vh, mlp_ratio=2)
            config_cls = tf.Qwen2VLConfig
        else:
            # tokens_per_second as in the released Qwen2.5-VL checkpoints (temporal positions per second)
            vision.update(intermediate_size=2 * vh, out_hidden_size=text["hidden_size"], window_size=28, tokens_per_second=2,
                          fullatt_block_indexes=[dims["vision_layers"] - 1])
            config_cls = tf.Qwen2_5_VLConfig
        config = config_cls(vision_config=vision, text_config=text,
                            image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"),
                            video_token_id=tok.convert_tokens_to_ids("<|video_pad|>"),
                            vision_start_token_id=tok.convert_tokens_to_ids("<|vision_start|>"),
                            vision_end_token_id=tok.convert_tokens_to_ids("<|vision_end|>"))
        pixels = {"shortest_edge": img * img, "longest_edge": img * img}
        proc_cls = tf.Qwen2VLProcessor if kind == "qwen2-vl" else tf.Qwen2_5_VLProcessor
        processor = proc_cls(
            image_processor=tf.Qwen2VLImageProcessor(size=pixels),
            video_processor=tf.Qwen2VLVideoProcessor(size=pixels, cap_pixels_per_frame=True),
            tokenizer=tok, chat_template=_qwen_chat("<|vision_start|><|video_pad|><|vision_end|>",
                                                    "<|vision_start|><|image_pad|><|vision_end|>"))
    elif kind == "mplug-owl-video":
        from synvita.tiny.mplug_owl import tiny_parts

        config, processor = tiny_parts(tok, text, dims)
    else:
        raise KeyError(f"unknown tiny video LMM {kind!r}; known: {', '.join(TINY_KINDS)}")

    torch.manual_seed(seed)
    model = tf.AutoModelForImageTextToText.from_config(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
