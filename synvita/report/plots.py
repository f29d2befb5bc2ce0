"""Figures and thumbnails for the report, returned as data: URIs so the page needs no other file."""

from __future__ import annotations

import base64
import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return _uri(buf.getvalue(), "image/png")


def gif_uri(frames: np.ndarray, width: int, fps: float = 4.0) -> str:
    """An animated GIF thumbnail, `width` pixels wide, looping forever."""
    height = max(2, round(frames.shape[1] * width / frames.shape[2]))
    images = [Image.fromarray(f).resize((width, height), Image.Resampling.BILINEAR) for f in frames]
    # One palette for all frames: no colour flicker, and about a third smaller than one per frame.
    sheet = Image.new("RGB", (width, height * len(images)))
    for i, image in enumerate(images):
        sheet.paste(image, (0, i * height))
    palette = sheet.quantize(128, method=Image.Quantize.MEDIANCUT)
    images = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, optimize=True)
    return _uri(buf.getvalue(), "image/gif")


def gap_figure(gaps: dict[tuple[str, str], np.ndarray]):
    """Histograms of f̄(V^s,t^s) − f̄(V^s,t^r), one panel per misalignment, one colour per generator."""
    kinds = sorted({k for k, _ in gaps})
    generators = sorted({g for _, g in gaps})
    cols = min(4, len(kinds))
    rows = -(-len(kinds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False, sharex=True)
    bins = np.linspace(-1, 1, 21)
    colours = dict(zip(generators, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, kind in zip(axes.flat, kinds):
        for gen in generators:
            values = gaps.get((kind, gen))
            if values is None:
                continue
            below = float(np.mean(values < 0))
            ax.hist(values, bins=bins, alpha=0.55, color=colours[gen], label=f"{gen} ({below:.0%} < 0)")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(kind, fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes.flat[len(kinds):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(r"gap $\bar f(V^s,t^s) - \bar f(V^s,t^r)$", fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(rows: list[dict], title: str):
    """Loss terms and weight statistics over steps, from metrics.jsonl rows."""
    series = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                series[key].append((row["step"], value))
    fig, (losses, weights) = plt.subplots(1, 2, figsize=(10, 3.2))
    for key in ("loss", "loss_real", "loss_syn", "loss_scr"):
        if series[key]:
            losses.plot(*zip(*series[key]), label=key, lw=1.4 if key == "loss" else 1)
    losses.set_xlabel("step")
    losses.set_title(f"{title}: losses", fontsize=10)
    losses.legend(fontsize=8, frameon=False)
    if series["w_min"] and series["w_max"]:
        steps, low = zip(*series["w_min"])
        weights.fill_between(steps, low, [v for _, v in series["w_max"]], alpha=0.2, label="w min–max")
    for key in ("w_mean", "w_zero_share"):
        if series[key]:
            weights.plot(*zip(*series[key]), label=key)
    weights.set_xlabel("step")
    weights.set_title(f"{title}: weights of synthetic clips", fontsize=10)
    weights.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
