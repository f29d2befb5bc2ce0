"""`synvita train --config recipes/configs/<family>/<name>.yaml [key=value ...]`: the training stage.

The same entry point as `accelerate launch recipes/finetune.py ...`; under `accelerate launch` it
runs once per process, plain `synvita train` runs one process.
"""

from __future__ import annotations

import argparse
import sys

from synvita.config import ConfigError, load_config
from synvita.training.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML (recipes/configs/<family>/<name>.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. loss.weighting=fixed optim.lr=1e-4 resume_from=latest")


def run(args: argparse.Namespace) -> int:
    from synvita.training.loop import train

    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as err:
        print(f"synvita train: {err}", file=sys.stderr)
        return 2
    train(cfg)
    return 0
