"""VQAScore members: image VLMs that say how likely "Yes" is to `Does this figure show "<t>"?`.

A member kind (LLaVA-1.5, InstructBLIP with T5, Qwen2-VL / Qwen2.5-VL on single frames, CLIP-FlanT5
in `synvita.scoring.clip_flant5`, `external` for any other scorer) is one `MEMBERS` entry; `PRESETS`
names the published checkpoints. Every HF member loads by hub id or local folder, scores all
(frame, caption) pairs of a clip in batched forward passes, and reads P(Yes) from the
full-vocabulary softmax at the answer position: the last attended prompt token for decoder-only
models (right for either padding side), the decoder's first token for T5. CLIP-FlanT5 keeps its
reference's score, the likelihood of the answer "Yes" (see its module).
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import torch

from synvita.models.families import FamilyError, yes_no_token_ids
from synvita.models.prefix import SharedPrefix, positions_after, sees_prefix
from synvita.registry import Registry
from synvita.scoring.errors import MemberError
from synvita.text.prompts import VQA_QUESTION



@dataclasses.dataclass(frozen=True)
class HFKind:
    """A member family served by a transformers model class."""

    model_class: str
    model_types: tuple[str, ...]  # config.model_type values the class accepts

    def load(self, name: str, model: str, *, template: str = VQA_QUESTION, batch_size: int = 8,
             device: str | torch.device = "cpu", dtype: str = "float32", trust_remote_code: bool = False,
             processor_kwargs: dict | None = None, prefix_sharing: bool = True):
        import transformers

        config = transformers.AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
        if config.model_type not in self.model_types:
            raise MemberError(f"member {name!r}: {model} is a {config.model_type!r} checkpoint, "
                              f"but {self.model_class} expects {' or '.join(self.model_types)}")
        cls = getattr(transformers, self.model_class)
        net = cls.from_pretrained(model, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
        processor = transformers.AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code,
                                                               **(processor_kwargs or {}))
        return HFMember(name, net.to(device).eval(), processor, template=template, batch_size=batch_size,
                        prefix_sharing=prefix_sharing)


class HFMember:
    def __init__(self, name: str, model, processor, template: str = VQA_QUESTION, batch_size: int = 8,
                 prefix_sharing: bool = True):
        if "{text}" not in template:
            raise MemberError(f"member {name!r}: question template {template!r} has no {{text}} slot")
        self.name, self.model, self.processor = name, model, processor
        self.template, self.batch_size = template, batch_size
        self.seq2seq = bool(getattr(model.config, "text_config", model.config).is_encoder_decoder)
        # A decoder-only member runs the prompt up to the caption (image tokens included) once per
        # frame and scores the captions from its cached keys/values. T5 members cannot: InstructBLIP's
        # Q-Former reads the question, so the image's encoding depends on the caption.
        self.prefix_sharing = prefix_sharing and not self.seq2seq
        try:
            self.yes_ids, self.no_ids = yes_no_token_ids(processor.tokenizer)
        except FamilyError as err:
            raise MemberError(f"member {name!r}: {err}") from None

    def prompt(self, text: str) -> str:
        question = self.template.format(text=text)
        if not getattr(self.processor, "chat_template", None):
            return question  # InstructBLIP takes the bare instruction; its processor adds the query tokens
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def _p_yes(self, logits: torch.Tensor) -> torch.Tensor:
        # Summed float32 probabilities can overshoot 1 by an ulp.
        return logits.float().softmax(-1)[:, self.yes_ids].sum(-1).clamp(0.0, 1.0).cpu()

    @torch.no_grad()
    def p_yes(self, frames: list[np.ndarray], texts: list[str]) -> torch.Tensor:
        """P(Yes) for every frame x caption, shape (len(frames), len(texts)), in batched forwards."""
        placeholder = str(getattr(self.processor, "image_token", None) or "")
        for t in texts:
            if placeholder and placeholder in t:
                raise MemberError(f"member {self.name!r}: caption {t!r} contains the image placeholder {placeholder!r}")
        splits = self._split(texts) if self.prefix_sharing else None
        if splits is not None:
            shared = self._p_yes_shared(frames, splits)
            if shared is not None:
                return shared
        prompts = [self.prompt(t) for t in texts]
        pairs = [(f, t) for f in range(len(frames)) for t in range(len(texts))]
        out = torch.empty(len(pairs))
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            batch = self.processor(images=[frames[f] for f, _ in chunk], text=[prompts[t] for _, t in chunk],
                                   padding=True, return_tensors="pt").to(self.model.device)
            if "pixel_values" in batch:
                batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
            if self.seq2seq:
                start_id = self.model.config.text_config.decoder_start_token_id
                decoder = torch.full((len(chunk), 1), start_id, device=self.model.device)
                logits = self.model(**batch, decoder_input_ids=decoder).logits[:, 0]
            else:
                logits = self.model(**batch).logits
                mask = batch["attention_mask"]
                last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
                logits = logits[torch.arange(len(chunk)), last]
            out[start:start + len(chunk)] = self._p_yes(logits)
        return out.view(len(frames), len(texts))

    def _tail_positions(self, start: torch.Tensor, frame_of_row: torch.Tensor, length: int) -> torch.Tensor:
        """Positions of tails that follow `start` prefix tokens (one per row). M-RoPE members (Qwen2-VL)
        number text after the image from the prefix's offset (`rope_deltas`, one per frame, set by the
        prefix pass), which transformers' own continuation would not: the positions are given."""
        steps = positions_after(start - 1, length)
        deltas = getattr(getattr(self.model, "model", None), "rope_deltas", None)
        if deltas is None:
            return steps
        return (steps + deltas.reshape(-1)[frame_of_row].unsqueeze(-1)).unsqueeze(0).expand(3, -1, -1)

    def _split(self, texts: list[str]) -> list[tuple[int, list[int]]] | None:
        """Per caption: how many of the shared prompt's last tokens its prompt drops, and its tokens
        after them, cut from the whole prompt's tokenization (as the plain path and the processor
        tokenize it; a caption alone may tokenize differently at its start). None when a caption
        changes the tokens up to the image."""
        pre, post = self.prompt("\x00").split("\x00")
        tok = self.processor.tokenizer
        head = tok(pre).input_ids
        image_id = tok.convert_tokens_to_ids(str(self.processor.image_token))
        after_image = len(head) - head[::-1].index(image_id) if image_id in head else len(head)
        splits = []
        for t in texts:
            full = tok(pre + t + post).input_ids
            shared = next((i for i, (a, b) in enumerate(zip(full, head)) if a != b), min(len(full), len(head)))
            if shared < after_image:
                return None
            splits.append((len(head) - shared, full[shared:]))
        return splits

    def _p_yes_shared(self, frames: list[np.ndarray], splits: list[tuple[int, list[int]]]) -> torch.Tensor | None:
        """P(Yes) for every frame x caption: the prompt before the caption for all frames in one pass,
        then the pairs' tails (caption + rest of the prompt), `batch_size` at a time, from its cache.
        None when the frames' prompts differ in length (frames of different sizes)."""
        pre = self.prompt("\x00").split("\x00")[0]
        tok, device = self.processor.tokenizer, self.model.device
        prefix = self.processor(images=list(frames), text=[pre] * len(frames), padding=True,
                                return_tensors="pt").to(device)
        if not bool(prefix["attention_mask"].all()):
            return None
        if "pixel_values" in prefix:
            prefix["pixel_values"] = prefix["pixel_values"].to(self.model.dtype)
        width = prefix["input_ids"].shape[1]
        shared = SharedPrefix(self.model(**prefix, use_cache=True).past_key_values, width, self.model.config,
                              f"member {self.name!r}")
        pairs = [(f, t) for f in range(len(frames)) for t in range(len(splits))]
        out = torch.empty(len(pairs))
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            rows = [splits[t][1] for _, t in chunk]
            seen = torch.tensor([width - splits[t][0] for _, t in chunk], device=device)
            frame_of_row = torch.tensor([f for f, _ in chunk], device=device)
            length = max(map(len, rows))
            ids = torch.tensor([r + [tok.pad_token_id or 0] * (length - len(r)) for r in rows], device=device)
            # A row sees the prefix tokens its own prompt keeps, then its tail.
            mask = torch.cat([sees_prefix(prefix["attention_mask"][frame_of_row], seen).long(),
                              torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=device)], 1)
            logits = shared.continue_rows(self.model, frame_of_row, input_ids=ids, attention_mask=mask,
                                          position_ids=self._tail_positions(seen, frame_of_row, length)).logits
            last = torch.tensor([len(r) - 1 for r in rows], device=device)
            out[start:start + len(rows)] = self._p_yes(logits[torch.arange(len(rows)), last])
        return out.view(len(frames), len(splits))


@dataclasses.dataclass(frozen=True)
class ModuleKind:
    """A member kind whose `load(name, model, **options)` lives in its own module, imported on first use
    (it may need transformers model classes defined at import time)."""

    module: str

    def load(self, name: str, model: str, **options):
        return importlib.import_module(self.module).load(name, model, **options)


@dataclasses.dataclass(frozen=True)
class ExternalKind:
    """Any other scorer: `model: module:function`. `function(device=..., dtype=..., template=...)` is
    called once and returns `score(frames, texts)`, giving one probability per frame x caption."""

    def load(self, name: str, model: str, *, template: str = VQA_QUESTION, device: str | torch.device = "cpu",
             dtype: str = "float32", **_ignored):
        module, _, attr = model.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as err:
            raise MemberError(f"member {name!r}: cannot load the external scorer {model!r} "
                              f"(expected module:function): {err}") from None
        return ExternalMember(name, factory(device=str(device), dtype=dtype, template=template))


class ExternalMember:
    def __init__(self, name: str, score):
        self.name, self.score = name, score

    def p_yes(self, frames: list[np.ndarray], texts: list[str]) -> torch.Tensor:
        p = torch.as_tensor(np.asarray(self.score(list(frames), list(texts)), dtype=np.float32))
        if p.shape != (len(frames), len(texts)):
            raise MemberError(f"member {self.name!r}: the external scorer returned shape {tuple(p.shape)} "
                              f"for {len(frames)} frames x {len(texts)} captions")
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise MemberError(f"member {self.name!r}: the external scorer returned values outside [0, 1] "
                              f"(min {float(p.min())}, max {float(p.max())})")
        return p


MEMBERS: Registry = Registry("VQA member kind", required=("load",))
MEMBERS.register("llava-1.5", HFKind("LlavaForConditionalGeneration", ("llava",)))
MEMBERS.register("instructblip", HFKind("InstructBlipForConditionalGeneration", ("instructblip",)))
MEMBERS.register("qwen2-vl", HFKind("Qwen2VLForConditionalGeneration", ("qwen2_vl",)))
MEMBERS.register("qwen2.5-vl", HFKind("Qwen2_5_VLForConditionalGeneration", ("qwen2_5_vl",)))
MEMBERS.register("clip-flant5", ModuleKind("synvita.scoring.clip_flant5"))
MEMBERS.register("external", ExternalKind())

# Published checkpoints by short name: (member kind, hub id).
PRESETS = {
    "llava-1.5-7b": ("llava-1.5", "llava-hf/llava-1.5-7b-hf"),
    "llava-1.5-13b": ("llava-1.5", "llava-hf/llava-1.5-13b-hf"),
    "instructblip-flan-t5-xl": ("instructblip", "Salesforce/instructblip-flan-t5-xl"),
    "instructblip-flan-t5-xxl": ("instructblip", "Salesforce/instructblip-flan-t5-xxl"),
    "qwen2-vl-2b": ("qwen2-vl", "Qwen/Qwen2-VL-2B-Instruct"),
    "qwen2-vl-7b": ("qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct"),
    "qwen2.5-vl-3b": ("qwen2.5-vl", "Qwen/Qwen2.5-VL-3B-Instruct"),
    "qwen2.5-vl-7b": ("qwen2.5-vl", "Qwen/Qwen2.5-VL-7B-Instruct"),
    "clip-flant5-xl": ("clip-flant5", "zhiqiulin/clip-flant5-xl"),
    "clip-flant5-xxl": ("clip-flant5", "zhiqiulin/clip-flant5-xxl"),
}


@dataclasses.dataclass
class MemberSpec:
    """One ensemble member in a config: a preset name alone, or a name with kind and model."""

    name: str
    kind: str | None = None
    model: str | None = None  # hub id, local folder, or `tiny:<kind>` (built on first use)
    template: str = VQA_QUESTION
    batch_size: int = 8
    dtype: str = "float32"
    trust_remote_code: bool = False
    # Passed to AutoProcessor, e.g. {size: {shortest_edge: 200704, longest_edge: 401408}} to bound
    # the image tokens Qwen2-VL makes of a large frame.
    processor_kwargs: dict = dataclasses.field(default_factory=dict)
    # Decoder-only members encode the prompt up to the caption once per frame (scores are equal).
    prefix_sharing: bool = True

    def resolved(self) -> tuple[str, str]:
        if self.kind and self.model:
            return self.kind, self.model
        if self.name not in PRESETS:
            raise MemberError(f"member {self.name!r}: not a preset ({', '.join(PRESETS)}); "
                              "give its kind and model")
        kind, model = PRESETS[self.name]
        return self.kind or kind, self.model or model


def load_member(spec: MemberSpec, device: str | torch.device = "cpu", cache_dir: str | Path | None = None):
    from synvita.tiny import materialize

    kind, model = spec.resolved()
    return MEMBERS.get(kind).load(
        spec.name, materialize(model, cache_dir), template=spec.template, batch_size=spec.batch_size,
        device=device, dtype=spec.dtype, trust_remote_code=spec.trust_remote_code,
        processor_kwargs=spec.processor_kwargs, prefix_sharing=spec.prefix_sharing)
