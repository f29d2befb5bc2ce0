"""Scenes of the toy world: a few coloured shapes doing a few actions one after another.

A scene is plain frozen data, so it can be compared, hashed, stored as JSON (ground truth) and
rendered (render.py) or spoken (grammar.py). `random_scene` draws one deterministically from a seed.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (215, 45, 40),
    "green": (40, 170, 70),
    "blue": (45, 85, 220),
    "yellow": (230, 205, 40),
    "purple": (150, 65, 195),
}
SIZES = {"small": 0.10, "big": 0.17}  # radius as a fraction of the frame side
MOVES = ("move left", "move right", "move up", "move down")
ACTIONS = (*MOVES, "grow", "shrink", "spin", "jump", "appear", "vanish")
RELATIONS = ("left of", "right of", "above", "below")
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above",
            "move left": "move right", "move right": "move left", "move up": "move down",
            "move down": "move up", "grow": "shrink", "shrink": "grow", "appear": "vanish",
            "vanish": "appear"}
MAX_OBJECTS = 3  # rendered shapes, counting the copies of a group


@dataclass(frozen=True)
class Entity:
    """One kind of object; `count` identical copies act together ("two small red circles")."""

    shape: str
    colour: str
    size: str
    count: int = 1

    @property
    def kind(self) -> tuple[str, str, str]:
        return (self.size, self.colour, self.shape)


@dataclass(frozen=True)
class Event:
    entity: int  # index into Scene.entities
    action: str


@dataclass(frozen=True)
class Scene:
    entities: tuple[Entity, ...]
    events: tuple[Event, ...]
    # How entity 0 sits relative to entity 1 at the start; None when there is one entity.
    relation: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Scene":
        return cls(tuple(Entity(**e) for e in d["entities"]), tuple(Event(**e) for e in d["events"]),
                   d.get("relation"))

    def problems(self) -> list[str]:
        """Why this scene cannot be rendered or spoken unambiguously (empty when it is valid)."""
        out = []
        if not 1 <= len(self.entities) <= MAX_OBJECTS:
            out.append(f"{len(self.entities)} entities")
        if sum(e.count for e in self.entities) > MAX_OBJECTS:
            out.append(f"{sum(e.count for e in self.entities)} objects > {MAX_OBJECTS}")
        if len({e.kind for e in self.entities}) != len(self.entities):
            out.append("two entities look alike")
        for e in self.entities:
            if e.shape not in SHAPES or e.colour not in COLOURS or e.size not in SIZES or e.count < 1:
                out.append(f"bad entity {e}")
        if (self.relation is None) != (len(self.entities) == 1) or (
                self.relation is not None and self.relation not in RELATIONS):
            out.append(f"bad relation {self.relation!r}")
        if not 1 <= len(self.events) <= 3:
            out.append(f"{len(self.events)} events")
        for i, e in enumerate(self.entities):
            acts = [ev.action for ev in self.events if ev.entity == i]
            # appear must open an entity's story and vanish must close it, once each.
            if "appear" in acts[1:] or "vanish" in acts[:-1]:
                out.append(f"entity {i} acts while invisible")
        for ev in self.events:
            if not 0 <= ev.entity < len(self.entities) or ev.action not in ACTIONS:
                out.append(f"bad event {ev}")
        return out


def random_entity(rng: random.Random, taken: set, max_count: int) -> Entity:
    while True:
        e = Entity(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)),
                   1 if max_count == 1 or rng.random() < 0.75 else rng.randint(2, max_count))
        if e.kind not in taken:
            return e


def random_scene(seed: int | str) -> Scene:
    """A valid random scene, the same for the same seed on any machine."""
    rng = random.Random(f"toyworld-scene-{seed}")
    while True:
        n = rng.choice((1, 2, 2, 3))
        entities: list[Entity] = []
        for i in range(n):
            room = MAX_OBJECTS - sum(e.count for e in entities) - (n - i - 1)
            entities.append(random_entity(rng, {e.kind for e in entities}, room))
        events = tuple(Event(rng.randrange(n), rng.choice(ACTIONS)) for _ in range(rng.choice((1, 2, 2, 3, 3))))
        scene = Scene(tuple(entities), events, rng.choice(RELATIONS) if n > 1 else None)
        # a repeated event makes order unobservable, and order is what the world is for
        if not scene.problems() and len(set(events)) == len(events):
            return scene
