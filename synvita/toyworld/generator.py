"""Toy text-to-video generators: the `toy` backend of the generation job.

A profile parses the prompt into a scene and renders it in its own synthetic style, but first
fails the way real generators do, each at its own configurable rate:
  flip           ignores the event order (renders two neighbouring events swapped)
  hallucination  drops the object introduced last (the one a hallucination negative adds)
  attribute      binds attributes to the wrong object (swaps two objects' colours)
  count          gets a count wrong by one
  action, object, relation   renders a different action / shape / relation.
What was actually rendered is appended to `ground_truth` (a JSON Lines path in the settings) for
diagnostics only: weight quality in the demo. No learner or scorer reads it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synvita.data.records import MISALIGNMENTS
from synvita.generators.backends import BACKENDS, SettingsError
from synvita.toyworld import negatives
from synvita.toyworld.grammar import parse
from synvita.toyworld.render import Style, render
from synvita.toyworld.world import Scene
from synvita.utils import stable_seed


def _drop_last_object(scene: Scene, rng: random.Random) -> Scene | None:
    keep = len(scene.entities) - 1
    events = tuple(e for e in scene.events if e.entity < keep)
    if keep < 1 or not events:
        return None
    return negatives._valid(Scene(scene.entities[:keep], events, scene.relation if keep > 1 else None), scene)


def _swap_colours(scene: Scene, rng: random.Random) -> Scene | None:
    if len(scene.entities) < 2:
        return None
    i, j = rng.sample(range(len(scene.entities)), 2)
    a, b = scene.entities[i], scene.entities[j]
    swapped = negatives._replace_entity(negatives._replace_entity(scene, i, colour=b.colour), j, colour=a.colour)
    return negatives._valid(swapped, scene)


FAILURES = {**negatives.OPERATORS, "hallucination": _drop_last_object, "attribute": _swap_colours}


@dataclass(frozen=True)
class Profile:
    style: Style
    failure_rates: dict = field(default_factory=dict)  # misalignment type -> probability


# Three generators with different looks and different weaknesses, as CogVideoX, LaVie and
# VideoCrafter2 differ in the paper's Fig. 5.2.
PROFILES = {
    "toy-sharp": Profile(Style("toy-sharp", background=(228, 226, 218)),
                         dict(flip=0.5, hallucination=0.4, attribute=0.2, count=0.3, action=0.1, object=0.05, relation=0.2)),
    "toy-soft": Profile(Style("toy-soft", background=(200, 215, 230), blur=1.1, cast=(0.92, 1.0, 1.12)),
                        dict(flip=0.7, hallucination=0.6, attribute=0.3, count=0.4, action=0.15, object=0.1, relation=0.3)),
    "toy-flicker": Profile(Style("toy-flicker", background=(235, 220, 195), cast=(1.1, 1.0, 0.85), flicker=0.12),
                           dict(flip=0.3, hallucination=0.3, attribute=0.4, count=0.2, action=0.1, object=0.1, relation=0.1)),
}


@dataclass(frozen=True)
class Realised:
    """What a generator made of a prompt: the scene it rendered and the failures that changed it."""

    prompt: Scene
    rendered: Scene
    failures: tuple[str, ...]


@BACKENDS.register("toy")
class ToyBackend:
    """`BACKENDS["toy"]`. Settings: profile, frames, size, fps, failure_rates (overrides), ground_truth."""

    SETTINGS = {"profile", "frames", "size", "fps", "failure_rates", "ground_truth"}

    def __init__(self, profile: str = "toy-sharp", frames: int = 12, size: int = 48, fps: float = 8.0,
                 failure_rates: dict | None = None, ground_truth: str | None = None):
        if profile not in PROFILES:
            raise SettingsError(f"unknown toy profile {profile!r}; known: {', '.join(PROFILES)}")
        rates = {**PROFILES[profile].failure_rates, **(failure_rates or {})}
        for kind, p in rates.items():
            if kind not in MISALIGNMENTS or not 0 <= p <= 1:
                raise SettingsError(f"backend 'toy': failure_rates: {kind}={p!r}: needs a misalignment type and a rate in [0, 1]")
        self.profile, self.style, self.rates = profile, PROFILES[profile].style, rates
        self.frames, self.size, self.fps = frames, size, float(fps)
        self.ground_truth = Path(ground_truth) if ground_truth else None

    @classmethod
    def from_settings(cls, settings: dict) -> "ToyBackend":
        unknown = set(settings) - cls.SETTINGS
        if unknown:
            raise SettingsError(f"backend 'toy': unknown setting(s) {sorted(unknown)}; known: {sorted(cls.SETTINGS)}")
        return cls(**settings)

    def realise(self, prompt: str, seed: int) -> Realised:
        """The scene this generator renders for `prompt` (a `CaptionError` if it cannot read it)."""
        wanted = parse(prompt)
        rng = random.Random(stable_seed("toy-failure", self.profile, seed, prompt))
        scene, failures = wanted, []
        for kind in MISALIGNMENTS:  # a fixed order, so the same seed fails the same way
            if rng.random() < self.rates.get(kind, 0.0):
                changed = FAILURES[kind](scene, rng)
                if changed is not None:
                    scene, failures = changed, failures + [kind]
        return Realised(wanted, scene, tuple(failures))

    def generate(self, prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        clips = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            made = self.realise(prompt, seed)
            clips.append(render(made.rendered, self.style, seed, self.frames, self.size))
            if self.ground_truth is not None:
                self.ground_truth.parent.mkdir(parents=True, exist_ok=True)
                with open(self.ground_truth, "a") as f:
                    f.write(json.dumps({"generator": self.profile, "prompt": prompt, "seed": seed,
                                        "rendered": made.rendered.to_json(), "failures": list(made.failures),
                                        "faithful": made.rendered == made.prompt}) + "\n")
        return clips

