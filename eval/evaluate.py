"""Benchmark a video LMM (optionally with a LoRA adapter) or a predictions file; same as `synvita evaluate`.

    python eval/evaluate.py --benchmark {videocon-llm,videocon-human,ssv2-temporal,ssv2-events,atp-hard} \
        --annotations DIR (--model ID-OR-DIR [--adapter PEFT-DIR] --video-root DIR | --from-predictions CSV) \
        --out metrics.json
"""

import argparse
import sys
from pathlib import Path

# Run as a script, this file's folder heads sys.path and this file would shadow the HF `evaluate`
# package for everything imported below.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

from synvita.errors import run_command  # noqa: E402
from synvita.evaluation import harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/evaluate.py", description=__doc__.splitlines()[0])
    harness.add_arguments(parser)
    return run_command("evaluate", harness.run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
