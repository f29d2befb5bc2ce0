"""The README's CPU blocks (a fenced block right after a `<!-- cpu -->` line) run in order, as written,
in a fresh folder with a fresh home (nothing cached), like diffusers' doc tests: the documentation
cannot drift from the code."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"^<!-- cpu -->\n```(?:bash|sh)\n(.*?)^```$", re.S | re.M)


def cpu_blocks(text: str) -> list[str]:
    return MARKED.findall(text)


def test_cpu_blocks_are_found():
    blocks = cpu_blocks((REPO / "README.md").read_text())
    chain = "\n".join(blocks)
    for stage in ("synvita world", "synvita generate", "synvita score", "synvita train", "synvita evaluate",
                  "synvita report"):
        assert stage in chain, stage
    sample = "a\n<!-- cpu -->\n```bash\necho 1\n```\n```bash\necho 2\n```\n<!-- cpu -->\n```sh\necho 3\n```\n"
    assert cpu_blocks(sample) == ["echo 1\n", "echo 3\n"]


@pytest.mark.slow
def test_readme_cpu_blocks_run_in_order(tmp_path):
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.pop("SYNVITA_CACHE", None)
    for i, block in enumerate(cpu_blocks((REPO / "README.md").read_text())):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env, capture_output=True,
                              text=True, timeout=1800)
        assert done.returncode == 0, f"README CPU block {i + 1} failed:\n{block}\n{done.stderr[-4000:]}"
    assert (work / "runs" / "tiny" / "report.html").is_file()
    assert list((work / "runs" / "tiny" / "eval").glob("*/videocon-llm.json"))
    assert "| videocon-llm |" in (work / "runs" / "tiny" / "train" / "synvita_cpu" / "push" / "README.md").read_text()


def test_world_writes_triplets_whose_videos_decode(tmp_path, capsys):
    from synvita.cli import main as cli_main
    from synvita.data.records import Triplet, read_manifest
    from synvita.data.video import FrameSampler, read_video

    assert cli_main(["world", "--out", str(tmp_path), "--scenes", "3", "--negatives", "2", "--frames", "6",
                     "--size", "32"]) == 0
    triplets = read_manifest(tmp_path / "triplets.jsonl", Triplet)
    per_video = Counter(t.video for t in triplets)  # a scene may allow fewer kinds of negative than asked
    assert len(per_video) == 3 and set(per_video.values()) <= {1, 2} and {t.split for t in triplets} == {"train"}
    assert all(t.caption != t.negative for t in triplets)
    for video in {t.video for t in triplets}:
        assert read_video(tmp_path / video, FrameSampler("all")).shape == (6, 32, 32, 3)
    assert not (tmp_path / "benchmarks").exists()
    assert cli_main(["world", "--out", str(tmp_path), "--scenes", "0"]) == 2
    assert "--scenes" in capsys.readouterr().err
