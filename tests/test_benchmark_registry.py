"""A benchmark is one registry entry: one registered here, from this file, is downloaded (refused: it
has no source), evaluated end to end with a tiny model through `synvita evaluate --config`, and scored
as an independent computation says; and the shipped evaluation configs load."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from synvita.cli import main as cli_main
from synvita.config import ConfigError, load_config
from synvita.data.benchmarks import BENCHMARKS, Benchmark, BenchmarkFile, Pair
from synvita.evaluation.config import EvalConfig

REPO = Path(__file__).resolve().parents[1]
NAME = "clip-statements"
# (clip, statement, 1 if the clip shows it): two clips, three statements each
ROWS = [("a.mp4", "a red square moves left", 1), ("a.mp4", "a red square moves right", 0),
        ("a.mp4", "a blue circle jumps", 0), ("b.mp4", "a blue circle jumps", 1),
        ("b.mp4", "a blue circle falls", 0), ("b.mp4", "two squares swap places", 1)]


def read_clip_statements(path: Path) -> list[Pair]:
    """The new benchmark's reader: a `clip,statement,label` CSV."""
    with open(path, newline="") as f:
        return [Pair(row["clip"], row["statement"], row["statement"], int(row["label"])) for row in csv.DictReader(f)]


@pytest.fixture
def registered():
    spec = BENCHMARKS.register(NAME, Benchmark(
        NAME, "entailment", (BenchmarkFile("clip_statements.csv", ("clip", "statement", "label")),),
        read_clip_statements, metric="auc", metric_name="Clip-Statements AUC"))
    yield spec
    del BENCHMARKS._entries[NAME]  # the registry is global: leave it as the other tests expect it


def test_an_incomplete_entry_is_refused_when_registered():
    with pytest.raises(TypeError, match="lacks reader"):
        BENCHMARKS.register("half-done", Benchmark("half-done", "qa", metric="accuracy", metric_name="acc"))
    assert "half-done" not in BENCHMARKS


def test_a_benchmark_registered_in_a_test_file_is_evaluated_end_to_end(registered, tmp_path, capsys):
    from synvita.data.video import FrameSampler, read_video, write_video
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm
    from synvita.tiny import build_tiny

    rng = np.random.default_rng(0)
    for clip in ("a.mp4", "b.mp4"):
        write_video(tmp_path / "videos" / clip, rng.integers(0, 256, (6, 40, 48, 3), dtype=np.uint8), fps=4)
    ann = tmp_path / "ann"
    ann.mkdir()
    with open(ann / "clip_statements.csv", "w", newline="") as f:
        csv.writer(f).writerows([("clip", "statement", "label"), *ROWS])
    model = build_tiny("qwen2-vl", tmp_path / "model", seed=0)
    config = tmp_path / "mine.yaml"
    config.write_text(f"benchmark: {NAME}\nframes: 4\nbatch_size: 2\n")

    assert cli_main(["data", "download", NAME, "--to", str(tmp_path / "dl")]) == 1
    assert "no download source" in capsys.readouterr().err

    out = tmp_path / "eval" / f"{NAME}.json"
    assert cli_main(["evaluate", "--config", str(config), "--model", str(model), f"annotations={ann}",
                     f"video_root={tmp_path / 'videos'}", f"out={out}"]) == 0
    import json

    result = json.loads(out.read_text())
    # Independently: every (clip, statement) scored on its own, no prefix sharing, AUC by sklearn.
    sampler = FrameSampler(num_frames=4)
    scorer = AlignmentScorer(load_video_lmm(str(model)), sampler, prefix_sharing=False)
    scores = [scorer.score([read_video(tmp_path / "videos" / clip, sampler)], [text]).item() for clip, text, _ in ROWS]
    assert result["benchmark"] == NAME and result["counts"]["pairs_scored"] == len(ROWS)
    assert result[registered.metric] == pytest.approx(100 * roc_auc_score([y for *_, y in ROWS], scores), abs=1e-6)
    assert result["provenance"]["frames"] == 4 and result["provenance"]["sampler"] == "uniform-4"


@pytest.mark.parametrize("path", sorted((REPO / "eval" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_eval_config_loads_and_names_its_command(path):
    cfg = load_config(EvalConfig, f"eval/{path.stem}", ["annotations=ann", "out=o.json", "from_predictions=p.csv"])
    assert cfg.benchmark == path.stem and path.stem in BENCHMARKS
    assert path.read_text().startswith(f"# synvita evaluate --config eval/{path.stem} ")


@pytest.mark.parametrize("overrides, message", [
    (["benchmark=nope", "annotations=a", "out=o.json", "from_predictions=p.csv"], "unknown benchmark 'nope'"),
    (["benchmark=atp-hard", "out=o.json"], "required key 'annotations' is missing"),
    (["benchmark=atp-hard", "annotations=a", "out=o.json"], "give exactly one"),
    (["benchmark=atp-hard", "annotations=a", "out=o.json", "model=m", "from_predictions=p.csv", "video_root=v"],
     "give exactly one"),
    (["benchmark=atp-hard", "annotations=a", "out=o.json", "from_predictions=p.csv", "shard=2/2"], "shard '2/2'"),
    (["benchmark=atp-hard", "annotations=a", "out=o.json", "from_predictions=p.csv", "batch_size=0"], "batch_size"),
])
def test_a_bad_eval_config_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(EvalConfig, None, overrides)
