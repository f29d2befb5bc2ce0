"""The job layer (synvita/jobs.py) and the one atomic write (synvita.utils.atomic_path), on their own."""

from __future__ import annotations

import os

import pytest

from synvita.data.records import Failure, ScoreRow, SyntheticClip, append_record, read_manifest
from synvita.jobs import journal_path, read_journals, record_failure, split_work, worker_summary
from synvita.utils import atomic_folder, atomic_path, stale_temp_files


def _clip(clip_id: str, status: str) -> SyntheticClip:
    return SyntheticClip(id=clip_id, triplet_id=clip_id.split("/")[1][:-4], caption="a dog", generator="g", seed=1,
                         path=f"clips/{clip_id}.mp4", status=status, error=None if status == "done" else "oom")


def test_split_work_shares_every_item_once():
    items = list(range(23))
    shares = [split_work(items, (i, 3), (r, 2)) for i in range(3) for r in range(2)]
    assert sorted(x for s in shares for x in s) == items
    assert shares[0] == [0, 6, 12, 18]  # shard 0 of 3 takes 0, 3, 6, ...; its process 0 of 2 every other


def test_journals_merge_last_line_per_worker_and_done_over_failed(tmp_path):
    folder = tmp_path / "clips.d"
    a, b = journal_path(folder, "0/2", (0, 1), prefix="g."), journal_path(folder, "1/2", (0, 1), prefix="g.")
    assert (a.name, b.name) == ("g.shard0of2.proc0of1.jsonl", "g.shard1of2.proc0of1.jsonl")
    append_record(a, _clip("g/t1_001", "failed"))
    append_record(a, _clip("g/t1_001", "done"))  # retried by the same worker: the later line wins
    append_record(a, _clip("g/t2_001", "done"))
    append_record(b, _clip("g/t2_001", "failed"))  # another split failed it: done wins, whatever the order
    append_record(b, _clip("g/t0_001", "failed"))
    merged = read_journals(folder, SyntheticClip, key=lambda c: c.id)
    assert list(merged) == ["g/t0_001", "g/t1_001", "g/t2_001"]  # key order: the order work is split in
    assert [c.status for c in merged.values()] == ["failed", "done", "done"]


def test_records_without_a_status_merge_by_key(tmp_path):
    row = dict(clip_id="g/t_001", member="m", role="target", caption="a dog", frames=[0])
    append_record(tmp_path / "s" / "a.jsonl", ScoreRow(**row, p_yes=[0.25]))
    append_record(tmp_path / "s" / "b.jsonl", ScoreRow(**row, p_yes=[0.75]))
    (only,) = read_journals(tmp_path / "s", ScoreRow, key=lambda r: (r.clip_id, r.member, r.role)).values()
    assert only.p_yes == [0.75]


def test_failures_and_the_summary_line(tmp_path):
    record_failure(tmp_path / "failed.jsonl", "g/t_001", RuntimeError("no\nframes"))
    (failure,) = read_manifest(tmp_path / "failed.jsonl", Failure)
    assert (failure.item, failure.error) == ("g/t_001", "RuntimeError: no frames")
    counts = dict(scored=3, cached=1, failed=1, total=5)
    assert worker_summary("score", "1/4", (0, 2), counts, ("scored", "cached", "failed"), unit="clips") == (
        "score [shard 1/4, process 0/2]: 3 scored, 1 cached, 1 failed of 5 clips "
        "(re-run the same command to retry the failed)")


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out" / "a.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "new" and sorted(os.listdir(target.parent)) == ["a.txt"]
    # What a SIGKILLed writer leaves behind (a block never ended) is found beside its file, and
    # another file's is not.
    killed = atomic_path(target, suffix=".mp4.tmp").__enter__()
    killed.write_text("half")
    atomic_path(tmp_path / "out" / "b.txt").__enter__()
    assert stale_temp_files(target) == [killed]


def test_atomic_folder_first_rename_wins(tmp_path):
    target = tmp_path / "model"
    first, second = atomic_folder(target), atomic_folder(target)
    a, b = first.__enter__(), second.__enter__()  # two processes building the same folder at once
    (a / "weights").write_text("a")
    (b / "weights").write_text("b")
    assert not target.exists()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert (target / "weights").read_text() == "a" and sorted(os.listdir(tmp_path)) == ["model"]
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "broken") as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed mid-build")
    assert sorted(os.listdir(tmp_path)) == ["model"]
