"""Tiny random-weight text-to-video pipelines (CogVideoX, LTX-Video, Wan) for tests and smoke runs.

Each builder makes the real diffusers pipeline class from tiny component configs, with a T5 text
encoder from a tiny config and a T5 tokenizer built locally from a word list (nothing is downloaded),
and saves it with `save_pretrained`, so `DiffusionPipeline.from_pretrained(dir)` loads it back like a
hub checkpoint. A 16x16, 9-frame clip with 2 steps takes well under a second on a CPU.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Callable

import torch

# Enough words that captions tokenize to whole pieces; anything else falls back to characters.
WORDS = (
    "a an the man woman person people dog cat ball car tree plate table field team audience is are "
    "and then while with of on in to up down his her their two large small red blue green white black "
    "walking running jumping holding raising climbing trimming talking eating playing sitting standing "
    "left right before after first video shows does this figure show yes no Yes No please answer"
).split()

TEXT_DIM = 32


def local_t5_tokenizer(extra_ids: int = 8, words: tuple[str, ...] | list[str] = WORDS):
    """A T5 (Unigram) tokenizer built from a fixed word list, identical wherever it is built."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -5.0) for w in dict.fromkeys(words)]
    pieces += [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]
    return T5Tokenizer(vocab=pieces, extra_ids=extra_ids)


def _t5_encoder(tokenizer, umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_cls(
        vocab_size=len(tokenizer), d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
    )
    return model_cls(config)


def _cogvideox():
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
        text_embed_dim=TEXT_DIM, num_layers=1, sample_width=2, sample_height=2, sample_frames=9,
        patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return CogVideoXPipeline, dict(transformer=transformer, vae=vae, scheduler=CogVideoXDDIMScheduler())


def _ltx_video():
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=TEXT_DIM,
    )
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), patch_size=1, patch_size_t=1, encoder_causal=True,
        decoder_causal=False,
    )
    return LTXPipeline, dict(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler())


def _wan():
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    return WanPipeline, dict(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))


# kind -> (denoiser and VAE maker, whether the text encoder is UMT5 as in Wan).
_MAKERS: dict[str, tuple[Callable, bool]] = {
    "cogvideox": (_cogvideox, False), "ltx-video": (_ltx_video, False), "wan": (_wan, True),
}


def make_tiny_pipeline(kind: str, seed: int = 0):
    """The tiny pipeline of `kind` in memory, weights drawn from `seed`, every module in eval mode."""
    make, umt5 = _MAKERS[kind]
    torch.manual_seed(seed)
    pipeline_cls, parts = make()
    tokenizer = local_t5_tokenizer()
    pipe = pipeline_cls(tokenizer=tokenizer, text_encoder=_t5_encoder(tokenizer, umt5), **parts)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe


def _builder(kind: str) -> Callable[..., Path]:
    # A pipeline comes in one size; `size` is taken so that every tiny builder is called alike.
    def build(out_dir: Path, seed: int = 0, size: str = "tiny") -> Path:
        out_dir = Path(out_dir)
        make_tiny_pipeline(kind, seed).save_pretrained(out_dir)
        return out_dir

    return build


TINY_PIPELINES: dict[str, Callable[..., Path]] = {kind: _builder(kind) for kind in _MAKERS}

# Call settings that the tiny components can run (sizes must fit their patch and VAE factors).
TINY_CALL = {
    "cogvideox": dict(height=16, width=16, num_frames=9, num_inference_steps=2, max_sequence_length=16),
    "ltx-video": dict(height=32, width=32, num_frames=9, num_inference_steps=2, max_sequence_length=16),
    "wan": dict(height=16, width=16, num_frames=9, num_inference_steps=2, max_sequence_length=16),
}
