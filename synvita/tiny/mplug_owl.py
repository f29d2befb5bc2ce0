"""The tiny random mPLUG-Owl video for tests (`synvita tiny --kind mplug-owl-video`)."""

from __future__ import annotations

from synvita.models.mplug_owl.configuration import MplugOwlVideoConfig
from synvita.models.mplug_owl.processing import VIDEO_TOKEN, MplugOwlVideoProcessor, MplugOwlVideoVideoProcessor

TINY_QUERIES = 8


def tiny_parts(tok, text: dict, dims: dict) -> tuple[MplugOwlVideoConfig, MplugOwlVideoProcessor]:
    """Config and processor around the LLaMA-pipeline tokenizer `tok` and the LLM config `text`.

    As in the converted 7B checkpoint, the video placeholder is a token added after the vocabulary,
    so its id is one past the LLM's embedding table.
    """
    tok.add_tokens([VIDEO_TOKEN], special_tokens=True)
    vh, layers, img = dims["vision_hidden"], dims["vision_layers"], dims["image"]
    config = MplugOwlVideoConfig(
        vision_config=dict(hidden_size=vh, intermediate_size=2 * vh, num_hidden_layers=layers, num_attention_heads=4,
                           image_size=img, patch_size=14, initializer_range=text["initializer_range"]),
        visual_abstractor_config=dict(hidden_size=vh, num_hidden_layers=layers, num_attention_heads=4,
                                      intermediate_size=2 * vh, encoder_hidden_size=vh,
                                      initializer_range=text["initializer_range"]),
        text_config=text, num_query_tokens=TINY_QUERIES, video_token_id=tok.convert_tokens_to_ids(VIDEO_TOKEN),
        initializer_range=text["initializer_range"])
    processor = MplugOwlVideoProcessor(
        video_processor=MplugOwlVideoVideoProcessor(size={"height": img, "width": img}), tokenizer=tok,
        num_video_tokens=config.num_video_tokens)
    return config, processor
