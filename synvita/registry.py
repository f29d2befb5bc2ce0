"""Named registries for model families, text-to-video backends and VQA scorers.

A new family, backend or scorer is one `register` call; nothing downstream is edited. A registry may
name the attributes every entry must carry, so an incomplete entry fails when it is registered,
not hours into a job.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from synvita.errors import SynvitaError

T = TypeVar("T")


class UnknownNameError(SynvitaError, KeyError):
    """A name not in a registry (a KeyError too, for callers that look names up)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, required: tuple[str, ...] = ()):
        self.kind = kind
        self.required = required
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None):
        """`registry.register("x", obj)`, or `@registry.register("x")` on a class or function."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            missing = [a for a in self.required if getattr(obj, a, None) is None]
            if missing:
                raise TypeError(f"{self.kind} {name!r} lacks {', '.join(missing)}")
            self._entries[name] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[T]:
        """The entries in the order they were registered (e.g. a table's column order)."""
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

