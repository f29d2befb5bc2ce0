"""The benchmark files as their authors publish them, predictions files, and the join of the two.

Every benchmark becomes a list of `Pair`s: one (video, caption) to score with its label and, for
retrieval and QA, the query or question it belongs to. `video` and `text` are kept exactly as the
annotation file spells them: predictions are written with them, so VideoCon's own scripts can read
our predictions, and predictions are joined back on (video, description).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from synvita.data.videocon import read_human_csv, read_llm_csv
from synvita.errors import SynvitaError
from synvita.evaluation import metrics
from synvita.utils import read_utf8

# VideoCon embeds the description in the full mPLUG-Owl prompt; the description is what is scored.
_DESCRIPTION = re.compile(r'Does this video entail the description: "(.*)"\?', re.S)


@dataclass(frozen=True)
class Pair:
    video: str  # the video path as published (join key)
    text: str  # the caption field as published (the full prompt for SSv2 and ATP-Hard)
    caption: str  # the description the model is asked about
    label: int  # entailment, retrieval: 1 = entailed / relevant; QA: the `answer` position
    group: str = ""  # retrieval: the query; QA: video + question
    subset: str = ""  # VideoCon-Human: "hard"; ATP-Hard: the question type's first letter


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # "entailment" | "retrieval" | "qa"
    files: tuple[str, ...]  # inside --annotations
    group_size: int | None = None  # candidates a query/question must have, as the published scripts
    drop_duplicates: bool = True  # whether the published script drops repeated prediction rows


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("videocon-llm", "entailment", ("videocon_llm_entailment.csv",)),
        Benchmark("videocon-human", "entailment", ("videocon_human.csv",)),
        Benchmark("ssv2-temporal", "retrieval", ("eval_ssv2_temporal.csv",), 216, drop_duplicates=False),
        Benchmark("ssv2-events", "retrieval", ("eval_ssv2_events.csv",), 588, drop_duplicates=False),
        Benchmark("atp-hard", "qa", ("eval-nextqa-atphard.csv", "nextqa-atphard.csv"), 5),
    )
}


def description(text: str) -> str:
    """The description inside a VideoCon prompt, or the text itself when it is a bare caption."""
    match = _DESCRIPTION.search(text)
    return match.group(1) if match else text


def _records(path: Path, required: tuple[str, ...]):
    """(line, row dict) for each CSV record; line is where the record starts (fields span lines)."""
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise SynvitaError(f"{path}: missing column(s) {', '.join(missing)}; has {reader.fieldnames}")
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def _int_field(path: Path, line: int, row: dict, field: str) -> int:
    try:
        return int(row[field])
    except (TypeError, ValueError):
        raise SynvitaError(f"{path}:{line}: {field}: not an integer: {row[field]!r}") from None


def read_ssv2(path: str | Path) -> list[Pair]:
    """SSv2-Temporal / SSv2-Events: `videopath,caption,match`; each caption is one query."""
    path = Path(path)
    pairs = []
    for line, row in _records(path, ("videopath", "caption", "match")):
        caption = description(row["caption"])
        label = _int_field(path, line, row, "match")
        pairs.append(Pair(row["videopath"], row["caption"], caption, label, group=caption))
    return pairs


def read_atp_hard(eval_csv: str | Path, nextqa_csv: str | Path) -> list[Pair]:
    """ATP-Hard: `videopath,question,answer,option,caption` rows, typed by nextqa-atphard.csv.

    As eval_atphard.py: exact duplicate rows count once, a question is (videopath, question), its
    options keep file order and `answer` (the pair's label) is a position in that order among the
    scored options; the type is looked up by (video id = file stem, question), the last row winning.
    """
    eval_csv, nextqa_csv = Path(eval_csv), Path(nextqa_csv)
    types = {
        (row["video"], row["question"]): row["type"]
        for _, row in _records(nextqa_csv, ("video", "question", "type"))
    }
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    seen = set()
    for line, row in _records(eval_csv, ("videopath", "question", "answer", "option", "caption")):
        key = tuple(row.values())
        if key not in seen:
            seen.add(key)
            groups[row["videopath"], row["question"]].append((line, row))
    pairs = []
    for (video, question), rows in groups.items():
        line = rows[0][0]
        qtype = types.get((PurePosixPath(video).stem, question))
        if not qtype:
            raise SynvitaError(f"{eval_csv}:{line}: no type for this question in {nextqa_csv}: {question!r}")
        for line, row in rows:
            pairs.append(
                Pair(video, row["caption"], description(row["caption"]),
                     _int_field(eval_csv, line, row, "answer"),
                     group=f"{video}\x1f{question}", subset=qtype[:1].upper())
            )
    return pairs


def _videocon_pairs(triplets, root: Path) -> list[Pair]:
    pairs = []
    for t in triplets:
        # The join key is the path relative to the root, so it does not depend on where videos live.
        video = os.path.relpath(t.video, root)
        subset = "hard" if t.hard else ""
        pairs.append(Pair(video, t.caption, t.caption, 1, subset=subset))
        pairs.append(Pair(video, t.negative, t.negative, 0, subset=subset))
    return pairs


def read_videocon_llm(path: str | Path, split: str = "test") -> list[Pair]:
    """VideoCon LLM entailment CSV: the caption (1) and neg_caption (0) of each row of `split`."""
    root = Path.cwd()
    return _videocon_pairs([t for t in read_llm_csv(path, root) if t.split == split], root)


def read_videocon_human(path: str | Path) -> list[Pair]:
    """VideoCon-Human: caption (1) and neg_caption (0) per row; `hard` rows form Human-Hard.

    Its videos are keyed by the file name of `video_url`, as the data importer looks them up.
    """
    root = Path.cwd()
    return _videocon_pairs(read_human_csv(path, root), root)


def load_pairs(benchmark: str, annotations: str | Path) -> list[Pair]:
    """The pairs of a benchmark from the published files in the `annotations` folder."""
    spec = BENCHMARKS[benchmark]
    files = [Path(annotations) / name for name in spec.files]
    for f in files:
        if not f.is_file():
            raise SynvitaError(f"{f}: {benchmark} needs this published file in --annotations")
    if spec.kind == "retrieval":
        return read_ssv2(files[0])
    if spec.kind == "qa":
        return read_atp_hard(*files)
    if benchmark == "videocon-llm":
        return read_videocon_llm(files[0])
    return read_videocon_human(files[0])


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
            stacklevel=3,
        )
    return kept, dropped


def compute(benchmark: str | Benchmark, pairs: list[Pair], scores: dict[tuple[str, str], float]) -> dict:
    """The benchmark's metrics (percent) and counts from joined scores.

    `benchmark` is a name or an ad-hoc `Benchmark` (the HF `evaluate` metrics pass one).
    """
    spec = BENCHMARKS[benchmark] if isinstance(benchmark, str) else benchmark
    if spec.kind == "entailment":
        return _entailment(pairs, scores)
    if spec.kind == "retrieval":
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
    groups, dropped = _complete_groups(pairs, scores, spec.group_size, "questions")
    questions = [
        ([scores[p.video, p.caption] for p in members], members[0].label, members[0].subset)
        for members in groups.values()
    ]
    out = metrics.qa_accuracy(questions)
    out["counts"]["questions_dropped"] = dropped
    return out


def _entailment(pairs: list[Pair], scores: dict) -> dict:
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
    return compute(Benchmark("rows", "retrieval", (), group_size), pairs, found)


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
    return compute(Benchmark("rows", "qa", (), group_size), pairs, found)
