"""The scoring stage's user-caused error, in a module of its own so that every member kind (each
loaded by name from the `MEMBERS` registry) can raise it without importing the registry back."""

from __future__ import annotations

from synvita.errors import SynvitaError


class MemberError(SynvitaError):
    """A member that cannot be built or used; the message names the member and the cause."""
