"""The VQAScore ensemble: f̄(V, t) = mean over members and over K uniformly sampled frames of P(Yes).

A clip is decoded once (`sample_frames`); the same frames then go to every member, and each member
scores all frames x captions in one batched call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synvita.data.video import FrameSampler, probe_video, read_video

DEFAULT_SAMPLER = FrameSampler("uniform", num_frames=4)


def sample_frames(path: str | Path, sampler: FrameSampler = DEFAULT_SAMPLER) -> tuple[list[int], np.ndarray]:
    """The sampled frame indices (recorded with every score) and the frames, from one decode."""
    info = probe_video(path)
    frames = read_video(path, sampler)
    times = np.arange(info.num_frames) / info.fps
    return sampler.indices(times, info.duration).tolist(), frames


def member_scores(members, frames: np.ndarray, texts: list[str]) -> dict[str, torch.Tensor]:
    """member name -> P(Yes) of shape (frames, texts)."""
    return {m.name: m.p_yes(list(frames), texts) for m in members}


def member_means(per_member: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """member name -> its mean over frames, per caption."""
    return {name: p.mean(0) for name, p in per_member.items()}


def ensemble_mean(per_member: dict[str, torch.Tensor]) -> torch.Tensor:
    """f̄ per caption: each member's mean over frames, then the mean over members."""
    if not per_member:
        raise ValueError("the ensemble has no member scores")
    return torch.stack(list(member_means(per_member).values())).mean(0)
