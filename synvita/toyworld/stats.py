"""Uncertainty of the demo's numbers: a bootstrap over benchmark items, combined with the seed spread.

Items are videos (a VideoCon video with its captions, an SSv2 candidate clip, an ATP-Hard question):
a bootstrap replicate draws videos with replacement, each draw keeping all its rows, and recomputes
the benchmark's own metric (`synvita.evaluation.benchmarks.compute`) on it. Every predictions file
of one benchmark sees the same draws, so rows and seeds are compared on the same items (paired).

For a row trained with k seeds the estimate is the mean over seeds; its variance is the item part
(the replicates' variance of that mean: the items are shared by the seeds, so it does not shrink
with k) plus the seed part (the seeds' variance / k).
"""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from pathlib import Path

import numpy as np

from synvita.data.benchmarks import BENCHMARKS, load_pairs
from synvita.evaluation.benchmarks import compute, join, read_predictions


def replicates(benchmark: str, annotations: Path, predictions: list[Path], key: str, reps: int = 200,
               seed: int = 0) -> np.ndarray:
    """(reps, len(predictions)): `key` of `benchmark` on `reps` bootstrap draws of its videos."""
    spec = BENCHMARKS.get(benchmark)
    pairs = load_pairs(benchmark, annotations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = [join(pairs, read_predictions(p), spec.drop_duplicates).scores for p in predictions]
    by_video: dict[str, list] = {}
    for p in pairs:
        by_video.setdefault(p.video, []).append(p)
    videos = sorted(by_video)
    # A resample has other group sizes than the published file: keep every group as drawn.
    loose = dataclasses.replace(spec, group_size=None)
    rng = np.random.default_rng(seed)
    out = np.empty((reps, len(predictions)))
    for r in range(reps):
        draw = rng.integers(0, len(videos), len(videos))
        drawn, keys = [], []
        for k, v in enumerate(draw):
            for p in by_video[videos[v]]:
                # each draw is its own video (and its own question): a twice-drawn video counts twice
                drawn.append(dataclasses.replace(p, video=f"{p.video}#{k}",
                                                 group=p.group if spec.groups_span_videos else f"{p.group}#{k}"))
                keys.append((p.video, p.caption))
        for j, s in enumerate(scores):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = {(d.video, d.caption): s[key_] for d, key_ in zip(drawn, keys) if key_ in s}
                out[r, j] = compute(loose, drawn, found)[key]
    return out


@dataclasses.dataclass
class Estimate:
    mean: float
    se: float
    n: int  # seeds
    se_items: float
    se_seeds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def seed_mean(points: list[float], reps: np.ndarray) -> Estimate:
    """The mean over seeds of `points` (one per seed), with `reps` (reps, seeds) its bootstrap replicates."""
    k = len(points)
    se_items = float(np.std(reps.mean(1), ddof=1))
    se_seeds = statistics.stdev(points) / k ** 0.5 if k > 1 else 0.0
    return Estimate(statistics.mean(points), (se_items ** 2 + se_seeds ** 2) ** 0.5, k, se_items, se_seeds)


def paired_difference(a: list[float], reps_a: np.ndarray, b: list[float], reps_b: np.ndarray) -> Estimate:
    """mean(a) - mean(b) over seeds; replicates on the same draws, so shared item noise cancels."""
    diff = reps_a.mean(1) - reps_b.mean(1)
    se_items = float(np.std(diff, ddof=1))
    var_seeds = sum(statistics.variance(x) / len(x) for x in (a, b) if len(x) > 1)
    return Estimate(statistics.mean(a) - statistics.mean(b), (se_items ** 2 + var_seeds) ** 0.5,
                    min(len(a), len(b)), se_items, var_seeds ** 0.5)
