"""`synvita doctor` on every tiny family, with and without weights, and on deliberately broken set-ups."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from synvita.cli import main as cli_main
from synvita.data.video import Clip
from synvita.tiny import build_tiny
from synvita.tiny.lmms import TINY_KINDS

CLIP = ["--frames", "4", "--height", "40", "--width", "48", "--seconds", "2"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("doctor")
    return {kind: build_tiny(kind, root / kind, seed=2) for kind in TINY_KINDS}


def _field(out: str, label: str) -> str:
    return re.search(rf"^{label}:\s+(.*)$", out, re.M).group(1)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_doctor_passes_every_tiny_family(kind, tiny_dirs, capsys):
    from synvita.models.alignment import AlignmentScorer
    from synvita.models.families import load_video_lmm

    assert cli_main(["doctor", str(tiny_dirs[kind]), *CLIP]) == 0
    out = capsys.readouterr().out
    lmm = load_video_lmm(tiny_dirs[kind])
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    features = AlignmentScorer(lmm).encode([Clip(frames, 2.0)])[0].features.shape[0]
    assert int(_field(out, "video tokens per clip")) == features
    assert _field(out, "video features") == f"{features} (match)"
    assert f"{lmm.video_token}×{features}" in _field(out, "prompt")
    assert _field(out, "Yes ids").startswith(str(lmm.yes_ids)) and _field(out, "No ids").startswith(str(lmm.no_ids))
    assert _field(out, "prefix sharing") == "active" and out.rstrip().endswith("OK")
    if lmm.family.mrope:
        positions = json.loads(_field(out, "temporal positions").split(" (")[0])
        assert len(positions) == 2 and positions[1] > positions[0]
    # The weights-free check reads the same prompt and tokens.
    assert cli_main(["doctor", str(tiny_dirs[kind]), "--no-weights", *CLIP]) == 0
    light = capsys.readouterr().out
    for label in ("prompt", "video tokens per clip", "Yes ids", "caption split"):
        assert _field(light, label) == _field(out, label)
    assert "tokenizer/processor only" in _field(light, "model")


def test_doctor_fails_on_frames_without_their_rate(tiny_dirs):
    """Qwen2.5-VL at the released tokens_per_second: frames without metadata get 24 fps, and every
    temporal patch of the clip the same temporal position."""
    from synvita.models.doctor import diagnose
    from synvita.models.families import load_video_lmm

    lmm = load_video_lmm(tiny_dirs["qwen2.5-vl"])
    frames = np.random.default_rng(0).integers(0, 256, (8, 40, 48, 3), dtype=np.uint8)
    assert not diagnose(lmm, Clip(frames, 2.0)).problems
    broken = diagnose(lmm, frames)
    assert len(broken.problems) == 1 and "do not increase" in broken.problems[0]


def test_doctor_fails_when_the_processor_miscounts_video_tokens(tiny_dirs, tmp_path, capsys):
    folder = shutil.copytree(tiny_dirs["video-llava"], tmp_path / "broken")
    config = json.loads((folder / "processor_config.json").read_text())
    config["num_additional_image_tokens"] = 0  # the processor now counts tokens per frame unlike the model
    (folder / "processor_config.json").write_text(json.dumps(config))
    assert cli_main(["doctor", str(folder), *CLIP]) == 1
    out = capsys.readouterr().out
    assert _field(out, "video features") == "MISMATCH" and "PROBLEM:" in out and out.rstrip().endswith("FAILED")
