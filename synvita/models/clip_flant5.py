"""CLIP-FlanT5's architecture (Lin et al., 2024) on transformers' T5 and CLIP classes, under the
published checkpoints' module names (`zhiqiulin/clip-flant5-xl`, `-xxl`); the VQA member that
scores with it, and its loader, are `synvita.scoring.clip_flant5`."""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import CLIPVisionModel, T5Config, T5ForConditionalGeneration
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig


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
