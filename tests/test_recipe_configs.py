"""Every YAML that ships under recipes/configs loads and validates; broken ones fail by name."""

from pathlib import Path

import pytest

from synvita.config import ConfigError, load_config
from synvita.data.video import FrameSampler
from synvita.training.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
RECIPES = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "accelerate")
ACCELERATE = sorted((CONFIGS / "accelerate").glob("*.yaml"))


def test_the_expected_configs_ship():
    names = {str(p.relative_to(CONFIGS)) for p in RECIPES + ACCELERATE}
    for family in ("video_llava", "llava_next_video", "qwen2_vl", "mplug_owl"):
        assert {f"{family}/synvita.yaml", f"{family}/videocon_baseline.yaml"} <= names
    assert {"tiny/synvita_cpu.yaml", "accelerate/ddp.yaml", "accelerate/zero2.yaml", "accelerate/zero3.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_recipe_yaml_validates_and_starts_with_its_launch_command(path):
    cfg = load_config(TrainConfig, path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# accelerate launch") and f"--config recipes/configs/{path.relative_to(CONFIGS)}" in first
    if path.parent.name == "tiny":
        return
    # The README's fidelity table: the official code's values wherever thesis and code differ.
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.targets) == (32, 32, 0.05, "all_linear")
    assert (cfg.loss.normalization, cfg.optim.weight_decay, cfg.optim.warmup_steps) == ("official", 1e-4, 200)
    assert (cfg.mixed_precision, cfg.data.explanations) == ("bf16", True)
    if path.stem == "videocon_baseline":
        assert cfg.data.clips is None and not cfg.loss.syn and not cfg.loss.scr
        assert (cfg.optim.lr, cfg.epochs, cfg.per_device_batch_size) == (1e-4, 2, 8)  # 4 GPUs x 16 rows
    if path.stem == "synvita":
        assert (cfg.loss.gamma, cfg.loss.syn, cfg.loss.scr) == (0.2, True, True)
        assert cfg.data.generators == ["cogvideox*"]
        assert cfg.loss.weighting == ("target_times_not_real" if path.parent.name == "video_llava" else "margin")
    if path.parent.name == "mplug_owl":  # the thesis's settings for mPLUG-Owl, the authors' batch and lr
        assert cfg.data.frames == FrameSampler("segments", 32)
        assert cfg.loss.lambda_scr == (0.01 if path.stem == "synvita" else 1.0)
        if path.stem == "synvita":
            assert (cfg.optim.lr, cfg.per_device_batch_size, cfg.epochs) == (1e-4, 4, 1)  # 4 GPUs x 8 rows
    else:
        assert cfg.data.frames.num_frames == 8
        if path.stem == "synvita":
            assert (cfg.optim.lr, cfg.per_device_batch_size, cfg.epochs, cfg.loss.lambda_scr) == (5e-5, 2, 1, 1.0)


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_yaml_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(path)
    assert path.read_text().startswith("# accelerate launch --config_file recipes/configs/accelerate/")
    if path.stem.startswith("zero"):
        assert cfg.deepspeed_config["zero_stage"] == int(path.stem[-1])


@pytest.mark.parametrize("override, message", [
    ("loss.weighting=best", "loss.weighting: 'best' is not one of fixed, indicator, margin"),
    ("loss.gama=0.1", "unknown key(s) gama"),
    ("mixed_precision=fp8", "'fp8' is not one of"),
    ("lora.r=0", "need r >= 1"),
    ("per_device_batch_size=0", "per_device_batch_size: must be >= 1"),
])
def test_bad_values_are_rejected_by_name(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, CONFIGS / "video_llava" / "synvita.yaml", [override])
    assert message in str(err.value)
