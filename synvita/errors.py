"""The one error contract.

`SynvitaError` is the base of everything a user can cause (a bad config, manifest, video, path or
setting); its message names the file, row or field and what to do. `run_command` runs a stage's
`run(args)`: a SynvitaError becomes one line on stderr and exit status 2. Any other exception is a
bug and keeps its traceback. Library code raises, it never exits.
"""

from __future__ import annotations

import sys


class SynvitaError(ValueError):
    """A user-caused error (a ValueError, so callers that catch ValueError keep working)."""


class UnsafePathError(SynvitaError):
    """A path, built from input data, that would leave the folder it must stay in."""


def one_line(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def failure_message(err: BaseException) -> str:
    """A failed item's journaled error: type and message on one line (freeing the GPU after an OOM)."""
    import torch  # imported here: most users of this module never need it

    if out_of_memory(err):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return f"out of memory: {one_line(err)}"
    return f"{type(err).__name__}: {one_line(err)}"


def out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def run_command(name: str, run, args) -> int:
    """`run(args)` under the contract: `synvita <name>: <message>` and 2 for a user-caused error."""
    try:
        return run(args) or 0
    except SynvitaError as err:
        print(f"synvita {name}: {one_line(err)}", file=sys.stderr)
        return 2
