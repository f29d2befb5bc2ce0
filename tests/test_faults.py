"""Fault injection (slow): SIGKILL at random points, a full disk during each writing stage, a torn
last line in each journal, concurrent writers. Each case checks the invariants: nothing lost, nothing
duplicated, nothing written outside the run, and the rerun ends with the outputs of an undisturbed run.

Stages run as `python -m synvita.cli ...` subprocesses, as a user runs them; generation uses a flat-colour
external generator and scoring one tiny random LLaVA-1.5 member, so a case takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synvita.data.records import ScoreRow, SyntheticClip, read_manifest
from synvita.data.video import FrameSampler, read_video
from test_harness import tiny_atp  # noqa: F401  (a tiny Qwen2-VL and ATP-Hard files for three clips)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
N = 12


def write_inputs(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"t{i:02d}", "video": f"videos/{i}.mp4", "caption": f"a red square {i}",
             "negative": f"a blue square {i}", "misalignment": "attribute", "source": "test", "split": "train"}
            for i in range(N)]
    (root / "triplets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "triplets.jsonl"


def generate_cmd(run: Path, manifest: Path) -> list[str]:
    return [sys.executable, "-m", "synvita.cli", "generate", "--config",
            str(REPO / "generation" / "configs" / "external.yaml"), f"output_dir={run}", f"input={manifest}",
            "batch_size=1", "settings.command=null", "settings={entry_point: 'test_reliability:flat_generator', fps: 4}"]


def score_cmd(run: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "synvita.cli", "score", "--config", str(REPO / "generation" / "configs" / "score_tiny.yaml"),
            f"run_dir={run}", f"cache_dir={cache}", "frames=2",
            "members=[{name: llava, kind: llava-1.5, model: 'tiny:llava-1.5', batch_size: 4}]"]


def launch(cmd: list[str], limit_bytes: int | None = None) -> subprocess.Popen:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))

    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if limit_bytes else None)


def run_ok(cmd: list[str]) -> None:
    proc = launch(cmd)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def clip_outputs(run: Path) -> dict:
    """What generation promises: one done record per clip, its seed, and the decoded frames."""
    records = read_manifest(run / "clips.jsonl", SyntheticClip)
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)), "a clip is recorded twice"
    return {r.id: (r.status, r.seed, r.num_frames, read_video(run / r.path, FrameSampler("all")).tobytes())
            for r in records}


def score_outputs(run: Path) -> dict:
    rows = read_manifest(run / "scores.jsonl", ScoreRow)
    keys = [(r.clip_id, r.member, r.role) for r in rows]
    assert len(keys) == len(set(keys)), "a score row is recorded twice"
    weights = [json.loads(line) for line in (run / "weights.jsonl").read_text().splitlines()]
    return {"rows": {k: r.p_yes for k, r in zip(keys, rows)}, "weights": weights}


def assert_nothing_outside(tmp: Path, *allowed: Path) -> None:
    for path in tmp.rglob("*"):
        if path.is_file():
            assert any(path.is_relative_to(a) for a in allowed), f"{path} was written outside the run"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_cache):
    """An undisturbed generate + score."""
    root = tmp_path_factory.mktemp("reference")
    manifest = write_inputs(root / "in")
    run_ok(generate_cmd(root / "run", manifest))
    run_ok(score_cmd(root / "run", tiny_cache))
    return {"clips": clip_outputs(root / "run"), "scores": score_outputs(root / "run")}


def prepare(stage: str, tmp_path: Path, cache: Path) -> tuple[Path, list[str]]:
    """The run folder and the command of `stage`; scoring starts from a generated run."""
    manifest = write_inputs(tmp_path / "in")
    run = tmp_path / "run"
    if stage == "score":
        run_ok(generate_cmd(run, manifest))
    return run, generate_cmd(run, manifest) if stage == "generate" else score_cmd(run, cache)


@pytest.mark.parametrize("stage", ["generate", "score"])
def test_sigkill_at_a_random_point_then_rerun(stage, reference, tiny_cache, tmp_path):
    run, cmd = prepare(stage, tmp_path, tiny_cache)
    journal = run / ("clips.d" if stage == "generate" else "scores.d")
    rng = random.Random(f"{stage}-{os.getpid()}")
    proc = launch(cmd)
    # Wait for the first journaled item, then kill after a random share of the rest of the work.
    deadline = time.time() + 300
    while not any(journal.glob("*.jsonl")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_ok(cmd)
    if stage == "score":
        assert score_outputs(run) == reference["scores"]
    assert clip_outputs(run) == reference["clips"]
    assert_nothing_outside(tmp_path, tmp_path / "in", run)


@pytest.mark.parametrize("stage, limit", [("generate", 6_000), ("score", 1_500)])
def test_a_full_disk_then_rerun(stage, limit, reference, tiny_cache, tmp_path):
    run, cmd = prepare(stage, tmp_path, tiny_cache)
    # Every file the stage writes is capped: the write that crosses the cap is short, the next ones fail.
    proc = launch(cmd, limit_bytes=limit)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode != 0 and ("File too large" in err or "short write" in err), err[-2000:]
    for journal in (run / ("clips.d" if stage == "generate" else "scores.d")).glob("*.jsonl"):
        assert journal.read_bytes().endswith(b"\n"), f"{journal}: half a line"
    run_ok(cmd)
    if stage == "score":
        assert score_outputs(run) == reference["scores"]
    assert clip_outputs(run) == reference["clips"]
    assert_nothing_outside(tmp_path, tmp_path / "in", run)


@pytest.mark.parametrize("journal", ["clips.d", "scores.d"])
def test_a_torn_last_line_in_each_journal_then_rerun(journal, reference, tiny_cache, tmp_path):
    manifest = write_inputs(tmp_path / "in")
    run = tmp_path / "run"
    run_ok(generate_cmd(run, manifest))
    if journal == "scores.d":
        run_ok(score_cmd(run, tiny_cache))
    # The last record loses its end, as a writer killed mid-line leaves it.
    (path,) = (run / journal).glob("*.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[:-len(data.splitlines(keepends=True)[-1]) // 2])
    run_ok(generate_cmd(run, manifest))
    run_ok(score_cmd(run, tiny_cache))
    assert clip_outputs(run) == reference["clips"]
    assert score_outputs(run) == reference["scores"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_torn_last_prediction_then_rerun(tiny_atp, tmp_path):
    from test_harness import run_model

    root, model, ann = tiny_atp
    assert run_model(root, model, ann, tmp_path / "full.json") == 0
    full = (tmp_path / "full.predictions.csv").read_text()
    shutil.copy(tmp_path / "full.predictions.json", tmp_path / "torn.predictions.json")
    (tmp_path / "torn.predictions.csv").write_text(full[: len(full) - 30])
    with pytest.warns(UserWarning, match="incomplete last record"):
        assert run_model(root, model, ann, tmp_path / "torn.json") == 0
    def rows(path: Path) -> dict:
        records = list(csv.reader(path.open(newline="")))
        found = {(video, text): float(score) for video, text, score in records}
        assert len(found) == len(records), f"{path}: a pair is recorded twice"
        return found

    torn, whole = rows(tmp_path / "torn.predictions.csv"), rows(tmp_path / "full.predictions.csv")
    # The one rescored pair is scored in a smaller batch: the same within float error.
    assert torn.keys() == whole.keys()
    assert all(abs(torn[k] - whole[k]) < 1e-5 for k in whole)


@pytest.mark.parametrize("stage", ["generate", "score"])
def test_concurrent_writers_of_one_run(stage, reference, tiny_cache, tmp_path):
    run, cmd = prepare(stage, tmp_path, tiny_cache)
    # The same work twice at once (a job launched twice): both finish, and the run is as if run once.
    procs = [launch(cmd) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    if stage == "score":
        assert score_outputs(run) == reference["scores"]
    assert clip_outputs(run) == reference["clips"]
    assert_nothing_outside(tmp_path, tmp_path / "in", run)
