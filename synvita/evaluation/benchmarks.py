"""Predictions files, their join with a benchmark's pairs, and the benchmark's metrics.

What a benchmark is (files, reader, metric kind, group size) is its entry in
`synvita.data.benchmarks.BENCHMARKS`; this module scores the pairs it reads.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from synvita.data.benchmarks import BENCHMARKS, Benchmark, Pair, description
from synvita.errors import SynvitaError
from synvita.evaluation import metrics
from synvita.utils import read_utf8


def locate_video(root: str | Path, video: str) -> Path:
    """The local file for a published video path: the longest tail of it that exists under root.

    Published paths are relative (`videos/1.avi`), absolute on the authors' machine
    (`/local2/.../NExTVideo/1106/1.mp4`) or URLs; one rule finds all of them under --video-root.
    """
    root = Path(root)
    parts = [p for p in PurePosixPath(video).parts if p not in ("/", "", ".")]
    if ".." in parts:
        raise SynvitaError(f"{video}: refusing a video path with '..'")
    for i in range(len(parts)):
        candidate = root.joinpath(*parts[i:])
        if candidate.is_file():
            return candidate
    raise SynvitaError(f"{video}: not found under {root} (tried every tail of the path)")


@dataclass(frozen=True)
class Prediction:
    video: str
    text: str
    score: float


def read_predictions(path: str | Path) -> list[Prediction]:
    """VideoCon's header-less `videopath,caption,entailment[,pos,neg]` CSV (also what we write).

    A header row naming `videopath` is skipped, so a headered export reads too.
    """
    path = Path(path)
    out = []
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.reader(f)
        start = 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if line == 1 and row[:1] == ["videopath"]:
                continue
            if len(row) not in (3, 5):
                raise SynvitaError(f"{path}:{line}: expected videopath,caption,entailment[,pos,neg], got {len(row)} fields")
            try:
                score = float(row[2])
            except ValueError:
                raise SynvitaError(f"{path}:{line}: entailment: not a number: {row[2]!r}") from None
            if not math.isfinite(score):
                raise SynvitaError(f"{path}:{line}: entailment: {row[2]!r} is not a finite number")
            out.append(Prediction(row[0], row[1], score))
    return out


@dataclass
class Joined:
    scores: dict[tuple[str, str], float]  # (video, description) -> score, for annotated pairs
    counts: dict[str, int]


def join(pairs: list[Pair], predictions: list[Prediction], drop_duplicates: bool = True) -> Joined:
    """Scores of the annotated pairs, keyed by (video, description); counts what did not join.

    A pair predicted more than once (with different scores, or at all when `drop_duplicates` is
    off: calc_ssv2.py does not drop exact duplicate rows, eval_atphard.py does) gets no score, so
    its query or question has the wrong candidate count and is left out, as in the published
    scripts, where the merge multiplies its rows.
    """
    wanted = {(p.video, p.caption) for p in pairs}
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    unjoined = 0
    for pred in predictions:
        key = (pred.video, description(pred.text))
        if key not in wanted:
            unjoined += 1
        elif not (drop_duplicates and pred.score in found[key]):
            found[key].append(pred.score)
    scores = {k: v[0] for k, v in found.items() if len(v) == 1}
    counts = {
        "annotation_pairs": len(wanted),
        "prediction_rows": len(predictions),
        "joined_pairs": len(scores),
        "annotations_unjoined": len(wanted) - len(found),
        "predictions_unjoined": unjoined,
        "pairs_predicted_repeatedly": len(found) - len(scores),
    }
    if counts["annotations_unjoined"] or unjoined:
        warnings.warn(
            f"{counts['annotations_unjoined']} annotated pairs have no prediction and {unjoined} "
            "prediction rows match no annotated pair (joined on video path and caption)",
            stacklevel=2,
        )
    if counts["pairs_predicted_repeatedly"]:
        warnings.warn(
            f"{counts['pairs_predicted_repeatedly']} pairs have more than one prediction row "
            f"({'with different scores' if drop_duplicates else 'counted as the merge counts them'}) "
            "and are left out",
            stacklevel=2,
        )
    return Joined(scores, counts)


def _complete_groups(pairs: list[Pair], scores: dict, size: int | None, what: str):
    """Groups with exactly `size` scored candidates (any number when None); the published scripts
    drop the others."""
    groups: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        if (p.video, p.caption) in scores:
            groups[p.group].append(p)
    all_groups = {p.group for p in pairs}
    kept = {g: members for g, members in groups.items() if size is None or len(members) == size}
    dropped = len(all_groups) - len(kept)
    if dropped:
        warnings.warn(
            f"{dropped} {what} do not have exactly {size} scored candidates and are left out, "
            "as the published script does",
            stacklevel=4,
        )
    return kept, dropped


def compute(benchmark: str | Benchmark, pairs: list[Pair], scores: dict[tuple[str, str], float]) -> dict:
    """The benchmark's metrics (percent) and counts from joined scores.

    `benchmark` is a registered name or an ad-hoc `Benchmark` (the HF `evaluate` metrics pass one).
    """
    spec = BENCHMARKS.get(benchmark) if isinstance(benchmark, str) else benchmark
    return _METRICS[spec.kind](spec, pairs, scores)


def _retrieval(spec: Benchmark, pairs: list[Pair], scores: dict) -> dict:
    groups, dropped = _complete_groups(pairs, scores, spec.group_size, "queries")
    queries = []
    # calc_ssv2.py takes queries in caption order (so its float sum matches to the last digit)
    # and candidates in videopath order (which decides the unstable sort's tie order).
    for _, members in sorted(groups.items(), key=lambda g: g[1][0].text):
        members = sorted(members, key=lambda p: p.video)
        queries.append(([p.label for p in members], [scores[p.video, p.caption] for p in members]))
    out = metrics.retrieval_metrics(queries)
    out["counts"]["queries_dropped"] = dropped
    return out


def _qa(spec: Benchmark, pairs: list[Pair], scores: dict) -> dict:
    groups, dropped = _complete_groups(pairs, scores, spec.group_size, "questions")
    questions = [
        ([scores[p.video, p.caption] for p in members], members[0].label, members[0].subset)
        for members in groups.values()
    ]
    out = metrics.qa_accuracy(questions)
    out["counts"]["questions_dropped"] = dropped
    return out


def _entailment(spec: Benchmark, pairs: list[Pair], scores: dict) -> dict:
    labels: dict[tuple[str, str], set[int]] = defaultdict(set)
    hard: set[tuple[str, str]] = set()
    for p in pairs:
        labels[p.video, p.caption].add(p.label)
        if p.subset == "hard":
            hard.add((p.video, p.caption))
    conflicting = {k for k, v in labels.items() if len(v) > 1}
    if conflicting:
        warnings.warn(f"{len(conflicting)} pairs are both a positive and a negative and are left out", stacklevel=3)
    keys = [k for k in labels if k in scores and k not in conflicting]
    out = {"auc": metrics.roc_auc([min(labels[k]) for k in keys], [scores[k] for k in keys])}
    hard_keys = [k for k in keys if k in hard]
    if hard:
        hard_labels = [min(labels[k]) for k in hard_keys]
        if len(set(hard_labels)) == 2:
            out["auc_hard"] = metrics.roc_auc(hard_labels, [scores[k] for k in hard_keys])
        else:
            out["auc_hard"] = None
            warnings.warn("auc_hard: the scored hard pairs are not both positive and negative", stacklevel=3)
    out["counts"] = {"pairs": len(keys), "pairs_hard": len(hard_keys), "pairs_conflicting": len(conflicting)}
    return out


def retrieval_from_rows(query_ids, candidate_ids, labels, scores, group_size: int | None = None) -> dict:
    """Retrieval metrics from flat rows, one per (query, candidate); candidates are ranked from
    the order of their ids, as the published script orders them by video path."""
    pairs = [Pair(c, q, q, int(y), group=q) for q, c, y in zip(query_ids, candidate_ids, labels, strict=True)]
    found = {(p.video, p.caption): float(s) for p, s in zip(pairs, scores, strict=True)}
    if len(found) != len(pairs):
        raise ValueError("a (query id, candidate id) pair occurs more than once")
    return compute(Benchmark("rows", "retrieval", group_size=group_size), pairs, found)


def qa_from_rows(question_ids, question_types, labels, scores, group_size: int | None = None) -> dict:
    """QA accuracy from flat rows, one per option in order, `labels` 1 on the correct option."""
    position: dict[str, int] = defaultdict(int)
    answer: dict[str, int] = {}
    rows = []
    for q, y in zip(question_ids, labels, strict=True):
        if y:
            answer.setdefault(q, position[q])
        rows.append((q, position[q]))
        position[q] += 1
    pairs = [Pair(q, str(i), str(i), answer.get(q, -1), group=q, subset=t[:1].upper())
             for (q, i), t in zip(rows, question_types, strict=True)]
    found = {(p.video, p.caption): float(s) for p, s in zip(pairs, scores, strict=True)}
    return compute(Benchmark("rows", "qa", group_size=group_size), pairs, found)


# Metric kind -> how the harness computes it from a benchmark's joined scores.
_METRICS = {"entailment": _entailment, "retrieval": _retrieval, "qa": _qa}
