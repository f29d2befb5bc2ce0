"""The one base exception for what a user can cause: a bad config, manifest, video, path or setting.

Its message names the file, row or field and what to do. `synvita <stage>` prints it on one line and
exits 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SynvitaError(ValueError):
    """A user-caused error (a ValueError, so callers that catch ValueError keep working)."""


class UnsafePathError(SynvitaError):
    """A path, built from input data, that would leave the folder it must stay in."""
