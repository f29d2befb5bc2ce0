"""Configs of mPLUG-Owl video (`MAGAer13/mplug-owl-llama-7b-video`), under our own model_type.

The fields and defaults are the 7B checkpoint's: a ViT-L/14 at 224 px with a temporal adapter in
every layer, a 6-layer visual abstractor with 64 learned queries (plus 64 temporal queries), and a
LLaMA-7B language model.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig

MODEL_TYPE = "mplug_owl_video"


class MplugOwlVideoVisionConfig(PreTrainedConfig):
    model_type = "mplug_owl_video_vision"
    base_config_key = "vision_config"

    def __init__(self, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 num_channels=3, image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-6,
                 attention_dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_channels, self.image_size, self.patch_size = num_channels, image_size, patch_size
        self.hidden_act, self.layer_norm_eps = hidden_act, layer_norm_eps
        self.attention_dropout, self.initializer_range = attention_dropout, initializer_range


class MplugOwlVideoAbstractorConfig(PreTrainedConfig):
    model_type = "mplug_owl_video_abstractor"
    base_config_key = "visual_abstractor_config"

    def __init__(self, hidden_size=1024, num_hidden_layers=6, num_attention_heads=16, intermediate_size=4096,
                 attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6, encoder_hidden_size=1024,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.attention_probs_dropout_prob, self.layer_norm_eps = attention_probs_dropout_prob, layer_norm_eps
        self.encoder_hidden_size, self.initializer_range = encoder_hidden_size, initializer_range

    @property
    def mlp_hidden_size(self) -> int:
        """The SwiGLU width: 2/3 of `intermediate_size` rounded up to 256 (the checkpoint keeps 2816 as is)."""
        if self.intermediate_size == 2816:
            return 2816
        return 256 * -(-int(2 * self.intermediate_size / 3) // 256)


class MplugOwlVideoConfig(PreTrainedConfig):
    model_type = MODEL_TYPE
    sub_configs = {"vision_config": MplugOwlVideoVisionConfig,
                   "visual_abstractor_config": MplugOwlVideoAbstractorConfig, "text_config": AutoConfig}

    def __init__(self, vision_config=None, visual_abstractor_config=None, text_config=None, num_query_tokens=64,
                 video_token_id=32000, initializer_range=0.02, **kwargs):
        if isinstance(vision_config, dict) or vision_config is None:
            vision_config = MplugOwlVideoVisionConfig(**(vision_config or {}))
        if isinstance(visual_abstractor_config, dict) or visual_abstractor_config is None:
            visual_abstractor_config = MplugOwlVideoAbstractorConfig(**(visual_abstractor_config or {}))
        if isinstance(text_config, dict) or text_config is None:
            text = {"model_type": "llama", "pad_token_id": 2, **(text_config or {})}
            text_config = AutoConfig.for_model(**text)
        self.vision_config, self.visual_abstractor_config, self.text_config = (
            vision_config, visual_abstractor_config, text_config)
        self.num_query_tokens = num_query_tokens
        # The checkpoint's vocabulary has no video token: the processor's placeholder id lies past
        # the embedding table and is replaced by the video features before the LLM sees it.
        self.video_token_id = video_token_id
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def num_video_tokens(self) -> int:
        """Tokens one video becomes in the LLM: the 64 query outputs and the end-of-video embedding."""
        return self.num_query_tokens + 1
