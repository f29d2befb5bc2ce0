"""Importers for VideoCon's published CSVs (Bansal et al., 2023) into `Triplet` records.

- LLM entailment: source,videopath,caption,neg_caption,split,misalignment,youtube_key
- LLM feedback: source,videopath,caption,neg_caption,nle (the explanations of the negatives; joined
  into the entailment triplets on (videopath, caption, neg_caption) with `feedback=`)
- Human: video_url,caption,neg_caption,nle,hard (ActivityNet validation videos, a test set)

Video paths resolve against a root the user gives; a path that would leave it is refused, so a
CSV cannot point the pipeline at arbitrary files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

from synvita.data.records import MISALIGNMENTS, FieldError, ManifestError, Triplet
from synvita.errors import UnsafePathError
from synvita.utils import path_within, read_utf8

# VideoCon names its seven misalignments after the prompts that made them (OBJECT, ACTION,
# ATTRIBUTE, COUNTING, RELATION, HALLUCINATION, EVENT) and after the paper ("counting",
# "spatial relation", "event order flip(ping)"). Keys are lower-case letters only, so case,
# spaces, hyphens and underscores do not matter.
MISALIGNMENT_ALIASES = {
    "object": "object", "objects": "object",
    "action": "action", "actions": "action",
    "attribute": "attribute", "attributes": "attribute",
    "count": "count", "counting": "count",
    "relation": "relation", "relations": "relation", "spatialrelation": "relation",
    "hallucination": "hallucination",
    "flip": "flip", "event": "flip", "eventorder": "flip", "eventorderflip": "flip",
    "eventorderflipping": "flip", "eventflip": "flip",
}

log = logging.getLogger(__name__)

LLM_COLUMNS = ("source", "videopath", "caption", "neg_caption", "split", "misalignment")
FEEDBACK_COLUMNS = ("videopath", "caption", "neg_caption", "nle")
HUMAN_COLUMNS = ("video_url", "caption", "neg_caption", "nle", "hard")


def normalise_misalignment(name: str) -> str:
    key = re.sub(r"[^a-z]", "", name.lower())
    if key not in MISALIGNMENT_ALIASES:
        raise FieldError("misalignment", f"{name!r} is not a known VideoCon misalignment ({', '.join(MISALIGNMENTS)})")
    return MISALIGNMENT_ALIASES[key]


def resolve_video(root: str | os.PathLike, relpath: str) -> Path:
    """`root/relpath`, refusing any path that leaves `root` (`..`, absolute paths)."""
    if not relpath.strip():
        raise FieldError("video", "empty video path")
    try:
        return path_within(root, relpath)
    except UnsafePathError:
        raise FieldError("video", f"{relpath!r} escapes the video root {os.path.abspath(root)}") from None


def _rows(path: Path, required: tuple[str, ...]):
    """(line number, row) pairs; a missing column is reported on the header line."""
    with io.StringIO(read_utf8(path, "utf-8-sig"), newline="") as f:
        reader = csv.DictReader(f)
        for column in required:
            if column not in (reader.fieldnames or ()):
                raise ManifestError(f"{path}:1: {column}: missing column (header: {reader.fieldnames})")
        for row in reader:
            yield reader.line_num, row


def _import(path, make) -> list[Triplet]:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: CSV does not exist")
    return list(make(path))


def _with_line(path: Path, lineno: int, video_column: str, build):
    """Build a Triplet from a row; an invalid field is reported under its CSV column name."""
    try:
        return build()
    except FieldError as e:
        column = {"video": video_column, "negative": "neg_caption"}.get(e.field, e.field)
        raise ManifestError(f"{path}:{lineno}: {column}: {e.problem}") from e


def _triplet_id(seen: Counter, source: str, video: str) -> str:
    # The naming of VideoCon-derived clips: <source>_<video stem>_<nnn>, nnn counting per video.
    # Ids become file names, so other characters of the stem become "-" (VideoCon's own stems
    # have none: their ids do not change).
    source = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    stem = f"{source}_{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(video).stem)}"
    seen[stem] += 1
    return f"{stem}_{seen[stem]:03d}"


def read_llm_csv(csv_path: str | os.PathLike, video_root: str | os.PathLike,
                 feedback: str | os.PathLike | None = None) -> list[Triplet]:
    """VideoCon's LLM entailment CSV (its `nle` column is used when present); `feedback`, VideoCon's
    LLM feedback CSV, adds each negative's explanation (`nle`) by (videopath, caption, neg_caption)."""
    triplets = _import(csv_path, lambda path: _llm_rows(path, video_root))
    if feedback is None:
        return triplets
    if not Path(feedback).is_file():
        raise ManifestError(f"{feedback}: feedback CSV does not exist")
    explanations = {}
    for lineno, row in _rows(Path(feedback), FEEDBACK_COLUMNS):
        video = _with_line(Path(feedback), lineno, "videopath", lambda: str(resolve_video(video_root, row["videopath"])))
        explanations[video, row["caption"], row["neg_caption"]] = row["nle"]
    joined, count = [], 0
    for t in triplets:
        nle = explanations.get((t.video, t.caption, t.negative))
        if nle:
            t, count = dataclasses.replace(t, nle=nle), count + 1
        joined.append(t)
    (log.info if count else log.warning)("%s: joined %d explanations into %d triplets of %s", feedback, count,
                                         len(triplets), csv_path)
    return joined


def _llm_rows(path: Path, video_root):
    seen = Counter()
    for lineno, row in _rows(path, LLM_COLUMNS):
        yield _with_line(path, lineno, "videopath", lambda: Triplet(
            id=_triplet_id(seen, row["source"], row["videopath"]),
            video=str(resolve_video(video_root, row["videopath"])),
            caption=row["caption"],
            negative=row["neg_caption"],
            misalignment=normalise_misalignment(row["misalignment"]),
            source=row["source"],
            split=row["split"].strip().lower(),
            nle=row.get("nle") or None,
        ))


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise FieldError("hard", f"expected True or False, got {text!r}")
    return value == "true"


def read_human_csv(csv_path: str | os.PathLike, video_root: str | os.PathLike) -> list[Triplet]:
    """VideoCon-Human: `video_url` is a download link; its file name is looked up under the root."""

    def make(path):
        seen = Counter()
        for lineno, row in _rows(path, HUMAN_COLUMNS):
            name = Path(urlparse(row["video_url"]).path).name
            yield _with_line(path, lineno, "video_url", lambda: Triplet(
                id=_triplet_id(seen, "videocon-human", name),
                video=str(resolve_video(video_root, name)),
                caption=row["caption"],
                negative=row["neg_caption"],
                misalignment=None,
                source="videocon-human",
                split="test",
                nle=row["nle"] or None,
                hard=_parse_bool(row["hard"]),
            ))

    return _import(csv_path, make)
