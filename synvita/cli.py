"""`synvita <stage> ...`: one thin command per pipeline stage.

Each stage module exposes `add_arguments(parser)` and `run(args) -> int`; it is imported only when
its command runs, so `synvita --help` answers at once. `main(argv)` takes its arguments as a list
(tests call stages this way); only the console script's `main()` reads `sys.argv`. The demo, itself
a command here, runs the stages' modules on argument lists too, without importing this table back.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from synvita.errors import run_command

# (command, module, one-line help), in pipeline order.
STAGES = [
    ("generate", "synvita.generators.job", "make synthetic clips for negative captions (text-to-video)"),
    ("score", "synvita.scoring.job", "score synthetic clips with the VQAScore ensemble and write weights"),
    ("train", "synvita.training.recipe", "fine-tune a video LMM with LoRA on the SynViTA objective"),
    ("evaluate", "synvita.evaluation.harness", "benchmark a model or a predictions file (AUC, mAP, accuracy)"),
    ("report", "synvita.report.html", "build a self-contained report.html from a run directory"),
    ("push", "synvita.hub", "upload a trained adapter to the hub with a generated model card"),
    ("demo", "synvita.toyworld.demo", "run the whole method on the toy world, on CPU"),
    ("entail", "synvita.models.entail", "print f(V,t) = P(Yes)/(P(Yes)+P(No)) for a video and texts"),
    ("data", "synvita.data.download", "fetch benchmark annotation files (needs a network)"),
    ("convert", "synvita.models.convert", "convert a published checkpoint that needs remote code (mPLUG-Owl)"),
    ("tiny", "synvita.tiny", "build a tiny random-weight model or pipeline into a folder"),
    ("configs", "synvita.configs", "list the shipped configs or copy one to edit it"),
    ("world", "synvita.toyworld.files", "write toy-world triplets and benchmark files (real-style videos, no model)"),
    ("doctor", "synvita.models.doctor", "check a checkpoint's prompt, tokens and positions before a long job"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line, with the arguments of `command`'s stage only (None: no stage's)."""
    parser = argparse.ArgumentParser(
        prog="synvita",
        description="SynViTA pipeline: negatives -> generate -> score -> train -> evaluate -> report.",
    )
    commands = parser.add_subparsers(dest="command", metavar="<stage>", required=True)
    for name, module, summary in STAGES:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.set_defaults(_module=module)
        if name == command:
            # Only the stage that runs is imported: its arguments are its own.
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `synvita <argv>`; `argv` is the arguments after the program name. None is the console
    script's call: only then is `sys.argv` read."""
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    return run_command(args.command, importlib.import_module(args._module).run, args)


if __name__ == "__main__":
    sys.exit(main())
