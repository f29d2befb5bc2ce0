"""The job layer every long stage stands on: shards, per-worker journals, merge, resume, failures and
the done/skipped/failed summary, and the command line of a job.

A job's work is a sorted list of items, split first by `--shard i/N` (across the jobs of a SLURM
array) and then across the processes of `accelerate launch`. Each worker (a shard x process pair)
appends its outcomes, one flushed record per item, to its own journal `<folder>/<worker>.jsonl`, so
no two processes ever write one file and a SIGKILL loses at most the item in flight. Reading every
journal back is both the merge (anyone may do it, at any time) and the resume (a rerun does only
the items no journal holds as done). Items a worker could not process are journaled as `Failure`
records and retried by the next run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, Hashable, TypeVar

from synvita.data.records import Failure, append_record, read_manifest
from synvita.errors import failure_message, run_command

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r} is not of the form i/N") from None
    if not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= i < N")
    return i, n


def process_state():
    """Accelerate's process state; on a machine without GPUs (or with ACCELERATE_USE_CPU=true) the
    processes of `accelerate launch` form a gloo group, which PartialState only does when told `cpu`."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def split_work(items: list[T], shard: tuple[int, int], process: tuple[int, int]) -> list[T]:
    """This worker's share: every N-th item for the shard, then every P-th for the process."""
    (i, n), (r, p) = shard, process
    return items[i::n][r::p]


def journal_path(folder: str | os.PathLike, shard: str, process: tuple[int, int], prefix: str = "") -> Path:
    """The journal of one worker: `<folder>/<prefix>shard<i>of<N>.proc<r>of<P>.jsonl`."""
    i, n = parse_shard(shard)
    return Path(folder) / f"{prefix}shard{i}of{n}.proc{process[0]}of{process[1]}.jsonl"


def _done(record) -> bool:
    # Records without a status (score rows) are written only when their item is done.
    return getattr(record, "status", "done") == "done"


def read_journals(folder: str | os.PathLike, cls: type[T], key: Callable[[T], Hashable]) -> dict[Hashable, T]:
    """Every outcome journaled in `<folder>/*.jsonl`, one per key, in key order (the order work is
    split in). Within a journal (one worker, in time order) the last line wins; across journals
    (other splits of the work) a done record wins over a failed one."""
    merged: dict = {}
    for journal in sorted(Path(folder).glob("*.jsonl")):
        latest = {key(rec): rec for rec in read_manifest(journal, cls)}
        for k, rec in latest.items():
            if _done(rec) or not _done(merged.get(k, rec)):
                merged[k] = rec
    return dict(sorted(merged.items()))


def record_failure(path: str | os.PathLike, item: str, err: BaseException) -> None:
    """Journal an item the worker could not process, with its error; the job goes on, and the next
    run retries it."""
    append_record(path, Failure(item=item, error=failure_message(err)))


def worker_summary(stage: str, shard: str, process: tuple[int, int], counts: dict[str, int],
            outcomes=("done", "skipped", "failed"), unit: str = "items") -> str:
    """One worker's closing line, e.g. `score [shard 0/1, process 0/1]: 3 scored, 1 cached, 0 failed
    of 4 clips`."""
    told = ", ".join(f"{counts[k]} {k}" for k in outcomes)
    retry = " (re-run the same command to retry the failed)" if counts.get("failed") else ""
    return f"{stage} [shard {shard}, process {process[0]}/{process[1]}]: {told} of {counts['total']} {unit}{retry}"


# ---- the command line of a job ----

def add_job_arguments(parser: argparse.ArgumentParser, config: str, example: str) -> None:
    """`--config`, `--shard i/N` and key=value overrides: the command line of every config-driven job."""
    parser.add_argument("--config", required=True, type=Path, help=config)
    parser.add_argument("--shard", help="i/N: this job's share of the work (e.g. a SLURM array task)")
    parser.add_argument("overrides", nargs="*", help=f"key=value settings, e.g. {example}")


def job_overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + ([f"shard={args.shard}"] if args.shard else [])


def job_main(name: str, doc: str, add_arguments, run, argv: list[str] | None) -> int:
    """The `python <script> ...` entry of a job: its own parser, errors reported as `run_command` does."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(parser)
    return run_command(name, run, parser.parse_args(argv))
