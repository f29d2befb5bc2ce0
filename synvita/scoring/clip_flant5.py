"""CLIP-FlanT5, the VQAScore model of Lin et al. (2024), on transformers' T5 and CLIP classes.

The published checkpoints (`zhiqiulin/clip-flant5-xl`, `zhiqiulin/clip-flant5-xxl`) are a FlanT5
`T5ForConditionalGeneration` with two more parts:
- `vision_tower.vision_tower.vision_model`: a CLIP ViT-L/14-336 (`CLIPVisionModel`); an image is its
  penultimate layer's 576 patch features (the CLS position dropped);
- `mm_projector`: a two-layer GELU MLP (`mm_projector.0`, `mm_projector.2`) from CLIP's width into
  FlanT5's `d_model`.
The encoder reads the prompt's token embeddings with the projected patches in place of the prompt's
one image placeholder; the decoder scores the answer. The module names here are the published ones,
so `from_pretrained` reads the released weights as they are (see `load_model`). Images are padded
to a square of CLIP's mean colour before CLIP's resize and crop, and the prompt is the reference's
chat prompt (`CLIPFlanT5Member.prompt`).

The score is the reference's: the likelihood the decoder gives the answer "Yes" as the FlanT5
tokenizer encodes it, "▁Yes" then "</s>", as exp of the mean log-probability of those two tokens
(= sqrt(P(▁Yes) * P(</s> | ▁Yes))). The suite's other members read P(Yes) instead: the summed
first-token probability of the spellings of Yes.
"""

from __future__ import annotations

import pickle
import re

import numpy as np
import torch
from torch import nn
from transformers import CLIPVisionModel, T5Config, T5ForConditionalGeneration
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig

from synvita.scoring.members import MemberError
from synvita.text.prompts import VQA_QUESTION, clip_flant5_prompt

# The reference's chat prompt ("t5_chat") around the question, and its answer.
IMAGE_PLACEHOLDER = "<image>"
ANSWER = "Yes"
# Every FlanT5 size shares one SentencePiece vocabulary; the reference reads it from here.
FLAN_T5_TOKENIZER = "google/flan-t5-xxl"


class CLIPFlanT5Config(T5Config):
    """A FlanT5 config plus the published `mm_*` fields; `vision_config` defaults to CLIP ViT-L/14-336
    (the published config.json names the tower, `mm_vision_tower`, but not its shape)."""

    model_type = "clip_t5"  # as in the published config.json
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model",
            init_kwargs=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                             image_size=336, patch_size=14, projection_dim=768),
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    mm_vision_tower: str | None = "openai/clip-vit-large-patch14-336"
    mm_hidden_size: int = 1024
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    # the reference's placeholder id in input_ids (never a vocabulary entry)
    image_token_index: int = -200


class CLIPVisionTower(nn.Module):
    """CLIP's vision model at `vision_tower.vision_model`, where the published weights keep it, and the
    hidden layer and positions the projector reads."""

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__()
        if config.mm_vision_select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"mm_vision_select_feature must be 'patch' or 'cls_patch', "
                             f"got {config.mm_vision_select_feature!r}")
        # transformers 5's CLIPVisionModel has no `vision_model` level of its own; the ModuleDict puts
        # the published one back, so the names in memory are the names on disk.
        self.vision_tower = nn.ModuleDict({"vision_model": CLIPVisionModel(config.vision_config)})
        self.select_layer = config.mm_vision_select_layer
        self.drop_cls = config.mm_vision_select_feature == "patch"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        clip = self.vision_tower["vision_model"]
        states = clip(pixel_values, output_hidden_states=True).hidden_states[self.select_layer]
        return states[:, 1:] if self.drop_cls else states


def build_projector(config: CLIPFlanT5Config) -> nn.Sequential:
    """`mlp<N>x_gelu`: N linear layers with GELU between them (the published models use N = 2)."""
    match = re.fullmatch(r"mlp(\d+)x_gelu", config.mm_projector_type)
    if not match:
        raise ValueError(f"mm_projector_type {config.mm_projector_type!r} is not mlp<N>x_gelu")
    layers = [nn.Linear(config.mm_hidden_size, config.d_model)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(config.d_model, config.d_model)]
    return nn.Sequential(*layers)


class CLIPFlanT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = CLIPFlanT5Config
    # FlanT5 has its own output head: only the encoder's and decoder's input embeddings are `shared`.
    _tied_weights_keys = {"encoder.embed_tokens.weight": "shared.weight",
                          "decoder.embed_tokens.weight": "shared.weight"}
    # Published .bin shards also hold the reference's top-level alias of `shared` and, when saved by
    # older transformers, CLIP's position ids (a non-persistent buffer now).
    _keys_to_ignore_on_load_unexpected = [*T5ForConditionalGeneration._keys_to_ignore_on_load_unexpected,
                                          r"^embed_tokens\.weight$", r"embeddings\.position_ids$"]

    def __init__(self, config: CLIPFlanT5Config):
        super().__init__(config)
        if config.mm_hidden_size != config.vision_config.hidden_size:
            raise ValueError(f"mm_hidden_size {config.mm_hidden_size} differs from the vision tower's "
                             f"hidden_size {config.vision_config.hidden_size}")
        self.vision_tower = CLIPVisionTower(config)
        self.mm_projector = build_projector(config)
        self.post_init()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(images, patches, d_model): the projected patch features the encoder reads."""
        return self.mm_projector(self.vision_tower(pixel_values.to(self.dtype)))

    def merge_image_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                             image_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder input embeddings and mask: each row's tokens with its one `image_token_index`
        replaced by that row's image features (right for either padding side)."""
        is_image = input_ids == self.config.image_token_index
        if not bool((is_image.sum(1) == 1).all()):
            raise ValueError(f"every prompt needs exactly one image placeholder ({self.config.image_token_index})")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        length, patches = input_ids.shape[1], image_features.shape[1]
        start = is_image.int().argmax(1, keepdim=True)
        pos = torch.arange(length - 1 + patches, device=input_ids.device).unsqueeze(0)
        in_image = (pos >= start) & (pos < start + patches)
        # where each output position reads from: its token before the image, its patch inside, the
        # token `patches - 1` places back after it
        token_at = torch.where(pos < start, pos, pos - patches + 1).clamp(0, length - 1)
        patch_at = (pos - start).clamp(0, patches - 1)
        tokens = self.get_input_embeddings()(input_ids.masked_fill(is_image, self.config.pad_token_id))
        width = tokens.shape[-1]
        embeds = torch.where(in_image.unsqueeze(-1),
                             image_features.to(tokens.dtype).gather(1, patch_at.unsqueeze(-1).expand(-1, -1, width)),
                             tokens.gather(1, token_at.unsqueeze(-1).expand(-1, -1, width)))
        mask = torch.where(in_image, torch.ones_like(token_at), attention_mask.gather(1, token_at))
        return embeds, mask

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, image_features=None,
                inputs_embeds=None, **kwargs):
        """T5's forward; with `pixel_values` (or precomputed `image_features`), `input_ids` hold one
        image placeholder per row. Scoring only: `generate` is not wired to images."""
        if inputs_embeds is None and (pixel_values is not None or image_features is not None):
            if image_features is None:
                image_features = self.get_image_features(pixel_values)
            inputs_embeds, attention_mask = self.merge_image_features(input_ids, attention_mask, image_features)
            input_ids = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               **kwargs)


def _has_file(model: str, filename: str) -> bool:
    from transformers.utils import cached_file

    return cached_file(model, filename, _raise_exceptions_for_missing_entries=False) is not None


def load_model(model: str, dtype: torch.dtype = torch.float32) -> CLIPFlanT5ForConditionalGeneration:
    """The model from a folder or hub id in the published layout. Pickled `.bin` shards are read with
    `weights_only=True` (tensors only, no code). When the shards hold no vision tower, its weights
    come from the CLIP checkpoint the config names (`mm_vision_tower`), as in the reference."""
    try:
        net, info = CLIPFlanT5ForConditionalGeneration.from_pretrained(
            model, dtype=dtype, weights_only=True, output_loading_info=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        raise MemberError(f"CLIP-FlanT5 {model}: a pickled .bin shard holds objects other than tensors "
                          f"({found.group(1) if found else err}); shards are read with weights_only=True only, "
                          "so it is not loaded") from None
    except (OSError, ValueError, RuntimeError) as err:  # missing files, shape mismatches: one clear message
        raise MemberError(f"CLIP-FlanT5 {model}: cannot load the weights: {err}") from err
    tower = [k for k in info["missing_keys"] if k.startswith("vision_tower.")]
    other = sorted(set(info["missing_keys"]) - set(tower))
    if other:
        raise MemberError(f"CLIP-FlanT5 {model}: the checkpoint lacks {len(other)} tensors, e.g. {other[:3]}")
    if tower:
        source = net.config.mm_vision_tower
        if not source:
            raise MemberError(f"CLIP-FlanT5 {model}: no vision tower weights, and no mm_vision_tower to take them from")
        clip = CLIPVisionModel.from_pretrained(source, dtype=dtype, weights_only=True)
        net.vision_tower.vision_tower["vision_model"].load_state_dict(clip.state_dict())
    return net.eval()


class CLIPFlanT5Member:
    """Scores frames x captions: each frame through the vision tower once, then every (frame,
    caption) pair through FlanT5, `batch_size` pairs a pass."""

    def __init__(self, name: str, model: CLIPFlanT5ForConditionalGeneration, tokenizer, image_processor,
                 template: str = VQA_QUESTION, batch_size: int = 8):
        if "{text}" not in template:
            raise MemberError(f"member {name!r}: question template {template!r} has no {{text}} slot")
        self.name, self.model, self.tokenizer, self.image_processor = name, model, tokenizer, image_processor
        self.template, self.batch_size = template, batch_size
        self.answer_ids = tokenizer(ANSWER).input_ids  # "▁Yes", "</s>": the reference's label

    def prompt(self, text: str) -> str:
        return clip_flant5_prompt(self.template.format(text=text), IMAGE_PLACEHOLDER)

    def encode(self, text: str) -> list[int]:
        """The prompt's ids: the text before and after the image each tokenized with its own closing
        </s> (as the reference tokenizes them), the image placeholder between."""
        if IMAGE_PLACEHOLDER in text:
            raise MemberError(f"member {self.name!r}: caption {text!r} holds the image placeholder {IMAGE_PLACEHOLDER}")
        before, after = self.prompt(text).split(IMAGE_PLACEHOLDER)
        return [*self.tokenizer(before).input_ids, self.model.config.image_token_index,
                *self.tokenizer(after).input_ids]

    @torch.no_grad()
    def p_yes(self, frames: list[np.ndarray], texts: list[str]) -> torch.Tensor:
        """The reference's score of every frame x caption, shape (len(frames), len(texts))."""
        device = self.model.device
        pixels = self.image_processor(images=list(frames), return_tensors="pt")["pixel_values"].to(device)
        features = self.model.get_image_features(pixels)
        prompts = [self.encode(t) for t in texts]
        answer = torch.tensor([self.answer_ids], device=device)
        decoder_ids = self.model.prepare_decoder_input_ids_from_labels(answer)
        pad = self.tokenizer.pad_token_id
        pairs = [(f, t) for f in range(len(frames)) for t in range(len(texts))]
        out = torch.empty(len(pairs))
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            rows = [prompts[t] for _, t in chunk]
            width = max(map(len, rows))
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            logits = self.model(input_ids=ids, attention_mask=mask, image_features=features[[f for f, _ in chunk]],
                                decoder_input_ids=decoder_ids.expand(len(chunk), -1)).logits
            logp = logits.float().log_softmax(-1).gather(-1, answer.expand(len(chunk), -1).unsqueeze(-1))
            out[start:start + len(chunk)] = logp.squeeze(-1).mean(-1).exp().cpu()
        return out.view(len(frames), len(texts))


def load(name: str, model: str, *, template: str = VQA_QUESTION, batch_size: int = 8,
         device: str | torch.device = "cpu", dtype: str = "float32", processor_kwargs: dict | None = None,
         **_ignored) -> CLIPFlanT5Member:
    """The member kind's `load`. The tokenizer and image processor come from the model's folder when it
    has them, else from FlanT5 and from the CLIP checkpoint the config names. Images are always padded
    to a square of CLIP's mean colour before CLIP's resize and crop (LLaVA's `do_pad`)."""
    from transformers import LlavaImageProcessorPil, T5Tokenizer

    net = load_model(model, getattr(torch, dtype))
    tokenizer = T5Tokenizer.from_pretrained(model if _has_file(model, "tokenizer_config.json") else FLAN_T5_TOKENIZER)
    # As the reference does: the output vocabulary is the tokenizer's (FlanT5 pads its 32100 to 32128).
    if net.config.vocab_size != len(tokenizer):
        net.resize_token_embeddings(len(tokenizer))
    images = model if _has_file(model, "preprocessor_config.json") else net.config.mm_vision_tower
    image_processor = LlavaImageProcessorPil.from_pretrained(images, **{**(processor_kwargs or {}), "do_pad": True})
    return CLIPFlanT5Member(name, net.to(device), tokenizer, image_processor, template=template, batch_size=batch_size)
