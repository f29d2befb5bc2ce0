"""Shipped configs: `synvita configs list/copy`, `--config NAME`, `synvita train --print-config` and
`--validate`, in this checkout and (slow) from a wheel built and installed in the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synvita.cli import main as cli_main
from training_data import make_run

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny" / "synvita_cpu.yaml"


def _expected_names() -> set[str]:
    recipes = {p.relative_to(REPO / "recipes" / "configs").with_suffix("").as_posix()
               for p in (REPO / "recipes" / "configs").rglob("*.yaml")}
    generation = {f"generation/{p.stem}" for p in (REPO / "generation" / "configs").glob("*.yaml")}
    evaluation = {f"eval/{p.stem}" for p in (REPO / "eval" / "configs").glob("*.yaml")}
    return recipes | generation | evaluation


def _listed(stdout: str) -> set[str]:
    return {line.split()[0] for line in stdout.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A tiny Video-LLaVA folder holding only its config (no weights: validation must not load a model)
    and a small run directory."""
    root = tmp_path_factory.mktemp("configs")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text('{"model_type": "video_llava"}')
    data = make_run(root / "data", n=4)
    return root / "model", data


def _overrides(run_files, out: Path) -> list[str]:
    model, data = run_files
    return [f"model.name_or_path={model}", f"data.triplets={data / 'triplets.jsonl'}",
            f"data.clips={data / 'clips.jsonl'}", f"data.weights={data / 'weights.jsonl'}", f"output_dir={out}"]


def test_list_names_every_shipped_config_and_copy_writes_it(tmp_path, capsys):
    assert cli_main(["configs", "list"]) == 0
    out = capsys.readouterr().out
    assert _listed(out) == _expected_names()
    assert "accelerate launch --cpu recipes/finetune.py" in out  # the tiny config's first comment line

    assert cli_main(["configs", "copy", "tiny/synvita_cpu", str(tmp_path)]) == 0
    assert (tmp_path / "synvita_cpu.yaml").read_bytes() == TINY.read_bytes()
    assert cli_main(["configs", "copy", "generation/score_tiny.yaml", str(tmp_path / "a" / "mine.yaml")]) == 0
    assert (tmp_path / "a" / "mine.yaml").read_bytes() == (REPO / "generation/configs/score_tiny.yaml").read_bytes()
    capsys.readouterr()
    assert cli_main(["configs", "copy", "tiny/synvita_cpu", str(tmp_path)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli_main(["configs", "copy", "tiny/nope", str(tmp_path)]) == 2
    assert "not a shipped config" in capsys.readouterr().err


def test_print_config_resolves_a_shipped_name_with_overrides(capsys):
    assert cli_main(["train", "--config", "tiny/synvita_cpu", "--print-config", "lora.r=4", "optim.lr=2e-4"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(TINY.read_text())

    def assert_contains(resolved: dict, given: dict, where: str):
        for key, value in given.items():
            if isinstance(value, dict):
                assert_contains(resolved[key], value, f"{where}{key}.")
            elif f"{where}{key}" not in ("lora.r", "optim.lr"):
                assert resolved[key] == value, f"{where}{key}"

    assert_contains(printed, shipped, "")
    assert printed["lora"]["r"] == 4 and printed["optim"]["lr"] == 2e-4
    # Defaults the YAML leaves out are filled in (training/config.py).
    assert printed["optim"]["weight_decay"] == 1e-4 and printed["report_to"] == ["tensorboard"]
    assert printed["lora"]["targets"] == "all_linear" and printed["loss"]["normalization"] == "official"


def test_validate_checks_files_without_loading_a_model(run_files, tmp_path, capsys):
    ok = _overrides(run_files, tmp_path / "out")
    assert cli_main(["train", "--config", "tiny/synvita_cpu", "--validate", *ok]) == 0
    out = capsys.readouterr().out
    assert "config OK" in out and "4 triplets" in out
    assert not (tmp_path / "out").exists()

    code = cli_main(["train", "--config", "tiny/synvita_cpu", "--validate", *ok, "model.name_or_path=nowhere/x/y",
                     f"data.weights={tmp_path / 'none.jsonl'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "model.name_or_path: nowhere/x/y is neither a folder nor a hub id" in err
    assert f"{tmp_path / 'none.jsonl'}" in err
    assert cli_main(["train", "--config", "tiny/synvita_cpu", "--validate", *ok, "lora.r=0"]) == 2
    assert "lora" in capsys.readouterr().err


def test_validate_names_a_missing_real_video(run_files, tmp_path, capsys):
    model, data = run_files
    (data / "videos" / "t1.mp4").rename(data / "videos" / "away.mp4")
    try:
        code = cli_main(["train", "--config", "tiny/synvita_cpu", "--validate", *_overrides(run_files, tmp_path)])
    finally:
        (data / "videos" / "away.mp4").rename(data / "videos" / "t1.mp4")
    assert code == 2
    assert f"1 real video(s) missing, e.g. {data / 'videos' / 't1.mp4'}" in capsys.readouterr().err


@pytest.mark.slow
def test_from_an_installed_wheel(run_files, tmp_path):
    """Build the wheel from this checkout, install it (without dependencies: they are this venv's) into
    a folder, and use it from a folder with no checkout in sight."""
    from synvita.tiny import build_tiny

    src = tmp_path / "src"
    for name in ("synvita", "recipes", "generation", "eval"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("synvita-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}

    def synvita(*argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(site / "bin" / "synvita"), *argv], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    where = subprocess.run([sys.executable, "-c", "import synvita.configs as c; print(c.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    assert _listed(synvita("configs", "list").stdout) == _expected_names()
    synvita("configs", "copy", "video_llava/synvita", "mine.yaml")
    assert (work / "mine.yaml").read_bytes() == (REPO / "recipes/configs/video_llava/synvita.yaml").read_bytes()
    printed = yaml.safe_load(synvita("train", "--config", "video_llava/synvita", "--print-config").stdout)
    assert printed["model"]["name_or_path"] == "LanguageBind/Video-LLaVA-7B-hf"

    model = build_tiny("video-llava", tmp_path / "video-llava")
    overrides = [*_overrides(run_files, work / "out"), f"model.name_or_path={model}", "max_steps=1"]
    assert "config OK" in synvita("train", "--config", "tiny/synvita_cpu", "--validate", *overrides).stdout
    launch = subprocess.run([str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "1",
                             "-m", "synvita.train", "--config", "tiny/synvita_cpu", *overrides],
                            cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert list((work / "out" / "checkpoints").glob("step-*/adapter/adapter_model.safetensors"))
