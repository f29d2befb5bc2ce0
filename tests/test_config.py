from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from synvita.config import ConfigError, dump_resolved, load_config
from synvita.registry import Registry
from synvita.utils import stable_seed


@dataclass
class Inner:
    gamma: float = 0.2
    kinds: list[str] = field(default_factory=lambda: ["flip"])


@dataclass
class Outer:
    name: str
    weighting: Literal["fixed", "margin"] = "margin"
    out: Path | None = None
    loss: Inner = field(default_factory=Inner)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nloss: {gamma: 1}\n")
    cfg = load_config(Outer, path, ["loss.kinds=[count, action]", "out=/x"])
    assert cfg.loss.gamma == 1.0 and isinstance(cfg.loss.gamma, float)
    assert cfg.loss.kinds == ["count", "action"]
    assert cfg.out == Path("/x")


def test_errors_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nloss: {gama: 1}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: loss: unknown key\(s\) gama"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="required key 'name'"):
        load_config(Outer)
    with pytest.raises(ConfigError, match="'best' is not one of"):
        load_config(Outer, overrides=["name=a", "weighting=best"])
    with pytest.raises(ConfigError, match="loss: gamma: expected float"):
        load_config(Outer, overrides=["name=a", "loss.gamma=high"])


def test_dump_resolved_round_trips(tmp_path):
    cfg = load_config(Outer, overrides=["name=a"])
    dump_resolved(cfg, tmp_path / "resolved.yaml")
    saved = yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert load_config(Outer, overrides=[f"name={saved['config']['name']}"]) == cfg
    assert saved["versions"]["torch"]


def test_registry_rejects_incomplete_and_unknown():
    reg = Registry("backend", required=("load",))
    with pytest.raises(TypeError, match="lacks load"):
        reg.register("bad", object())

    @reg.register("good")
    class Good:
        load = staticmethod(lambda: 1)

    assert reg.get("good") is Good and reg.names() == ["good"]
    with pytest.raises(KeyError, match="known: good"):
        reg.get("nope")


def test_stable_seed_depends_only_on_parts():
    assert stable_seed("clip1", "wan", 0) == stable_seed("clip1", "wan", 0)
    assert stable_seed("clip1", "wan", 0) != stable_seed("clip2", "wan", 0)
