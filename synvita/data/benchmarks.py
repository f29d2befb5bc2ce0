"""The benchmark registry: everything that defines a benchmark, in one entry per benchmark.

An entry names its published files (with the columns their header must have), where they are
downloaded from, the reader that turns them into `Pair`s, the metric kind the harness computes
(`entailment`, `retrieval`, `qa`), the group size the published scripts require, and the main
metric with its display name. `synvita data download`, the evaluation harness, the report and the
toy world's demo all read `BENCHMARKS`, so a new benchmark is one `BENCHMARKS.register(...)`.

Every benchmark becomes a list of `Pair`s: one (video, caption) to score with its label and, for
retrieval and QA, the query or question it belongs to. `video` and `text` are kept exactly as the
annotation file spells them: predictions are written with them, so VideoCon's own scripts can read
our predictions, and predictions are joined back on (video, description).
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from synvita.data.videocon import read_human_csv, read_llm_csv
from synvita.errors import SynvitaError
from synvita.registry import Registry
from synvita.text.prompts import ENTAIL_QUESTION, slot_pattern
from synvita.utils import read_utf8

# VideoCon embeds the description in the full mPLUG-Owl prompt; the description is what is scored.
_DESCRIPTION = slot_pattern(ENTAIL_QUESTION)

VIDEOCON_GITHUB = "https://raw.githubusercontent.com/Hritikbansal/videocon/main/datasets"


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    revision: str = "main"


VIDEOCON_HF = HubDataset("videocon/videocon")


@dataclass(frozen=True)
class Pair:
    video: str  # the video path as published (join key)
    text: str  # the caption field as published (the full prompt for SSv2 and ATP-Hard)
    caption: str  # the description the model is asked about
    label: int  # entailment, retrieval: 1 = entailed / relevant; QA: the `answer` position
    group: str = ""  # retrieval: the query; QA: video + question
    subset: str = ""  # VideoCon-Human: "hard"; ATP-Hard: the question type's first letter


@dataclass(frozen=True)
class BenchmarkFile:
    name: str  # as published, inside --annotations
    columns: tuple[str, ...]  # what its header must have (a download is checked against it)


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Literal["entailment", "retrieval", "qa"]  # which metrics the harness computes
    files: tuple[BenchmarkFile, ...] = ()  # the files `reader` takes, in its argument order
    reader: Callable[..., list[Pair]] | None = None  # reader(*paths of `files`) -> pairs
    metric: str | None = None  # the main metric's key in the harness output
    metric_name: str | None = None  # its display name, e.g. "VideoCon-LLM AUC"
    source: str | HubDataset | None = None  # GitHub base URL or hub dataset; None: no download
    extra_files: tuple[BenchmarkFile, ...] = ()  # published and downloaded beside `files`, not read
    group_size: int | None = None  # candidates a query/question must have, as the published scripts
    drop_duplicates: bool = True  # whether the published script drops repeated prediction rows

    @property
    def groups_span_videos(self) -> bool:
        """A retrieval query ranks many videos; a QA question belongs to one video."""
        return self.kind == "retrieval"


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
    spec = BENCHMARKS.get(benchmark)
    files = [Path(annotations) / f.name for f in spec.files]
    for f in files:
        if not f.is_file():
            raise SynvitaError(f"{f}: {benchmark} needs this published file in --annotations")
    return spec.reader(*files)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", required=("reader", "metric", "metric_name"))

_SSV2 = ("videopath", "caption", "match")
# Registered in the paper's table order, which the report keeps.
for _entry in (
    Benchmark("videocon-llm", "entailment",
              (BenchmarkFile("videocon_llm_entailment.csv",
                             ("source", "videopath", "caption", "neg_caption", "misalignment")),),
              read_videocon_llm, "auc", "VideoCon-LLM AUC", VIDEOCON_HF,
              (BenchmarkFile("videocon_llm_feedback.csv", ("source", "videopath", "caption", "neg_caption", "nle")),)),
    Benchmark("videocon-human", "entailment",
              (BenchmarkFile("videocon_human.csv", ("video_url", "caption", "neg_caption", "hard")),),
              read_videocon_human, "auc_hard", "Human-Hard AUC", VIDEOCON_HF),
    Benchmark("ssv2-temporal", "retrieval", (BenchmarkFile("eval_ssv2_temporal.csv", _SSV2),), read_ssv2,
              "mAP", "SSv2-Temporal mAP", VIDEOCON_GITHUB, group_size=216, drop_duplicates=False),
    Benchmark("ssv2-events", "retrieval", (BenchmarkFile("eval_ssv2_events.csv", _SSV2),), read_ssv2,
              "mAP", "SSv2-Events mAP", VIDEOCON_GITHUB, group_size=588, drop_duplicates=False),
    Benchmark("atp-hard", "qa",
              (BenchmarkFile("eval-nextqa-atphard.csv", ("videopath", "question", "answer", "option", "caption")),
               BenchmarkFile("nextqa-atphard.csv", ("video", "question", "answer", "type"))),
              read_atp_hard, "accuracy", "ATP-Hard acc", VIDEOCON_GITHUB,
              (BenchmarkFile("nextqa-atphard-statements.csv", ("s0", "s4")),), group_size=5),
):
    BENCHMARKS.register(_entry.name, _entry)
