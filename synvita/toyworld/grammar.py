"""Captions of the toy world: `caption(scene)` speaks a scene and `parse(text)` reads it back.

    There are two small red circles. The small red circles move up, then they ...
    A big blue square is left of a small green diamond. There is also a big red circle.
    The big blue square spins, then the small green diamond jumps.

The last sentence tells the events in order; three phrasings say the same order differently
("then", "First ..., next ..., and finally ...", "After ..., ..."), which the Human-Hard-like
benchmark uses. Every object is named in full each time, so a caption parses without guessing.
"""

from __future__ import annotations

import re

from synvita.errors import SynvitaError
from synvita.toyworld.world import ACTIONS, COLOURS, RELATIONS, SHAPES, SIZES, Entity, Event, Scene

PHRASINGS = ("then", "first", "after")
NUMBERS = {1: "a", 2: "two", 3: "three"}


class CaptionError(SynvitaError):
    pass


def _noun(e: Entity, definite: bool) -> str:
    det = "the" if definite else NUMBERS[e.count]
    return f"{det} {e.size} {e.colour} {e.shape}{'s' if e.count > 1 else ''}"


def _verb(action: str, plural: bool) -> str:
    if plural:
        return action
    head, *rest = action.split()
    return " ".join([head + ("es" if head.endswith("sh") else "s"), *rest])


def _clause(scene: Scene, ev: Event) -> str:
    e = scene.entities[ev.entity]
    return f"{_noun(e, True)} {_verb(ev.action, e.count > 1)}"


def _be(e: Entity) -> str:
    return "are" if e.count > 1 else "is"


def caption(scene: Scene, phrasing: str = "then") -> str:
    if scene.problems():
        raise CaptionError(f"cannot caption scene: {'; '.join(scene.problems())}")
    es = scene.entities
    if len(es) == 1:
        intro = [f"There {_be(es[0])} {_noun(es[0], False)}."]
    else:
        intro = [f"{_noun(es[0], False)} {_be(es[0])} {scene.relation} {_noun(es[1], False)}."]
        intro += [f"There {_be(e)} also {_noun(e, False)}." for e in es[2:]]
    clauses = [_clause(scene, ev) for ev in scene.events]
    if phrasing == "then" or len(clauses) == 1:
        story = ", then ".join(clauses)
    elif phrasing == "first":
        story = "first " + clauses[0] + ("" if len(clauses) == 2 else ", next " + clauses[1]) + \
            ", and finally " + clauses[-1]
    elif phrasing == "after":
        story = "after " + clauses[0] + ", " + ", then ".join(clauses[1:])
    else:
        raise CaptionError(f"unknown phrasing {phrasing!r}; known: {', '.join(PHRASINGS)}")
    return " ".join(s[0].upper() + s[1:] for s in [*intro, story + "."])


_SURFACE = {_verb(a, p): a for a in ACTIONS for p in (False, True)}
_NP = re.compile(rf"^(a|two|three|the) ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})(s?)(?: (.*))?$")


def _parse_np(text: str, where: str) -> tuple[str, Entity, str]:
    m = _NP.match(text)
    if not m:
        raise CaptionError(f"{where}: expected '<a|two|three|the> <size> <colour> <shape>', got {text!r}")
    det, size, colour, shape, plural, rest = m.groups()
    count = {"a": 1, "two": 2, "three": 3}.get(det, 2 if plural else 1)
    if det != "the" and (count > 1) != bool(plural):
        raise CaptionError(f"{where}: {det!r} does not agree with {shape + plural!r}")
    return det, Entity(shape, colour, size, count), rest or ""


def parse(text: str) -> Scene:
    """The scene a caption describes; `CaptionError` says which part does not fit the grammar."""
    sentences = [s.strip() for s in text.strip().lower().rstrip(".").split(". ")]
    if len(sentences) < 2:
        raise CaptionError(f"{text!r}: expected an introduction and an event sentence")
    entities: list[Entity] = []
    relation = None
    for s in sentences[:-1]:
        m = re.match(r"^there (?:is|are)(?: also)? (.*)$", s)
        if m:
            entities.append(_parse_np(m.group(1), s)[1])
            continue
        _, first, rest = _parse_np(s, s)
        m = re.match(rf"^(?:is|are) ({'|'.join(RELATIONS)}) (.*)$", rest)
        if not m or entities:
            raise CaptionError(f"{s!r}: expected '<object> is <relation> <object>' first")
        relation = m.group(1)
        entities += [first, _parse_np(m.group(2), s)[1]]
    story = re.sub(r"^(first|after) ", "", sentences[-1])
    events = []
    kinds = [e.kind for e in entities]
    for part in story.split(", "):
        part = re.sub(r"^(and then|and finally|next|then) ", "", part)
        _, who, verb = _parse_np(part, part)
        if who.kind not in kinds:
            raise CaptionError(f"{part!r}: {who.size} {who.colour} {who.shape} was not introduced")
        if verb not in _SURFACE:
            raise CaptionError(f"{part!r}: unknown action {verb!r}")
        events.append(Event(kinds.index(who.kind), _SURFACE[verb]))
    scene = Scene(tuple(entities), tuple(events), relation)
    if scene.problems():
        raise CaptionError(f"{text!r}: {'; '.join(scene.problems())}")
    return scene
