"""The README's CPU blocks (a fenced block right after a `<!-- cpu -->` line) run in order, as written,
in a fresh folder with a fresh home (nothing cached), like diffusers' doc tests: the documentation
cannot drift from the code."""

from __future__ import annotations

import os
import re
import subprocess
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
