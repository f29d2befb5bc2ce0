"""Typed records and their JSON Lines manifests.

Every record validates itself on construction, so a bad value is caught where it is made and,
when read from a manifest, reported as `file:line: field: problem`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import re
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from synvita.errors import SynvitaError
from synvita.utils import append_line, atomic_write_text, read_utf8

Misalignment = Literal["action", "attribute", "object", "count", "relation", "flip", "hallucination"]
MISALIGNMENTS: tuple[str, ...] = typing.get_args(Misalignment)


class ManifestError(SynvitaError):
    """A manifest line that does not hold a valid record: `file:line: field: problem`."""


class FieldError(SynvitaError):
    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


def _type_problem(value, hint) -> str | None:
    """Why `value` does not match the annotation `hint`, or None when it does."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        return None if None in problems else " or ".join(p for p in problems if p)
    if hint is type(None):
        return None if value is None else "expected null"
    if origin is Literal:
        return None if value in args else f"{value!r} is not one of {', '.join(map(str, args))}"
    if origin is list:
        if not isinstance(value, list):
            return f"expected a list, got {type(value).__name__}"
        for i, item in enumerate(value):
            if problem := _type_problem(item, args[0]):
                return f"item {i}: {problem}"
        return None
    if hint is dict:
        return None if isinstance(value, dict) else f"expected an object, got {type(value).__name__}"
    # JSON has no int/bool distinction in Python's eyes (bool is an int): keep them apart.
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return f"{value} is not a finite number"
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return None if ok else f"expected {hint.__name__}, got {type(value).__name__} {value!r}"


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


class _Record:
    # A field no two records of one manifest may share (journals, where the last line wins, have none).
    unique: typing.ClassVar[str | None] = None

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            if problem := _type_problem(getattr(self, f.name), hints[f.name]):
                raise FieldError(f.name, problem)
        self.check()

    def check(self) -> None:
        """Rules across fields, beyond the types."""


# Ids become file names (clips/<generator>/<triplet id>_001.mp4): a safe character set, starting with
# a letter or digit, keeps every path made from one inside its run directory.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def id_problem(value: str, parts: int = 1) -> str | None:
    """Why `value` is not a safe id, or (parts=2) two joined by one "/" (`generator/name`); None if it is."""
    pieces = value.split("/")
    if len(pieces) <= parts and all(_SAFE_ID.fullmatch(p) for p in pieces):
        return None
    shape = "a safe id" if parts == 1 else "a safe id or <safe id>/<safe id>"
    return (f"{value!r} is not {shape} (letters, digits, '.', '_', '-', starting with a letter or digit, "
            "at most 200 characters)")


def _safe_ids(record, *names: str, parts: int = 1) -> None:
    for name in names:
        if problem := id_problem(getattr(record, name), parts):
            raise FieldError(name, problem)


def _nonempty(record, *names: str) -> None:
    for name in names:
        if not getattr(record, name).strip():
            raise FieldError(name, "must not be empty")


@dataclass
class Triplet(_Record):
    """A real video with its caption t^r and a hard negative t^s."""

    unique = "id"

    id: str
    video: str
    caption: str
    negative: str
    # None where the source does not annotate the type (VideoCon-Human).
    misalignment: Misalignment | None
    source: str
    split: str
    nle: str | None = None
    hard: bool | None = None

    def check(self):
        _nonempty(self, "id", "video", "caption", "negative")
        _safe_ids(self, "id")

    def rendered_by(self, clip: SyntheticClip) -> bool:
        """Whether `clip` was made for this triplet's negative (an id alone can be reused or mistyped)."""
        return clip.triplet_id == self.id and clip.caption.strip() == self.negative.strip()


@dataclass
class SyntheticClip(_Record):
    """A text-to-video clip generated for a triplet's negative caption t^s."""

    id: str
    triplet_id: str
    caption: str
    generator: str
    seed: int
    path: str
    status: Literal["done", "failed"]
    settings: dict = field(default_factory=dict)
    num_frames: int | None = None
    error: str | None = None
    elapsed: float | None = None
    versions: dict = field(default_factory=dict)

    def check(self):
        _nonempty(self, "id", "triplet_id", "caption", "generator")
        _safe_ids(self, "triplet_id", "generator")
        _safe_ids(self, "id", parts=2)
        if self.status == "done" and not self.path:
            raise FieldError("path", "a done clip needs a path")
        if self.status == "failed" and not self.error:
            raise FieldError("error", "a failed clip needs an error message")


@dataclass
class ScoreRow(_Record):
    """Per-frame P(Yes) of one VQA member for one clip and one caption."""

    clip_id: str
    member: str
    role: Literal["target", "real"]
    caption: str
    frames: list[int]
    p_yes: list[float]

    def check(self):
        _safe_ids(self, "clip_id", parts=2)
        if len(self.frames) != len(self.p_yes) or not self.frames:
            raise FieldError("p_yes", f"needs one value per frame ({len(self.frames)} frames, {len(self.p_yes)} values)")
        for i, p in enumerate(self.p_yes):
            if not 0.0 <= p <= 1.0:
                raise FieldError("p_yes", f"item {i}: {p} is not a probability in [0, 1]")


@dataclass
class WeightRow(_Record):
    """A scored clip: ensemble alignment f̄ to its target caption t^s and to the real caption t^r,
    each member's scores, and the clip's weight under every weighting strategy. A clip without a
    triplet (an imported one) has no real caption: f_real is null, and training treats it as unscored."""

    clip_id: str
    triplet_id: str
    generator: str
    misalignment: Misalignment | None
    f_target: float
    f_real: float | None
    members: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    unique = "clip_id"

    @property
    def gap(self) -> float | None:
        """f̄(V^s,t^s) − f̄(V^s,t^r), unclipped (the Fig. 5.2 statistic); None without a real caption."""
        return None if self.f_real is None else self.f_target - self.f_real

    def check(self):
        _safe_ids(self, "clip_id", parts=2)
        _safe_ids(self, "triplet_id")


@dataclass
class Failure(_Record):
    """An item (a clip, a video) a job could not process: journaled so the job goes on; rerunning
    the job retries it."""

    item: str
    error: str


R = TypeVar("R", Triplet, SyntheticClip, ScoreRow, WeightRow, Failure)


def _from_json(cls: type[R], obj) -> R:
    if not isinstance(obj, dict):
        raise FieldError("(record)", f"expected a JSON object, got {type(obj).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in obj:
        if key not in fields:
            raise FieldError(key, f"unknown field for {cls.__name__}")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in obj:
            raise FieldError(name, "missing")
    return cls(**obj)


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line of a JSON Lines file.

    An unterminated last line that does not parse is what a killed writer leaves: it is dropped
    with a warning naming the file. Any other invalid line is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest does not exist")
    rows = []
    with io.StringIO(read_utf8(path)) as f:  # splits at "\n" only, as JSON Lines does
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):  # only the last line can lack one
                    warnings.warn(f"{path}:{lineno}: dropped an unterminated last line (a killed or "
                                  "disk-full writer left it)")
                    break
                raise ManifestError(f"{path}:{lineno}: (line): invalid JSON ({e.msg} at column {e.colno})") from e
    return rows


def read_manifest(path: str | os.PathLike, cls: type[R]) -> list[R]:
    """All records of a JSON Lines manifest, validated; blank lines are skipped."""
    records, seen = [], {}
    for lineno, obj in read_jsonl(path):
        try:
            records.append(_from_json(cls, obj))
        except FieldError as e:
            raise ManifestError(f"{path}:{lineno}: {e.field}: {e.problem}") from e
        if cls.unique:
            key = getattr(records[-1], cls.unique)
            if key in seen:
                raise ManifestError(f"{path}:{lineno}: {cls.unique}: {key!r} is already on line {seen[key]}; "
                                    "ids must be unique")
            seen[key] = lineno
    return records


def _line(record) -> str:
    if not isinstance(record, _Record):
        raise TypeError(f"not a manifest record: {type(record).__name__}")
    return json.dumps(asdict(record), ensure_ascii=False) + "\n"


def write_manifest(path: str | os.PathLike, records) -> None:
    atomic_write_text(Path(path), "".join(_line(r) for r in records))


def append_record(path: str | os.PathLike, record) -> None:
    """Append one record as one line, all or nothing (see `append_line`)."""
    append_line(path, _line(record))


def manifest_dataset(path: str | os.PathLike, cls: type[R]):
    """A validated manifest as a `datasets.Dataset`; dict fields are kept as JSON strings,
    since free-form settings would otherwise need one Arrow schema across all rows."""
    import datasets  # imported here: it takes a second and most callers never need it

    dict_fields = [f.name for f in dataclasses.fields(cls) if f.type in ("dict", dict)]
    rows = []
    for record in read_manifest(path, cls):
        row = asdict(record)
        for name in dict_fields:
            row[name] = json.dumps(row[name], sort_keys=True)
        rows.append(row)
    return datasets.Dataset.from_list(rows)
