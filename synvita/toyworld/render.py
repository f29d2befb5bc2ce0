"""Numpy renderer: a Scene and a Style become a small uint8 clip (T,H,W,3), deterministic per seed.

The events share the clip's timeline in equal, consecutive segments. Every shape carries a dark
marker dot off its centre so that a spin (a half turn) is visible on a circle too.
The "real" style (textured background, sensor noise, camera jitter) and the synthetic styles
(flat colours, blur, colour cast, flicker) differ in appearance only: that is the appearance gap.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, zoom

from synvita.toyworld.world import COLOURS, SHAPES, SIZES, Scene

MOVE_STEP = 0.22  # of the frame side
SUPERSAMPLE = 2  # anti-aliasing factor


@dataclass(frozen=True)
class Style:
    name: str
    textured: bool = False
    background: tuple[int, int, int] = (205, 205, 200)
    noise: float = 0.0  # std of per-pixel sensor noise, in 0..255 units
    jitter: int = 0  # max camera shake per frame, in pixels
    blur: float = 0.0  # gaussian sigma in pixels
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain
    flicker: float = 0.0  # max relative brightness change per frame


REAL = Style("real", textured=True, background=(150, 140, 120), noise=7.0, jitter=1)


def _layout(scene: Scene, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Start centres (x, y in 0..1, y down) honouring the scene's relation."""
    n = len(scene.entities)
    if n == 1:
        return [tuple(0.5 + rng.uniform(-0.08, 0.08, 2))]
    horizontal = scene.relation in ("left of", "right of")
    first_low = scene.relation in ("left of", "above")  # entity 0 has the smaller coordinate
    a, b = (0.3, 0.7) if first_low else (0.7, 0.3)
    third = 0.2 if rng.random() < 0.5 else 0.8
    axis = [a, b, 0.5][:n]
    cross = [0.5, 0.5, third][:n]
    pts = [(p, q) if horizontal else (q, p) for p, q in zip(axis, cross)]
    return [(x + rng.uniform(-0.04, 0.04), y + rng.uniform(-0.04, 0.04)) for x, y in pts]


def _states(scene: Scene, t: float, start: list[tuple[float, float]]) -> list[dict]:
    """Each entity's pose at clip time t in [0, 1]: applied events in full, the running one in part."""
    st = [dict(x=x, y=y, scale=1.0, angle=0.0, alpha=1.0, lift=0.0) for x, y in start]
    for i, ev in enumerate(scene.events):
        if ev.action == "appear":
            st[ev.entity]["alpha"] = 0.0  # invisible until its own event
    n = len(scene.events)
    for k, ev in enumerate(scene.events):
        p = min(max((t - k / n) * n, 0.0), 1.0)
        s, a = st[ev.entity], ev.action
        if a.startswith("move"):
            dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[a.split()[1]]
            s["x"] += dx * MOVE_STEP * p
            s["y"] += dy * MOVE_STEP * p
        elif a == "grow":
            s["scale"] *= 1 + 0.6 * p
        elif a == "shrink":
            s["scale"] *= 1 - 0.45 * p
        elif a == "spin":
            s["angle"] += math.pi * p
        elif a == "jump":
            s["lift"] = 0.22 * math.sin(math.pi * p)
        elif a == "appear":
            s["alpha"] = p
        elif a == "vanish":
            s["alpha"] = 1 - p
    return st


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dx**2 + dy**2 <= r * r
    if shape == "square":
        return np.maximum(abs(dx), abs(dy)) <= 0.85 * r
    if shape == "diamond":
        return abs(dx) + abs(dy) <= 1.1 * r
    # an equilateral triangle with circumradius r, apex up
    s3 = math.sqrt(3)
    return (dy <= r / 2) & (s3 * dx - dy <= r) & (-s3 * dx - dy <= r)


def _shapes(scene: Scene, start: list[tuple[float, float]], t: float, xs: np.ndarray, ys: np.ndarray):
    """(entity, opacity, body mask, marker mask) of every visible shape at clip time t, in drawing
    order, on the pixel grid (xs, ys) given in frame units."""
    for ent, s in zip(scene.entities, _states(scene, t, start)):
        if s["alpha"] <= 0:
            continue
        r = SIZES[ent.size] * s["scale"]
        c, si = math.cos(s["angle"]), math.sin(s["angle"])
        for j in range(ent.count):
            # copies of a group stand side by side, across the scene's main axis
            off = (j - (ent.count - 1) / 2) * 2.3 * SIZES[ent.size]
            cx, cy = s["x"] + (off if scene.relation in ("above", "below") else 0), s["y"] - s["lift"]
            cy += 0 if scene.relation in ("above", "below") else off
            dx, dy = xs - cx, ys - cy
            rx, ry = c * dx + si * dy, -si * dx + c * dy  # into the shape's own frame
            body = _shape_mask(ent.shape, rx, ry, r)
            yield ent, s["alpha"], body, body & ((rx**2 + (ry + 0.5 * r) ** 2) <= (0.28 * r) ** 2)


def shape_patches(scene: Scene, seed: int, frames: int, frame: int, size: int, grid: int,
                  min_cover: float = 0.12) -> np.ndarray:
    """(grid * grid,) int: for each patch of a `grid` x `grid` split of frame `frame` of `render(scene,
    seed=seed, frames=frames, size=size)`, 1 + the index in SHAPES of the shape covering most of it,
    or 0 when no shape covers `min_cover` of it (a half-faded shape counts as absent). The target
    that teaches a member's vision tower shape directly (`basemodels.vqa_members`); camera jitter
    (a pixel at most) is ignored."""
    if size % grid:
        raise ValueError(f"a {size}-pixel frame does not split into {grid} x {grid} patches")
    start = _layout(scene, np.random.default_rng(seed))  # the first draws of `render`'s generator
    ys, xs = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    owner = np.zeros((size, size), np.int64)
    for ent, a, body, _ in _shapes(scene, start, frame / max(frames - 1, 1), xs, ys):
        if a >= 0.5:
            owner[body] = 1 + SHAPES.index(ent.shape)
    g = size // grid
    cover = np.stack([(owner == k).reshape(grid, g, grid, g).mean((1, 3)) for k in range(1 + len(SHAPES))], -1)
    best = 1 + cover[..., 1:].argmax(-1)
    return np.where(cover[..., 1:].max(-1) >= min_cover, best, 0).reshape(-1)


@functools.cache
def _upsampling(n: int, size: int) -> np.ndarray:
    """(size, n): scipy's cubic-spline `zoom` of a length-n signal to length `size`, as a matrix.
    The zoom is linear and separable, so a textured background is two small matrix products, which
    draw the same float32 background as `zoom` (tests/test_toyworld.py) in 0.06x the time
    (benchmarks/bench_render.py); `zoom` on every clip was most of the base models' rendering."""
    return zoom(np.eye(n), (size / n, 1), order=3)


def _background(style: Style, size: int, rng: np.random.Generator) -> np.ndarray:
    bg = np.broadcast_to(np.array(style.background, np.float32), (size, size, 3)).copy()
    if style.textured:
        # low-frequency blotches plus fine grain: a floor seen by a camera, not a flat fill
        blotches = rng.normal(0, 1, (6, 6, 1)) + 0.3 * rng.normal(0, 1, (6, 6, 3))
        up = _upsampling(6, size)
        smooth = (up @ blotches.transpose(2, 0, 1) @ up.T).transpose(1, 2, 0)
        bg += 22 * smooth + rng.normal(0, 6, (size, size, 3))
    return bg


def render(scene: Scene, style: Style = REAL, seed: int = 0, frames: int = 12, size: int = 48,
           pick: list[int] | None = None) -> np.ndarray:
    """The clip of `scene` in `style`: uint8 (frames, size, size, 3); with `pick`, only those frames
    of it (len(pick), size, size, 3), drawn with other noise than the full clip's (a training sample
    of one frame need not pay for eight)."""
    if scene.problems():
        raise ValueError(f"cannot render scene: {'; '.join(scene.problems())}")
    rng = np.random.default_rng(seed)
    start = _layout(scene, rng)
    pad = style.jitter
    hi = (size + 2 * pad) * SUPERSAMPLE
    bg = _background(style, size + 2 * pad, rng)
    ys, xs = np.mgrid[0:hi, 0:hi].astype(np.float32) / (size * SUPERSAMPLE)
    ys, xs = ys - pad / size, xs - pad / size
    pick = list(range(frames)) if pick is None else pick
    out = np.empty((len(pick), size, size, 3), np.uint8)
    for o, f in enumerate(pick):
        img = np.repeat(np.repeat(bg, SUPERSAMPLE, 0), SUPERSAMPLE, 1)
        for ent, a, body, mark in _shapes(scene, start, f / max(frames - 1, 1), xs, ys):
            colour = np.array(COLOURS[ent.colour], np.float32)
            img[body] = (1 - a) * img[body] + a * colour
            img[mark] = (1 - a) * img[mark] + a * 0.35 * colour
        img = img.reshape(hi // SUPERSAMPLE, SUPERSAMPLE, hi // SUPERSAMPLE, SUPERSAMPLE, 3).mean((1, 3))
        ox, oy = rng.integers(-pad, pad + 1, 2) if pad else (0, 0)
        img = img[pad + oy: pad + oy + size, pad + ox: pad + ox + size]
        if style.blur:
            img = gaussian_filter(img, (style.blur, style.blur, 0))
        img = img * np.array(style.cast, np.float32)
        if style.flicker:
            img = img * (1 + rng.uniform(-style.flicker, style.flicker))
        if style.noise:
            img = img + rng.normal(0, style.noise, img.shape)
        out[o] = np.clip(img, 0, 255).astype(np.uint8)
    return out
