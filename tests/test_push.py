"""`synvita push --dry-run`: the model card of a tiny trained run, each field checked against the run's
own files (recomputed here), and only evaluations made with this adapter listed."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml

from synvita.cli import main as cli_main
from training_data import make_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from accelerate.state import AcceleratorState

    from synvita.tiny import build_tiny
    from synvita.toyworld.benchmarks import llm_entailment

    root = tmp_path_factory.mktemp("push")
    model = build_tiny("video-llava", root / "video-llava")
    data = make_run(root / "run", n=4, generators=("gen-a", "gen-b"), real_only={3: "failed"})
    AcceleratorState._reset_state(True)
    out = root / "run" / "train" / "mine"
    assert cli_main(["train", "--config", "tiny/synvita_cpu", f"model.name_or_path={model}",
                     f"data.triplets={data / 'triplets.jsonl'}", f"data.clips={data / 'clips.jsonl'}",
                     f"data.weights={data / 'weights.jsonl'}", f"output_dir={out}", "max_steps=2", "save_every=1",
                     "loss.gamma=0.3", "loss.lambda_scr=0.5", "lora.r=4", "lora.alpha=8", "report_to=[none]"]) == 0
    adapter = sorted(out.glob("checkpoints/*/adapter"))[-1]
    bench = root / "bench"
    llm_entailment(bench, 3, 8, 32)
    result = root / "run" / "eval" / "mine" / "videocon-llm.json"
    assert cli_main(["evaluate", "--benchmark", "videocon-llm", "--annotations", str(bench), "--model", str(model),
                     "--adapter", str(adapter), "--video-root", str(bench), "--frames", "4", "--out", str(result)]) == 0
    # The same benchmark scored with another adapter (the first checkpoint) is not this adapter's.
    other = json.loads(result.read_text())
    other["provenance"]["adapter"] = str(sorted(out.glob("checkpoints/*/adapter"))[0])
    (root / "run" / "eval" / "other").mkdir()
    (root / "run" / "eval" / "other" / "videocon-llm.json").write_text(json.dumps(other))
    return model, data, out, adapter, result


def _card(folder: Path) -> tuple[dict, str, dict[str, str]]:
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    rows = dict(re.findall(r"^\| ([^|]+?) \| (.+?) \|$", body, re.M))
    return yaml.safe_load(front), body, rows


def test_dry_run_writes_a_complete_card(trained, tmp_path, capsys):
    model, data, out, adapter, result = trained
    assert cli_main(["push", str(out), "--repo-id", "me/tiny-synvita", "--dry-run", "--out", str(tmp_path / "hub")]) == 0
    folder = tmp_path / "hub"
    meta, body, rows = _card(folder)
    assert meta["library_name"] == "peft" and "synvita" in meta["tags"]
    assert "base_model" not in meta  # a local folder is not a hub id

    assert rows["base model"] == str(model) and rows["family"] == "video-llava"
    assert rows["weighting"] == "margin" and rows["λ_scr"] == "0.5" and rows["γ"] == "0.3"
    assert rows["loss normalization"] == "official"
    assert rows["objective"] == "L_real + L_syn^w + λ_scr·L_scr^w"
    assert rows["LoRA r / alpha / dropout"] == "4 / 8 / 0.0"
    from synvita.models.families import FAMILIES

    targets = FAMILIES.get("video-llava").lora_target_regex("all_linear")  # a regex: "|" escaped in the table
    assert rows["LoRA targets"] == (targets if isinstance(targets, str) else ", ".join(sorted(targets))).replace("|", "\\|")
    assert rows["steps"] == "2"

    # make_run: 4 triplets, each with a clip per generator; triplet 3's clips failed (it trains real-only).
    assert re.search(r"^\| gen-a \| 3 \| 1 \| 3 \|$", body, re.M) and re.search(r"^\| gen-b \| 3 \| 1 \| 3 \|$", body, re.M)
    assert "Training examples on the real video only: 1." in body
    for key in ("triplets", "clips", "weights"):
        path = data / f"{key}.jsonl"
        lines = len(path.read_text().splitlines())
        assert f"| {key} | `{path}` | {hashlib.sha256(path.read_bytes()).hexdigest()} | {lines} |" in body

    scored = json.loads(result.read_text())
    assert re.search(rf"^\| videocon-llm \| auc {scored['auc']:.2f}\b.*\| `eval/mine/videocon-llm.json` \|$", body, re.M)
    assert body.count("| videocon-llm |") == 1  # the other adapter's result is left out
    provenance = json.loads(body.split("```json\n")[1].split("\n```")[0])
    assert provenance == {"videocon-llm": scored["provenance"]}
    assert rows["transformers"] == yaml.safe_load((out / "resolved.yaml").read_text())["versions"]["transformers"]

    assert (folder / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    assert json.loads((folder / "eval" / "mine" / "videocon-llm.json").read_text()) == scored
    assert (folder / "resolved.yaml").read_bytes() == (out / "resolved.yaml").read_bytes()

    # Naming the adapter itself gives the same card.
    assert cli_main(["push", str(adapter), "--repo-id", "me/tiny-synvita", "--dry-run", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "README.md").read_text() == (folder / "README.md").read_text()


def test_push_refuses_what_is_not_a_run(trained, tmp_path, capsys):
    assert cli_main(["push", str(tmp_path), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "neither a training output folder" in capsys.readouterr().err
    (tmp_path / "keep.txt").write_text("mine")
    assert cli_main(["push", str(trained[2]), "--repo-id", "me/x", "--dry-run", "--out", str(tmp_path)]) == 2
    assert "not empty and not an earlier push folder" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
