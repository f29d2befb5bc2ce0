"""VideoCon's seven misalignment types as operators on scenes.

`negative(scene, kind, rng)` returns the scene that a hard negative caption of that kind describes
(None when the kind cannot apply, e.g. a flip of a one-event story). Each operator changes exactly
one thing, so the negative caption stays close in words to the positive one, as in VideoCon.
The same edits, applied to what a generator renders, are the toy generators' failures (generator.py).
"""

from __future__ import annotations

import dataclasses
import random

from synvita.data.records import MISALIGNMENTS
from synvita.toyworld.world import (
    ACTIONS, COLOURS, MAX_OBJECTS, OPPOSITE, RELATIONS, SHAPES, SIZES, Event, Scene, random_entity,
)


def _valid(scene: Scene, original: Scene) -> Scene | None:
    return scene if scene != original and not scene.problems() else None


def _replace_entity(scene: Scene, i: int, **changes) -> Scene:
    es = list(scene.entities)
    es[i] = dataclasses.replace(es[i], **changes)
    return dataclasses.replace(scene, entities=tuple(es))


def action(scene: Scene, rng: random.Random) -> Scene | None:
    k = rng.randrange(len(scene.events))
    ev = scene.events[k]
    # the opposite action when there is one: "moves left" vs "moves right" is the hard case
    choices = [OPPOSITE[ev.action]] if ev.action in OPPOSITE and rng.random() < 0.6 else \
        [a for a in ACTIONS if a != ev.action]
    evs = list(scene.events)
    evs[k] = Event(ev.entity, rng.choice(choices))
    return _valid(dataclasses.replace(scene, events=tuple(evs)), scene)


def attribute(scene: Scene, rng: random.Random) -> Scene | None:
    i = rng.randrange(len(scene.entities))
    e = scene.entities[i]
    if rng.random() < 0.5:
        return _valid(_replace_entity(scene, i, colour=rng.choice([c for c in COLOURS if c != e.colour])), scene)
    return _valid(_replace_entity(scene, i, size=next(s for s in SIZES if s != e.size)), scene)


def object_(scene: Scene, rng: random.Random) -> Scene | None:
    i = rng.randrange(len(scene.entities))
    shape = rng.choice([s for s in SHAPES if s != scene.entities[i].shape])
    return _valid(_replace_entity(scene, i, shape=shape), scene)


def count(scene: Scene, rng: random.Random) -> Scene | None:
    i = rng.randrange(len(scene.entities))
    c = scene.entities[i].count
    return _valid(_replace_entity(scene, i, count=c + rng.choice((-1, 1)) if c > 1 else c + 1), scene)


def relation(scene: Scene, rng: random.Random) -> Scene | None:
    if scene.relation is None:
        return None
    return _valid(dataclasses.replace(scene, relation=OPPOSITE[scene.relation]), scene)


def flip(scene: Scene, rng: random.Random) -> Scene | None:
    if len(scene.events) < 2:
        return None
    k = rng.randrange(len(scene.events) - 1)
    evs = list(scene.events)
    evs[k], evs[k + 1] = evs[k + 1], evs[k]
    return _valid(dataclasses.replace(scene, events=tuple(evs)), scene)


def hallucination(scene: Scene, rng: random.Random) -> Scene | None:
    """An extra object, introduced last and doing something when the story has room."""
    if sum(e.count for e in scene.entities) >= MAX_OBJECTS:
        return None
    extra = random_entity(rng, {e.kind for e in scene.entities}, 1)
    evs = list(scene.events)
    if len(evs) < 3:
        evs.insert(rng.randint(0, len(evs)), Event(len(scene.entities), rng.choice(ACTIONS)))
    return _valid(Scene((*scene.entities, extra), tuple(evs), scene.relation or rng.choice(RELATIONS)), scene)


OPERATORS = dict(zip(MISALIGNMENTS, (action, attribute, object_, count, relation, flip, hallucination)))


def negative(scene: Scene, kind: str, rng: random.Random, tries: int = 8) -> Scene | None:
    """A scene differing from `scene` by one `kind` edit, or None if `kind` cannot apply to it."""
    if kind not in OPERATORS:
        raise KeyError(f"unknown misalignment {kind!r}; known: {', '.join(OPERATORS)}")
    for _ in range(tries):  # some random edits break a rule (e.g. acting after vanishing): redraw
        out = OPERATORS[kind](scene, rng)
        if out is not None:
            return out
    return None
