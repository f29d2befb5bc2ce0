"""Every tiny random-weight model of the suite, behind one registry, `TINY`: the video LMMs
(`synvita.tiny.lmms`), the VQA members (`synvita.tiny.members`) and the text-to-video pipelines
(`synvita.tiny.pipelines`).

Each kind is its real checkpoint's classes configured small, with tokenizers built locally by the
real checkpoint's pipeline, saved with `save_pretrained` so the Auto classes (or
`DiffusionPipeline`) load it back like a hub checkpoint; nothing is downloaded. Tests use them as
fixtures, `synvita tiny --kind K --out DIR` builds one to smoke-test a set-up, and a config's
`tiny:<kind>` model is built on first use (`materialize`). This package is a shared layer: the
stages use it, it uses none of them.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from synvita.registry import Registry
from synvita.tiny import lmms, members, pipelines
from synvita.utils import atomic_folder

# kind -> build(out_dir, seed, size) -> out_dir. `size` (a key of lmms.SIZES) shapes the video LMMs
# and members; a pipeline comes in one size.
TINY: Registry = Registry("tiny model")
for _kind in lmms.TINY_KINDS:
    TINY.register(_kind, functools.partial(lmms.build_lmm, _kind))
for _kind, _build in {**members.TINY_MEMBERS, **pipelines.TINY_PIPELINES}.items():
    TINY.register(_kind, _build)


def build_tiny(kind: str, out_dir: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Build the tiny model or pipeline `kind` into `out_dir` and return that folder."""
    if size not in lmms.SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(lmms.SIZES)}")
    build = TINY.get(kind)
    return Path(build(Path(out_dir), seed, size))


def materialize(name_or_path: str, cache_dir: str | Path | None = None) -> str:
    """`tiny:<kind>` becomes a folder holding that tiny model (built once into `cache_dir`, default
    ~/.cache/synvita/tiny); any other hub id or path is returned unchanged.

    Concurrent processes may build the same kind: each builds into its own temporary folder and the
    first rename wins, so a reader never sees a half-written model.
    """
    if not name_or_path.startswith("tiny:"):
        return name_or_path
    kind = name_or_path.removeprefix("tiny:")
    final = Path(cache_dir or Path.home() / ".cache" / "synvita" / "tiny") / kind
    if not final.is_dir():
        with atomic_folder(final) as tmp:
            build_tiny(kind, tmp)
    return str(final)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True,
                        help=f"video LMMs: {', '.join(lmms.TINY_KINDS)}; also the tiny T2V pipelines "
                             f"({', '.join(pipelines.TINY_PIPELINES)}) and VQA members ({', '.join(members.TINY_MEMBERS)})")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(lmms.SIZES), default="tiny",
                        help="video LMMs and members: 'small' is the 4-layer model with >= 512 video tokens per clip")


def run(args: argparse.Namespace) -> int:
    print(build_tiny(args.kind, args.out, seed=args.seed, size=args.size))
    return 0
