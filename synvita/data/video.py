"""Video decoding with PyAV, frame sampling, and atomic mp4 writing.

Each frame is decoded at most once: a first pass over the packets (no decoding) gives the exact
frame count and every presentation time, which fixes the frames to keep; a second, sequential
pass decodes and converts only those, and stops after the last one.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from synvita.errors import SynvitaError
from synvita.utils import atomic_path


class VideoError(SynvitaError):
    """A video that cannot be used; the message starts with the file path."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


@dataclass(frozen=True)
class FrameSampler:
    """Which frames to take from a clip.

    uniform: `num_frames` frames evenly spread from the first to the last frame; a clip shorter
        than that repeats frames, so exactly `num_frames` come back (models expect a fixed count).
    fps: one frame every 1/`fps` seconds of presentation time, each the frame on screen at that
        moment, so variable-frame-rate clips are sampled by time rather than by index.
    all: every frame.
    segments: the frame near the middle of each of `num_frames` equal segments, as mPLUG-Owl's video
        code picks them (its training and VideoCon's evaluation read frames this way).
    """

    kind: Literal["uniform", "fps", "all", "segments"] = "uniform"
    num_frames: int = 8
    fps: float | None = None

    def __post_init__(self):
        if self.kind not in ("uniform", "fps", "all", "segments"):
            raise ValueError(f"FrameSampler.kind: {self.kind!r} is not one of uniform, fps, all, segments")
        if self.kind in ("uniform", "segments") and self.num_frames < 1:
            raise ValueError(f"FrameSampler.num_frames: must be >= 1, got {self.num_frames}")
        if self.kind == "fps" and not (self.fps and self.fps > 0):
            raise ValueError(f"FrameSampler.fps: kind 'fps' needs fps > 0, got {self.fps}")
        if self.kind != "fps" and self.fps is not None:
            raise ValueError(f"FrameSampler.fps: only used by kind 'fps', not {self.kind!r}")

    def describe(self) -> str:
        if self.kind in ("uniform", "segments"):
            return f"{self.kind}-{self.num_frames}"
        if self.kind == "fps":
            return f"fps-{self.fps:g}"
        return "all"

    def indices(self, times: np.ndarray, end: float) -> np.ndarray:
        """Frame indices to keep, given each frame's start time (sorted, seconds) and the clip end."""
        n = len(times)
        if self.kind == "all":
            return np.arange(n)
        if self.kind == "uniform":
            return np.round(np.linspace(0, n - 1, self.num_frames)).astype(int)
        if self.kind == "segments":
            step = (n - 1) / self.num_frames
            return int(step / 2) + np.round(step * np.arange(self.num_frames)).astype(int)
        grid = times[0] + np.arange(0, end - times[0], 1.0 / self.fps)
        # The tolerance keeps float rounding of the grid from picking the previous frame.
        return np.searchsorted(times, grid + 1e-6, side="right") - 1


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


@dataclass(frozen=True, eq=False)
class Clip:
    """Sampled frames (T, H, W, 3) and the rate they stand for: `fps` = frames sampled / the clip's
    duration. Models with time-aware positions (Qwen2.5-VL) space the frames by it; without it
    transformers assumes 24 fps."""

    frames: np.ndarray
    fps: float

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _Timeline:
    times: np.ndarray  # presentation start time of each frame, sorted, seconds
    end: float  # end of the last frame, seconds
    width: int
    height: int


@contextmanager
def _container(path: str | os.PathLike):
    """The opened container and its first video stream; FFmpeg errors become VideoErrors."""
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "file does not exist")
    if path.is_dir():
        raise VideoError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoError(path, f"not a readable video container ({e})") from e
    with container:
        if not container.streams.video:
            raise VideoError(path, "has no video stream")
        try:
            yield container, container.streams.video[0]
        except av.error.FFmpegError as e:
            raise VideoError(path, f"corrupt video data ({e})") from e


def _timeline(path: str | os.PathLike) -> _Timeline:
    """Every frame's time, from a pass over the packets alone (no decoding)."""
    with _container(path) as (container, stream):
        packets = [(p.pts, p.duration) for p in container.demux(stream) if p.size and not p.is_discard]
        if not packets:
            raise VideoError(path, "contains no video frames")
        if len(packets) < stream.frames:
            raise VideoError(path, f"truncated: the index lists {stream.frames} frames, the file holds {len(packets)}")
        if any(pts is None for pts, _ in packets):
            raise VideoError(path, "has video packets without timestamps (raw elementary stream?); remux it to mp4")
        tb = float(stream.time_base)
        packets.sort()
        times = np.array([pts for pts, _ in packets], dtype=np.float64) * tb
        last = packets[-1][1] * tb if packets[-1][1] else (times[-1] - times[0]) / max(len(times) - 1, 1)
        ctx = stream.codec_context
        return _Timeline(times, float(times[-1] + last), ctx.width, ctx.height)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, mean fps, size and duration, from the container's packets (no decoding)."""
    t = _timeline(path)
    n, duration = len(t.times), t.end - float(t.times[0])
    return VideoInfo(n, n / duration, t.width, t.height, duration)


def read_video(path: str | os.PathLike, sampler: FrameSampler = FrameSampler()) -> np.ndarray:
    """Decode the sampled frames of `path` as uint8 RGB, shape (T, H, W, 3)."""
    return read_clip(path, sampler).frames


def read_clip(path: str | os.PathLike, sampler: FrameSampler = FrameSampler()) -> Clip:
    """The sampled frames of `path` (uint8 RGB, (T, H, W, 3)) with their rate over the clip's duration.

    Two passes over the file, one decode: the first reads only packet timestamps, which fixes the
    frame indices to keep; the second decodes sequentially and converts just those frames.
    """
    timeline = _timeline(path)
    wanted = sampler.indices(timeline.times, timeline.end).tolist()
    if not wanted:
        raise VideoError(path, f"sampler {sampler.describe()} selects no frames")
    targets, kept = set(wanted), {}
    # One converter for the clip: `frame.to_ndarray` sets up a new swscale context for every frame,
    # which took longer than decoding on small clips (8 ms against 3 for 8 frames of 48x48).
    rgb = VideoReformatter()
    with _container(path) as (container, stream):
        stream.thread_type = "AUTO"
        # Frames come out of the decoder in presentation order, matching `timeline.times`.
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                kept[index] = rgb.reformat(frame, format="rgb24").to_ndarray()
            if len(kept) == len(targets):
                break
    if len(kept) < len(targets):
        raise VideoError(path, f"decoded fewer frames than the {len(timeline.times)} its packets promise; "
                               "the stream is corrupt")
    return Clip(np.stack([kept[i] for i in wanted]), len(wanted) / (timeline.end - float(timeline.times[0])))


# libx264 near-lossless: the generation job writes clips so unless told otherwise
NEAR_LOSSLESS_CRF = 12


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = NEAR_LOSSLESS_CRF) -> None:
    """Write uint8 RGB frames (T, H, W, 3) as an H.264 mp4; readers never see a partial file.
    `crf` 12 is near-lossless; 0 is lossless, the only setting whose clips decode to the same pixels
    on every run: at 12, libx264 coded the same toy clips differently from one encoding to the next
    (15 of 40 clips over 4 encodings, one encoder thread too), at 0 never, for 1.5x the bytes."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{path}: frames must be uint8 (T>0, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        # yuv420p stores chroma per 2x2 block; H.264 encoders reject odd sizes.
        raise ValueError(f"{path}: H.264 needs even width and height, got {width}x{height}")
    if not fps > 0:
        raise ValueError(f"{path}: fps must be > 0, got {fps}")
    with atomic_path(path, suffix=".mp4.tmp") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
