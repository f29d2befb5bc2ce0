"""`report_to`: the resolved config reaches the tracker as hyperparameters (TensorBoard, read back from
its event files), and `none` writes no tracker files."""

from __future__ import annotations

from pathlib import Path

import pytest

from synvita.config import ConfigError, flat_dict, load_config
from synvita.training.config import TrainConfig
from training_data import make_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from synvita.tiny import build_tiny

    root = tmp_path_factory.mktemp("tracking")
    return build_tiny("video-llava", root / "video-llava"), make_run(root / "data", n=4)


def _cfg(setup, out: Path, *overrides: str) -> TrainConfig:
    model, data = setup
    return load_config(TrainConfig, "tiny/synvita_cpu", [
        f"model.name_or_path={model}", f"data.triplets={data / 'triplets.jsonl'}", f"data.clips={data / 'clips.jsonl'}",
        f"data.weights={data / 'weights.jsonl'}", f"output_dir={out}", "max_steps=1", *overrides])


def _train(cfg: TrainConfig):
    from accelerate.state import AcceleratorState

    from synvita.training.loop import train

    AcceleratorState._reset_state(True)
    return train(cfg)


def _hparams(logdir: Path) -> dict:
    """Every hyperparameter in the event files under `logdir`, as TensorBoard's HParams plugin reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for events in logdir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        try:
            contents = acc.PluginTagToContent("hparams").values()
        except KeyError:  # the scalars' event file
            continue
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            for name, value in data.session_start_info.hparams.items():
                found[name] = getattr(value, value.WhichOneof("kind"))
    return found


def test_tensorboard_receives_the_resolved_config_as_hyperparameters(setup, tmp_path):
    cfg = _cfg(setup, tmp_path / "tb", "report_to=[tensorboard]", "loss.gamma=0.35", "lora.r=4")
    _train(cfg)
    logged = _hparams(tmp_path / "tb" / "tensorboard")
    # Written by hand from the overrides above and the shipped tiny config: not from flat_dict.
    assert logged["loss.gamma"] == pytest.approx(0.35) and logged["lora.r"] == 4
    assert logged["loss.weighting"] == "margin" and logged["model.name_or_path"] == str(setup[0])
    assert logged["data.generators"] == "null" and logged["report_to"] == '["tensorboard"]'
    assert logged["data.frames.num_frames"] == 8 and logged["loss.syn"] == 1  # TensorBoard keeps bools as numbers
    assert set(logged) == set(flat_dict(cfg))


def test_report_to_none_writes_no_tracker_files(setup, tmp_path):
    _train(_cfg(setup, tmp_path / "none", "report_to=[none]"))
    assert (tmp_path / "none" / "metrics.jsonl").is_file()
    assert not (tmp_path / "none" / "tensorboard").exists()


def test_report_to_is_checked():
    with pytest.raises(ConfigError, match="report_to"):
        load_config(TrainConfig, "tiny/synvita_cpu", ["report_to=[mlflow]"])
    with pytest.raises(ConfigError, match="'none' cannot be combined"):
        load_config(TrainConfig, "tiny/synvita_cpu", ["report_to=[none,tensorboard]"])
    cfg = load_config(TrainConfig, "tiny/synvita_cpu", ["report_to=[tensorboard,wandb,trackio]"])
    import importlib.util

    assert cfg.missing_trackers() == [t for t in ("wandb", "trackio") if importlib.util.find_spec(t) is None]
