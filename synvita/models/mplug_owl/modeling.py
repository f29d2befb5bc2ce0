"""mPLUG-Owl video on current transformers: module names and shapes are the published checkpoint's.

Written from the paper and the authors' code (X-PLUG/mPLUG-Owl, `mplug_owl_video`), read to learn
the architecture. A video of T frames goes through
- a CLIP-style ViT-L/14 whose every layer first adds a temporal adapter (LayerNorm, 1x1x1 down
  projection, depthwise 3x1x1 convolution over time, QuickGELU, 1x1x1 up projection) when T > 1;
- the visual abstractor: 64 learned queries (and, for T > 1, 64 temporal queries) attend to all
  T x 257 patch features; query i's output is `visual_fc(q_i) + temporal_visual_fc(tq_i)`, and a learned
  end-of-video embedding `vit_eos` follows, so a video is always 65 LLM tokens;
- LLaMA-7B (`language_model`, transformers' LlamaForCausalLM), which reads those 65 embeddings at the
  prompt's video placeholder tokens.
Differences from the authors' code that do not change the function: attention runs through
`scaled_dot_product_attention`, and the placeholder id lies past the vocabulary (see the config).
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from synvita.models.mplug_owl.configuration import (
    MplugOwlVideoAbstractorConfig, MplugOwlVideoConfig, MplugOwlVideoVisionConfig,
)


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype, as the checkpoint was trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class VisionEmbeddings(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        d = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embed = nn.Conv2d(config.num_channels, d, config.patch_size, stride=config.patch_size, bias=False)
        self.position_embedding = nn.Parameter(torch.zeros(1, (config.image_size // config.patch_size) ** 2 + 1, d))
        self.pre_layernorm = LayerNormFp32(d, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, 1 + patches, D)."""
        b, t = pixels.shape[:2]
        patches = self.patch_embed(pixels.flatten(0, 1)).flatten(2).transpose(1, 2)
        cls = self.cls_token.to(patches.dtype).expand(patches.shape[0], -1, -1)
        x = torch.cat([cls, patches], dim=1)
        x = x + self.position_embedding[:, :x.shape[1]].to(x.dtype)
        return self.pre_layernorm(x).unflatten(0, (b, t))


class TemporalAdapter(nn.Module):
    """Mixes each patch with the same patch in the neighbouring frames; the class token passes through."""

    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        d, bottleneck = config.hidden_size, config.hidden_size // 2
        self.grid = config.image_size // config.patch_size
        self.ln = LayerNormFp32(d)
        self.down_proj = nn.Conv3d(d, bottleneck, kernel_size=1)
        self.conv = nn.Conv3d(bottleneck, bottleneck, kernel_size=(3, 1, 1), padding=(1, 0, 0), groups=bottleneck)
        self.up_proj = nn.Conv3d(bottleneck, d, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 1 + H*W, D) -> the same shape: the class tokens unchanged, the patches adapted."""
        cls, patches = x[:, :, :1], x[:, :, 1:]
        b, t, n, d = patches.shape
        y = self.ln(patches).reshape(b, t, self.grid, self.grid, d).permute(0, 4, 1, 2, 3)  # (B, D, T, H, W)
        y = self.up_proj(quick_gelu(self.conv(self.down_proj(y))))
        y = y.permute(0, 2, 3, 4, 1).reshape(b, t, n, d)
        return torch.cat([cls, y], dim=2)


class VisionAttention(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.dropout = config.attention_dropout
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # The fused projection is laid out per head as (q, k, v), not as three d-wide blocks.
        q, k, v = self.query_key_value(x).reshape(b, n, self.heads, 3, d // self.heads).permute(3, 0, 2, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.dense(out.transpose(1, 2).reshape(b, n, d))


class VisionMLP(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class VisionEncoderLayer(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        norm = functools.partial(LayerNormFp32, config.hidden_size, eps=config.layer_norm_eps)
        self.temporal = TemporalAdapter(config)
        self.self_attn = VisionAttention(config)
        self.input_layernorm = norm()
        self.mlp = VisionMLP(config)
        self.post_attention_layernorm = norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, N, D) -> (B, T, N, D)."""
        b, t = x.shape[:2]
        if t > 1:
            # As in the checkpoint's code: the adapter returns the class token too, so it is doubled here.
            x = x + self.temporal(x)
        x = x.flatten(0, 1)
        x = x + self.self_attn(self.input_layernorm(x))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x.unflatten(0, (b, t))


class VisionEncoder(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionEncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MplugOwlVideoVisionModel(nn.Module):
    def __init__(self, config: MplugOwlVideoVisionConfig):
        super().__init__()
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoder(config)
        self.post_layernorm = LayerNormFp32(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, 1 + patches, D)."""
        return self.post_layernorm(self.encoder(self.embeddings(pixels)))


class AbstractorMLP(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        d, h = config.hidden_size, config.mlp_hidden_size
        self.w1 = nn.Linear(d, h)
        self.w2 = nn.Linear(h, d)
        self.w3 = nn.Linear(d, h)
        self.ffn_ln = LayerNormFp32(h, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(x)) * self.w3(x)))


class AbstractorAttention(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.value = nn.Linear(config.encoder_hidden_size, config.hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(queries)), self._heads(self.key(context)), self._heads(self.value(context))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).flatten(2)


class AbstractorOutput(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm2 = LayerNormFp32(config.hidden_size)
        self.mlp = AbstractorMLP(config)

    def forward(self, attended: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        x = queries + self.out_proj(attended)
        return x + self.mlp(self.norm2(x))


class AbstractorCrossAttention(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        self.attention = AbstractorAttention(config)
        self.output = AbstractorOutput(config)
        self.norm1 = LayerNormFp32(config.hidden_size)
        self.normk = LayerNormFp32(config.hidden_size)

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        # The queries attend to themselves and to the frames' patches; the residual is the normed query.
        queries = self.norm1(queries)
        context = torch.cat([queries, self.normk(visual)], dim=1)
        return self.output(self.attention(queries, context), queries)


class AbstractorLayer(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        self.crossattention = AbstractorCrossAttention(config)

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.crossattention(queries, visual)


class AbstractorEncoder(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig):
        super().__init__()
        self.layers = nn.ModuleList(AbstractorLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            queries = layer(queries, visual)
        return queries


class MplugOwlVideoAbstractor(nn.Module):
    def __init__(self, config: MplugOwlVideoAbstractorConfig, language_hidden_size: int):
        super().__init__()
        self.encoder = AbstractorEncoder(config)
        self.visual_fc = nn.Linear(config.hidden_size, language_hidden_size)
        self.temporal_visual_fc = nn.Linear(config.hidden_size, language_hidden_size)
        self.vit_eos = nn.Parameter(torch.zeros(1, 1, language_hidden_size))

    def forward(self, queries: torch.Tensor, temporal_queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """queries (B, Q, D), temporal_queries (B, Q, D), visual (B, T, N, D) -> (B, Q + 1, D_llm)."""
        frames, n = visual.shape[1], queries.shape[1]
        if frames > 1:
            queries = torch.cat([queries, temporal_queries], dim=1)
        out = self.encoder(queries, visual.flatten(1, 2))
        tokens = self.visual_fc(out[:, :n])
        if frames > 1:
            tokens = tokens + self.temporal_visual_fc(out[:, n:])
        return torch.cat([tokens, self.vit_eos.to(tokens.dtype).expand(tokens.shape[0], -1, -1)], dim=1)


class MplugOwlVideoPreTrainedModel(PreTrainedModel):
    config_class = MplugOwlVideoConfig
    config: MplugOwlVideoConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["VisionEncoderLayer", "AbstractorLayer", "LlamaDecoderLayer"]
    # The published checkpoint was saved by transformers 4.28, which stored LLaMA's rotary inverse
    # frequencies in every layer; they are recomputed from the config now.
    _keys_to_ignore_on_load_unexpected = [r"rotary_emb\.inv_freq"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            # Unlike the authors' zero init of the temporal up-projection, every layer gets random
            # weights, so a random test model exercises the temporal path.
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, VisionEmbeddings):
            nn.init.trunc_normal_(module.cls_token, std=std)
            nn.init.trunc_normal_(module.position_embedding, std=std)
        elif isinstance(module, MplugOwlVideoAbstractor):
            nn.init.trunc_normal_(module.vit_eos, std=std)
        elif isinstance(module, MplugOwlVideoForConditionalGeneration):
            nn.init.trunc_normal_(module.query_tokens, std=std)
            nn.init.trunc_normal_(module.temporal_query_tokens, std=std)
        else:
            super()._init_weights(module)


class MplugOwlVideoForConditionalGeneration(MplugOwlVideoPreTrainedModel, GenerationMixin):
    """Vision tower, abstractor and LLaMA under the checkpoint's own top-level names."""

    def __init__(self, config: MplugOwlVideoConfig):
        super().__init__(config)
        abstractor = config.visual_abstractor_config
        self.vision_model = MplugOwlVideoVisionModel(config.vision_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, abstractor.hidden_size))
        self.temporal_query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, abstractor.hidden_size))
        self.abstractor = MplugOwlVideoAbstractor(abstractor, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def get_video_features(self, pixel_values_videos: torch.Tensor) -> BaseModelOutputWithPooling:
        """(B, T, C, H, W) frames -> `pooler_output` (B, 65, D_llm), the video's LLM embeddings."""
        dtype = self.vision_model.embeddings.patch_embed.weight.dtype
        visual = self.vision_model(pixel_values_videos.to(dtype))
        b = visual.shape[0]
        tokens = self.abstractor(self.query_tokens.expand(b, -1, -1), self.temporal_query_tokens.expand(b, -1, -1),
                                 visual)
        return BaseModelOutputWithPooling(last_hidden_state=visual, pooler_output=tokens)

    def embed(self, input_ids: torch.Tensor, pixel_values_videos: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with each video's 65 features at its placeholder tokens."""
        placeholder = input_ids == self.config.video_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
        if pixel_values_videos is None:
            if placeholder.any():
                raise ValueError("input_ids hold video placeholder tokens but no pixel_values_videos were given")
            return embeds
        features = self.get_video_features(pixel_values_videos).pooler_output.flatten(0, 1)
        if int(placeholder.sum()) != features.shape[0]:
            raise ValueError(f"the prompt holds {int(placeholder.sum())} video placeholder tokens but the videos "
                             f"give {features.shape[0]} features ({self.config.num_video_tokens} per video)")
        return embeds.masked_scatter(placeholder.unsqueeze(-1), features.to(embeds.dtype))

    def forward(self, input_ids: torch.LongTensor | None = None, pixel_values_videos: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                past_key_values=None, inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, logits_to_keep: int | torch.Tensor = 0, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, pixel_values_videos)
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values, labels=labels,
                                   use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)
