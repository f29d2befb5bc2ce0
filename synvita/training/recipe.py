"""`synvita train --config NAME_OR_YAML [key=value ...]`: the training stage.

The same entry point as `accelerate launch -m synvita.train ...` and, in a checkout,
`accelerate launch recipes/finetune.py ...`; under `accelerate launch` it runs once per process,
plain `synvita train` runs one process. `--print-config` and `--validate` load no model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from synvita.config import ConfigError, load_config, to_dict
from synvita.errors import run_command
from synvita.training.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="recipe YAML, or a shipped config's name (`synvita configs list`), e.g. tiny/synvita_cpu")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    parser.add_argument("--validate", action="store_true",
                        help="check the config and its data files without loading a model, then exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. loss.weighting=fixed optim.lr=1e-4 resume_from=latest")


def validate(cfg: TrainConfig) -> list[str]:
    """What would stop this run before its first step, as messages naming the file or key (empty: none)."""
    from synvita.training.data import load_examples

    problems = [f"report_to: {t} is not installed" for t in cfg.missing_trackers()]
    model = Path(cfg.model.name_or_path)
    if model.is_dir() and not (model / "config.json").is_file():
        problems.append(f"model.name_or_path: {model} is a folder without config.json")
    elif not model.is_dir() and (model.is_absolute() or cfg.model.name_or_path.count("/") != 1):
        problems.append(f"model.name_or_path: {model} is neither a folder nor a hub id (owner/name)")
    try:
        examples, report = load_examples(cfg.data, cfg.loss.weighting)
    except (OSError, ValueError) as err:
        return [*problems, f"data: {err}"]
    missing = sorted({str(e.video) for e in examples if not Path(e.video).is_file()})
    if missing:
        problems.append(f"data.triplets: {len(missing)} real video(s) missing, e.g. {missing[0]}")
    print(f"data: {report.summary()}")
    return problems


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as err:
        print(f"synvita train: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    if args.validate:
        problems = validate(cfg)
        for problem in problems:
            print(f"synvita train: {problem}", file=sys.stderr)
        print("config invalid" if problems else "config OK: nothing found that would stop the run")
        return 2 if problems else 0
    from synvita.training.loop import train

    train(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_command("train", run, parser.parse_args(argv))
