"""`python -m synvita.tiny --kind K --out DIR`: the same as `synvita tiny`."""

import argparse
import sys

from synvita.errors import run_command
from synvita.tiny import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m synvita.tiny", description="build a tiny random-weight model")
add_arguments(parser)
sys.exit(run_command("tiny", run, parser.parse_args()))
