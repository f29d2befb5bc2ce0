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
from transformers import CLIPVisionModel

from synvita.models.clip_flant5 import CLIPFlanT5ForConditionalGeneration
from synvita.scoring.errors import MemberError
from synvita.text.prompts import VQA_QUESTION, clip_flant5_prompt

# The reference's chat prompt ("t5_chat") around the question, and its answer.
IMAGE_PLACEHOLDER = "<image>"
ANSWER = "Yes"
# Every FlanT5 size shares one SentencePiece vocabulary; the reference reads it from here.
FLAN_T5_TOKENIZER = "google/flan-t5-xxl"


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
