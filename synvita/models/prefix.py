"""Prefix sharing: a batch of prompt prefixes runs once, and every continuation (a caption and the
rest of its prompt) reads the prefix's cached keys/values instead of recomputing them.

Both users stand on this: the video scorer (`models.alignment`: a video's prefix, up to the caption,
with its captions packed per row behind a block mask) and the image VQA members (`scoring.members`:
a frame's prefix, one caption per row). A continuation sees only the prefix tokens its own prompt
keeps (`sees_prefix`): a caption can re-spell the prefix's last tokens, which it then does not see.
"""

from __future__ import annotations

import torch


class SharedPrefix:
    """The cached keys/values of a batch of prefixes, one row per prefix."""

    def __init__(self, past_key_values, length: int, config, source: str):
        self.kv = [(k, v) for k, v, *_ in past_key_values or []]
        if not self.kv or any(k is None or k.shape[-2] != length for k, _ in self.kv):
            raise RuntimeError(f"{source}: the model did not cache the prefix's keys/values; "
                               "score with prefix_sharing=False")
        self.config = config

    def continue_rows(self, forward, rows: torch.Tensor | slice, **inputs):
        """`forward(**inputs)` continuing the prefixes `rows` (one per continuation row), on a copy of
        their cache, so the prefix serves any number of continuations."""
        from transformers import DynamicCache  # here: importing this module stays cheap

        cache = DynamicCache(ddp_cache_data=[(k[rows], v[rows]) for k, v in self.kv], config=self.config)
        return forward(**inputs, past_key_values=cache, use_cache=True)


def sees_prefix(valid: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Which prefix slots a continuation token may attend: the prefix's real tokens (`valid`, (..., P))
    among the first `seen` (per token or per row; broadcast against the last axis)."""
    return valid.bool() & (torch.arange(valid.shape[-1], device=valid.device) < seen[..., None])


def positions_after(last: torch.Tensor, length: int) -> torch.Tensor:
    """Positions of `length` tokens that continue a prefix whose last seen token sits at `last`
    (any shape: one per row, or per M-RoPE axis and row), counting on by one; shape (*last.shape, length)."""
    return last.unsqueeze(-1) + 1 + torch.arange(length, device=last.device)
