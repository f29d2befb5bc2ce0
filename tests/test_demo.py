"""`synvita demo`: the whole pipeline on the toy world, through every stage's own command."""

import json
from pathlib import Path

import pytest

from synvita.toyworld import demo


def test_table_formats_mean_and_spread():
    results = {"a": [{b: 50.0 for b in demo.COLUMNS}, {b: 60.0 for b in demo.COLUMNS}]}
    quality = {"clips": 4, "faithful_share": 0.5, "auc": {"margin": 75.0},
               "gap": {"flip": {"mean": -0.125, "n": 4, "faithful_share": 0.25}}}
    table = demo.format_table(results, quality)
    assert "| a (n=2) | 55.0 ± 7.1 |" in table  # stdev of (50, 60) = 7.07
    assert "margin 75.0" in table and "| flip | -0.125 | 4 | 25% |" in table


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative run folder, as `make demo` passes
    summary = demo.demo(Path("run"), demo.QUICK, cache=tmp_path / "cache")
    printed = capsys.readouterr().out
    for stage in summary["missing_stages"]:
        assert f"MISSING STAGE: {stage}" in printed
    assert json.loads((tmp_path / "run" / "demo_results.json").read_text())["results"] == summary["results"]
    if not summary["missing_stages"]:
        assert set(summary["results"]) == set(demo.ROWS)
        assert set(summary["weight_quality"]["auc"]) >= {"margin", "fixed"}
        for per_seed in summary["results"].values():
            for scores in per_seed:
                assert set(scores) == set(demo.COLUMNS) and all(0 <= v <= 100 for v in scores.values())
    # a second run reuses the cached base models and every stage's files
    again = demo.demo(Path("run"), demo.QUICK, cache=tmp_path / "cache")
    assert again["results"] == summary["results"]
