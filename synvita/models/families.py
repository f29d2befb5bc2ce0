"""The video LMM families: how each one loads, prompts, splits into modules, and answers Yes/No.

A family is one `FAMILIES.register(...)` entry; the scorer, training and evaluation code only read
these fields, so adding a family touches nothing else. A checkpoint's family is found from its
`config.model_type`, so a hub id and a local folder load the same way.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from synvita.data.video import FrameSampler
from synvita.errors import SynvitaError
from synvita.registry import Registry
from synvita.utils import atomic_folder

# Where LoRA goes inside each decoder layer of the LLM. The authors' code (and VideoCon's) adapts
# every linear layer of the LLM; the thesis text says the attention projections.
LORA_PRESETS = {
    "all_linear": r"(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))",
    "attention": r"self_attn\.(q_proj|k_proj|v_proj|o_proj)",
}
ANSWER_WORDS = ("Yes", "No")

log = logging.getLogger(__name__)


class FamilyError(SynvitaError):
    """A checkpoint that no family accepts, or whose tokenizer/modules break a family's assumptions."""


@dataclass(frozen=True)
class ModelFamily:
    name: str
    model_types: tuple[str, ...]  # config.model_type values this family loads
    vision_modules: tuple[str, ...]  # frozen vision encoder (dotted paths in the loaded model)
    projector_modules: tuple[str, ...]  # frozen vision-to-LLM projector
    llm_module: str = "model.language_model"
    # The module with `get_video_features` (and `get_rope_index` for M-RoPE); "" is the model itself.
    multimodal_module: str = "model"
    # Multimodal RoPE: positions come from the model's own `get_rope_index` (Qwen2-VL style).
    mrope: bool = False
    # Per-frame pixel cap for videos. A checkpoint without a video preprocessor config hands its
    # video processor the image `max_pixels` (full resolution: ~4,800 tokens for 8 frames of 720p).
    video_max_pixels: int | None = None
    # Used only when a checkpoint's processor carries no chat template; `{video}` is the
    # processor's video placeholder and `{question}` the question.
    fallback_prompt: str = "USER: {video}\n{question} ASSISTANT:"
    hub_examples: tuple[str, ...] = field(default=())
    # Published checkpoints in another layout (their config.model_type) and "module:function(source_dir,
    # out_dir)" converting one into a folder this family loads (`converted_checkpoint`).
    converts_from: tuple[str, ...] = ()
    converter: str | None = None
    # The frames the checkpoint was trained on: what `synvita entail` and `evaluate` sample unless told.
    frames: FrameSampler = FrameSampler("uniform", 8)

    def frozen_modules(self) -> tuple[str, ...]:
        return self.vision_modules + self.projector_modules

    def lora_target_regex(self, targets: str) -> str:
        """PEFT's `target_modules` (full-matched against module names) for a preset of LORA_PRESETS,
        inside the LLM's decoder layers; any other value is taken as the regex itself."""
        if targets not in LORA_PRESETS:
            return targets
        return re.escape(self.llm_module) + r"\.layers\.\d+\." + LORA_PRESETS[targets]


FAMILIES: Registry[ModelFamily] = Registry("video LMM family", required=("model_types", "vision_modules"))

FAMILIES.register("video-llava", ModelFamily(
    name="video-llava", model_types=("video_llava",),
    vision_modules=("model.video_tower", "model.image_tower"),
    projector_modules=("model.multi_modal_projector",),
    hub_examples=("LanguageBind/Video-LLaVA-7B-hf",),
))
FAMILIES.register("llava-next-video", ModelFamily(
    name="llava-next-video", model_types=("llava_next_video",),
    vision_modules=("model.vision_tower",),
    projector_modules=("model.multi_modal_projector", "model.vision_resampler"),
    hub_examples=("llava-hf/LLaVA-NeXT-Video-7B-hf",),
))
FAMILIES.register("llava-onevision", ModelFamily(
    name="llava-onevision", model_types=("llava_onevision",),
    vision_modules=("model.vision_tower",),
    projector_modules=("model.multi_modal_projector",),
    # LLaVA-OneVision's Qwen2 conversation (LLaVA-NeXT's qwen_1_5): a system turn, newline-separated turns.
    fallback_prompt=("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}\n"
                     "{question}<|im_end|>\n<|im_start|>assistant\n"),
    hub_examples=("llava-hf/llava-onevision-qwen2-0.5b-ov-hf",),
))
# The reference video bound per frame (qwen-vl-utils' VIDEO_MAX_PIXELS, transformers' Qwen2VLVideoProcessor).
QWEN_VIDEO_MAX_PIXELS = 768 * 28 * 28
for _name, _type, _hub in (("qwen2-vl", "qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct"),
                           ("qwen2.5-vl", "qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct")):
    FAMILIES.register(_name, ModelFamily(
        name=_name, model_types=(_type,),
        vision_modules=("model.visual.patch_embed", "model.visual.blocks"),
        projector_modules=("model.visual.merger",),
        mrope=True,
        video_max_pixels=QWEN_VIDEO_MAX_PIXELS,
        # Qwen's template adds its default system turn when the conversation has none.
        fallback_prompt=("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                         "<|vision_start|>{video}<|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"),
        hub_examples=(_hub,),
    ))
# Written here on current transformers (synvita.models.mplug_owl) under the checkpoint's own module
# names. The published folder (remote code, pickled weights) is converted once on first load.
FAMILIES.register("mplug-owl-video", ModelFamily(
    name="mplug-owl-video", model_types=("mplug_owl_video",),
    vision_modules=("vision_model",),
    projector_modules=("abstractor",),
    llm_module="language_model.model",
    multimodal_module="",
    hub_examples=("MAGAer13/mplug-owl-llama-7b-video",),
    converts_from=("mplug-owl",),
    converter="synvita.models.mplug_owl.convert:convert_checkpoint",
    frames=FrameSampler("segments", 32),  # the thesis's 32, picked as the authors' code picks them
))


def family_for_model_type(model_type: str) -> ModelFamily:
    for name in FAMILIES:
        family = FAMILIES.get(name)
        if model_type in family.model_types:
            return family
    known = ", ".join(t for n in FAMILIES for t in FAMILIES.get(n).model_types)
    raise FamilyError(f"no video LMM family handles model_type {model_type!r}; supported: {known}. "
                      "Add one with synvita.models.families.FAMILIES.register(...)")


def checkpoint_model_type(name_or_path: str) -> str | None:
    """`model_type` in the config.json of a hub id or folder (read as JSON: no class needs to know it)."""
    from transformers import PreTrainedConfig

    return PreTrainedConfig.get_config_dict(str(name_or_path))[0].get("model_type")


def family_for_checkpoint(name_or_path: str) -> ModelFamily:
    """The family of a checkpoint, also of one in a layout a family converts on load."""
    model_type = checkpoint_model_type(name_or_path)
    for name in FAMILIES:
        if model_type in FAMILIES.get(name).converts_from:
            return FAMILIES.get(name)
    return family_for_model_type(model_type)


def trained_sampler(name_or_path: str, kind: str | None = None, num_frames: int | None = None,
                    fps: float | None = None) -> FrameSampler:
    """The sampler `kind` with `num_frames` (or `fps`), each defaulting to the frames the checkpoint's
    family was trained on: what `synvita entail` and `synvita evaluate` sample unless told."""
    trained = family_for_checkpoint(name_or_path).frames
    kind = kind or trained.kind
    if kind == "fps":
        return FrameSampler("fps", fps=fps)
    return FrameSampler(kind, num_frames=num_frames or trained.num_frames)


# ---- checkpoints a family converts on load (`synvita convert` runs this beforehand) ----

def _family_converting(model_type: str | None) -> ModelFamily | None:
    return next((FAMILIES.get(n) for n in FAMILIES if model_type in FAMILIES.get(n).converts_from), None)


def convert_checkpoint(source: str, out: str | Path) -> Path:
    """Convert the checkpoint `source` (folder or hub id) into `out`; complete or not there at all."""
    model_type = checkpoint_model_type(source)
    family = _family_converting(model_type)
    if family is None:
        raise FamilyError(f"{source}: no family converts checkpoints of model_type {model_type!r}")
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["*.json", "*.model", "*.bin", "*.safetensors"]))
    module, function = family.converter.split(":")
    # Per process, so that processes converting at once (a multi-GPU launch) do not write into each other.
    with atomic_folder(out) as partial:
        getattr(importlib.import_module(module), function)(folder, partial)
    return Path(out)


def cache_path(name_or_path: str) -> Path:
    """Where `load_video_lmm` keeps the converted copy of `name_or_path`."""
    cache = Path(os.environ.get("SYNVITA_CACHE", "~/.cache/synvita")).expanduser() / "converted"
    source = str(Path(name_or_path).resolve()) if Path(name_or_path).is_dir() else name_or_path
    return cache / re.sub(r"[^\w.-]+", "--", source).strip("-")


def converted_checkpoint(name_or_path: str) -> str:
    """`name_or_path`, or for a checkpoint a family converts, its converted copy (made on first use)."""
    if _family_converting(checkpoint_model_type(name_or_path)) is None:
        return name_or_path
    out = cache_path(name_or_path)
    if not (out / "config.json").is_file():
        log.warning("%s needs a one-time conversion (pickled weights to safetensors, our config and processor) "
                    "into %s", name_or_path, out)
        convert_checkpoint(name_or_path, out)
    return str(out)


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """Ids of the single-token spellings of `word` (as is, lower case, each with a leading space).

    Tokenizers differ in whether the answer after "ASSISTANT:" is "Yes" or "ĠYes"/"▁Yes"; summing
    over the variants that are single tokens makes the readout independent of that choice. A
    spelling the tokenizer can only encode as its unknown token is not the word.
    """
    ids = []
    for variant in (word, " " + word, word.lower(), " " + word.lower()):
        encoded = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1 and encoded[0] not in ids and encoded[0] != tokenizer.unk_token_id:
            ids.append(encoded[0])
    if not ids:
        pieces = tokenizer.tokenize(word)
        raise FamilyError(f"the tokenizer has no single token for {word!r} (it splits it into {pieces}); "
                          "the Yes/No readout needs one")
    return ids


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The Yes ids and No ids every Yes/No readout sums over (video LMMs and VQA members alike)."""
    yes_ids, no_ids = (answer_token_ids(tokenizer, w) for w in ANSWER_WORDS)
    if set(yes_ids) & set(no_ids):
        raise FamilyError(f"Yes and No share token ids {set(yes_ids) & set(no_ids)}")
    return yes_ids, no_ids


@dataclass
class VideoLMM:
    model: torch.nn.Module
    processor: object
    family: ModelFamily
    yes_ids: list[int]
    no_ids: list[int]
    source: str

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def video_token(self) -> str:
        return self.processor.video_token

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.video_token)

    def video_inputs(self, videos: Sequence) -> dict:
        """Processor keywords for `videos` (frame arrays or `Clip`s): with every clip's rate when all
        have one, so the processor neither resamples them nor assumes 24 fps."""
        frames = [getattr(v, "frames", v) for v in videos]
        rates = [getattr(v, "fps", None) for v in videos]
        if None in rates:
            return {"videos": frames}
        metadata = [{"total_num_frames": len(f), "fps": r, "frames_indices": list(range(len(f)))}
                    for f, r in zip(frames, rates)]
        return {"videos": frames, "video_metadata": metadata, "do_sample_frames": False}

    @property
    def hf_model(self) -> torch.nn.Module:
        """The transformers model, also after `model` was wrapped in a PEFT model."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @property
    def multimodal_model(self) -> torch.nn.Module:
        return self.hf_model.get_submodule(self.family.multimodal_module)

    @property
    def language_model(self) -> torch.nn.Module:
        return self.hf_model.get_submodule(self.family.llm_module)

    @property
    def device(self) -> torch.device:
        return self.hf_model.get_output_embeddings().weight.device

    def prompt_pieces(self, question: str, placeholder: str = "{text}") -> tuple[str, str]:
        """The family's chat prompt for a video and `question`, split around `placeholder`.

        Returns (text before the caption, text after it): the part before is the same for every
        caption of a video, which is what lets the scorer share it.
        """
        if question.count(placeholder) != 1:
            raise ValueError(f"the question template must contain {placeholder!r} exactly once: {question!r}")
        marker = "\u2063SYNVITA-CAPTION\u2063"
        asked = question.replace(placeholder, marker)
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": asked}]}]
            prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = self.family.fallback_prompt.format(video=self.video_token, question=asked)
        if prompt.count(marker) != 1 or prompt.count(self.video_token) != 1:
            raise FamilyError(f"{self.source}: the chat template must place the question and one "
                              f"{self.video_token!r} placeholder; it gave {prompt!r}")
        before, after = prompt.split(marker)
        if self.video_token not in before:
            raise FamilyError(f"{self.source}: the video must come before the question in the prompt")
        return before, after


def quantization_config(family: ModelFamily, quantization: str | None, dtype: torch.dtype):
    """bitsandbytes settings that quantise the LLM only: the frozen vision side stays in `dtype`."""
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    # Dotted paths match from the module root (transformers' should_convert_module).
    skip = [*family.frozen_modules(), "lm_head"]
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=skip)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise ValueError(f"quantization must be None, '4bit' or '8bit', not {quantization!r}")


def cap_video_pixels(video_processor, max_pixels: int) -> None:
    """Bound the pixels of each video frame (M-RoPE processors' `size` is in pixels), and the whole
    clip's as the reference implementation does (`cap_pixels_per_frame`)."""
    from transformers.image_utils import SizeDict

    size = video_processor.size
    longest = min(size["longest_edge"], max_pixels)
    video_processor.size = SizeDict(shortest_edge=min(size["shortest_edge"], longest), longest_edge=longest)
    video_processor.cap_pixels_per_frame = True


def load_processor_side(name_or_path: str, *, trust_remote_code: bool = False, video_max_pixels: int | None = None):
    """(folder to load from, config, family, processor, Yes ids, No ids) of a checkpoint, without its
    weights; the folder differs from `name_or_path` for a checkpoint that needs converting first.

    `video_max_pixels` bounds each video frame for the families that size frames in pixels
    (default: the family's reference cap).
    """
    from transformers import AutoConfig, AutoProcessor

    import synvita.models.mplug_owl  # noqa: F401  (registers the mPLUG-Owl classes with the Auto classes)
    name_or_path = converted_checkpoint(str(name_or_path))
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    family = family_for_model_type(config.model_type)
    processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if family.video_max_pixels is not None:
        cap_video_pixels(processor.video_processor, video_max_pixels or family.video_max_pixels)
    tok = processor.tokenizer
    try:
        yes_ids, no_ids = yes_no_token_ids(tok)
    except FamilyError as err:
        raise FamilyError(f"{name_or_path}: {err}") from None
    if tok.convert_tokens_to_ids(processor.video_token) in (None, tok.unk_token_id):
        raise FamilyError(f"{name_or_path}: the tokenizer has no video token {processor.video_token!r}")
    return name_or_path, config, family, processor, yes_ids, no_ids


def load_video_lmm(name_or_path: str, *, dtype: str | torch.dtype = "float32", device: str | None = None,
                   quantization: str | None = None, trust_remote_code: bool = False,
                   video_max_pixels: int | None = None) -> VideoLMM:
    """Load a video LMM (hub id or local folder) with its processor, family and Yes/No ids, in eval mode
    (`video_max_pixels`: see `load_processor_side`)."""
    from transformers import AutoModelForImageTextToText

    name_or_path, _, family, processor, yes_ids, no_ids = load_processor_side(
        name_or_path, trust_remote_code=trust_remote_code, video_max_pixels=video_max_pixels)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    kwargs = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(family, quantization, torch_dtype)
    if device is not None:
        kwargs["device_map"] = device if device == "auto" else {"": device}
    model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs).eval()

    names = {name for name, _ in model.named_modules()}
    missing = [m for m in (*family.frozen_modules(), family.llm_module) if m not in names]
    if missing:
        raise FamilyError(f"{name_or_path}: family {family.name} expects modules {missing}, which the "
                          f"{type(model).__name__} does not have; update the family's module table")
    return VideoLMM(model=model, processor=processor, family=family, yes_ids=yes_ids, no_ids=no_ids,
                    source=name_or_path)
