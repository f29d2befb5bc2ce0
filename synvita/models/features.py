"""Vision features on disk: a video's prompt prefix and projected features, encoded once and read back
by every later training run or evaluation that sees the same video through the same frozen tower.

LoRA leaves the vision tower and projector (the family's `frozen_modules`) untouched, so every
adapter of one base model sees a video the same way; the key hashes those weights, not the model's
name, so an adapter that does train them, or a rebuilt checkpoint at the same path, gets its own
entries instead of stale ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from synvita.data.video import Clip
from synvita.models.alignment import AlignmentScorer, VisionCache
from synvita.models.families import VideoLMM
from synvita.utils import atomic_path


def frozen_tensors(lmm: VideoLMM):
    """(name, tensor) of every parameter and buffer under the family's frozen (vision) modules."""
    prefixes = tuple(f"{m}." for m in lmm.family.frozen_modules())
    for name, tensor in [*lmm.model.named_parameters(), *lmm.model.named_buffers()]:
        if name.startswith(prefixes):
            yield name, tensor


@torch.no_grad()
def vision_fingerprint(lmm: VideoLMM) -> str:
    """A hash of the names, dtypes and values of the weights a video's features depend on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(frozen_tensors(lmm), key=lambda item: item[0]):
        if hasattr(tensor, "ds_id"):  # DeepSpeed ZeRO-3 keeps only a shard of it here
            raise ValueError(f"{name} is partitioned by ZeRO-3: the vision features cannot be keyed on its "
                             "weights; turn the feature cache off or use ZeRO-2")
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """One safetensors file per (tower weights, device type, prompt prefix, frame sampler, video file).

    A video file is keyed by its resolved path, size and modification time, so a replaced file is
    encoded anew; the sampled clip (and its frame rate) follows from the file and the sampler.
    """

    def __init__(self, root: str | os.PathLike, scorer: AlignmentScorer):
        self.root = Path(root)
        lmm = scorer.lmm
        self.setting = json.dumps([lmm.source, vision_fingerprint(lmm), lmm.device.type, scorer.prefix_text,
                                   scorer.sampler.describe()])

    def path(self, video: str | os.PathLike) -> Path:
        st = os.stat(video)
        key = json.dumps([self.setting, str(Path(video).resolve()), st.st_size, st.st_mtime_ns])
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()}.safetensors"

    def holds(self, video: str | os.PathLike) -> bool:
        return self.path(video).is_file()

    def load(self, video: str | os.PathLike, device) -> VisionCache | None:
        from safetensors import safe_open

        path = self.path(video)
        if not path.is_file():
            return None
        with safe_open(str(path), "pt", device=str(device)) as f:
            return VisionCache(prefix_ids=f.get_tensor("prefix_ids"), positions=f.get_tensor("positions"),
                               features=f.get_tensor("features"), num_frames=int(f.metadata()["num_frames"]))

    def save(self, video: str | os.PathLike, cache: VisionCache) -> None:
        from safetensors.torch import save_file

        tensors = {"prefix_ids": cache.prefix_ids, "positions": cache.positions, "features": cache.features}
        with atomic_path(self.path(video)) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
                      metadata={"num_frames": str(cache.num_frames)})


def encode_cached(scorer: AlignmentScorer, cache: FeatureCache | None, videos: Sequence[str | os.PathLike],
                  frames: Callable[[int], Clip]) -> list[VisionCache]:
    """`scorer.encode` of the clips of `videos` (files); `frames(i)` gives video i's sampled clip and
    is called only for the videos `cache` does not hold (all of them without a cache), whose features
    it then keeps."""
    loaded = [None if cache is None else cache.load(v, scorer.lmm.device) for v in videos]
    todo = [i for i, c in enumerate(loaded) if c is None]
    for i, encoded in zip(todo, scorer.encode([frames(i) for i in todo])):
        if cache is not None:
            cache.save(videos[i], encoded)
        loaded[i] = encoded
    return loaded
