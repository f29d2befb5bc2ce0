"""`synvita configs list | copy NAME DEST`: the configs that ship inside the package.

`recipes/configs/`, `generation/configs/` and `eval/configs/` are linked into this folder (`recipes`,
`generation`, `eval`), so a checkout edits one copy and a wheel carries them as package data. A
config's name is its path here without `.yaml`, `recipes/` left out: `video_llava/synvita`,
`tiny/synvita_cpu`, `generation/tiny_cogvideox`, `eval/videocon-llm`. Every `--config` accepts a
name as well as a file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def shipped() -> dict[str, Path]:
    """Every shipped config, name -> file, sorted by name."""
    found = {}
    # From each linked folder down: rglob does not descend into symlinked folders.
    for path in (p for group in ROOT.iterdir() if group.is_dir() for p in group.rglob("*.yaml")):
        rel = path.relative_to(ROOT).with_suffix("").as_posix()
        found[rel.removeprefix("recipes/")] = path
    return dict(sorted(found.items()))


def find(name: str | Path) -> Path:
    """`name` if it is a file, else the shipped config of that name (with or without `.yaml`)."""
    if Path(name).is_file():
        return Path(name)
    configs = shipped()
    key = str(name).removesuffix(".yaml")
    if key in configs:
        return configs[key]
    raise FileNotFoundError(f"{name}: no such config file, nor a shipped config (`synvita configs list` names them)")


def _summary(path: Path) -> str:
    """The first comment line: each shipped config starts with its launch command or purpose."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    actions.add_parser("list", help="name every shipped config with its first comment line")
    copy = actions.add_parser("copy", help="copy a shipped config to edit it")
    copy.add_argument("name", help="a name from `synvita configs list`")
    copy.add_argument("dest", type=Path, help="file or existing folder to copy it into")
    copy.add_argument("--force", action="store_true", help="overwrite an existing file")


def run(args: argparse.Namespace) -> int:
    configs = shipped()
    if args.action == "list":
        width = max(map(len, configs))
        for name, path in configs.items():
            print(f"{name:<{width}}  {_summary(path)}")
        return 0
    name = args.name.removesuffix(".yaml")
    if name not in configs:
        print(f"synvita configs: {args.name!r} is not a shipped config; `synvita configs list` names them",
              file=sys.stderr)
        return 2
    dest = args.dest / configs[name].name if args.dest.is_dir() else args.dest
    if dest.exists() and not args.force:
        print(f"synvita configs: {dest} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(configs[name], dest)
    print(dest)
    return 0
