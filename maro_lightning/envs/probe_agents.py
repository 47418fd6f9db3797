"""Scripted agents of the mechanism probes, acting through text (docs/games.md#mechanism-probes).

They read only their player's view. Every agent plays either seat of its game (the tiny tokenizer's corpus and the
evaluation seat them anywhere).

- ``probe_decisive`` and ``probe_noisy``: ``random`` (any number, sometimes talk), ``careless`` (right on the turn
  that counts with probability 0.55, the teacher of the probe configs: room for RL above it) and ``sharp`` (always
  right there). On the turns that do not count, all three raise a random flag.
- ``probe_skewed``: ``random``, ``naive`` (hides behind a random door; opens random unopened doors: the teacher)
  and ``predictable`` (a creature of habit: hides behind the seeker's door s or the next one; opens the doors in
  order from s). ``predictable`` is what each role can learn to exploit.
"""

from __future__ import annotations

import random
from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.registry import register_agent

CARELESS_ACCURACY = 0.55  # the teacher's hit rate where it counts: cloning it leaves RL room to improve
TALK_RATE = 0.1  # how often `random` talks instead of acting
CHOOSERS = ("probe_decisive", "probe_noisy")


def tag(view: dict[str, Any], k: int) -> str:
    """The action the view asks for, with number ``k``: ``[Flag: 2]``."""
    return f"[{view['action'].capitalize()}: {k}]"


def careless_pick(rng: random.Random, right: int, high: int, accuracy: float) -> int:
    """``right`` with probability ``accuracy``, else one of the other numbers 1..high, uniformly."""
    if rng.random() < accuracy:
        return right
    return rng.choice([k for k in range(1, high + 1) if k != right])


def right_answer(view: dict[str, Any]) -> int | None:
    """The number that scores now, or None when this turn does not count (derived from the view alone).

    ``probe_decisive``: the ship's flag on the watch it shows; ``probe_noisy``: the most valuable lot.
    """
    if view["game"] == "probe_decisive":
        return view["ship"] if view["ship"] is not None and not view["answered"] else None
    values = view["values"]
    return values.index(max(values)) + 1


def cyclic(start: int, offset: int, doors: int) -> int:
    """The door ``offset`` places after ``start``, counting round the hall (doors 1..doors)."""
    return (start - 1 + offset) % doors + 1


class RandomChoice(ScriptedAgent):
    """A random valid message of any probe: a uniform number for its tag, or talk one time in ten."""

    def act(self, view: dict[str, Any]) -> str:
        if self.rng.random() < TALK_RATE:
            return "Nothing to report."
        return tag(view, self.rng.randint(1, view["choices"]))


class Careless(ScriptedAgent):
    """Right where it counts with probability ``accuracy`` (else a uniformly random wrong number); a random number
    on the turns that do not count.

    Args:
        accuracy: the probability of the right answer where it counts (1: ``sharp``).
    """

    def __init__(self, accuracy: float = CARELESS_ACCURACY) -> None:
        super().__init__()
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be a probability, got {accuracy}")
        self.accuracy = accuracy

    def act(self, view: dict[str, Any]) -> str:
        right = right_answer(view)
        if right is None:
            return tag(view, self.rng.randint(1, view["choices"]))
        return tag(view, careless_pick(self.rng, right, view["choices"], self.accuracy))

    def __repr__(self) -> str:
        return f"Careless(accuracy={self.accuracy})"


for _game in CHOOSERS:
    register_agent(_game, "random")(RandomChoice)
    register_agent(_game, "careless")(Careless)
    register_agent(_game, "sharp")(lambda: Careless(accuracy=1.0))
register_agent("probe_skewed", "random")(RandomChoice)


@register_agent("probe_skewed", "naive")
class Naive(ScriptedAgent):
    """Hides the prize behind a uniformly random door; opens uniformly random doors not yet opened."""

    def act(self, view: dict[str, Any]) -> str:
        if view["role"] == "hider":
            return tag(view, self.rng.randint(1, view["doors"]))
        closed = [k for k in range(1, view["doors"] + 1) if k not in view["opened"]]
        return tag(view, self.rng.choice(closed or [1]))


@register_agent("probe_skewed", "predictable")
class Predictable(ScriptedAgent):
    """A creature of habit: hides behind the seeker's door s or the next one (each half the time); opens the doors
    in order from s, round the hall, skipping those already open."""

    def act(self, view: dict[str, Any]) -> str:
        doors, start = view["doors"], view["start"]
        if view["role"] == "hider":
            return tag(view, cyclic(start, self.rng.randint(0, 1), doors))
        order = [cyclic(start, offset, doors) for offset in range(doors)]
        return tag(view, next((k for k in order if k not in view["opened"]), start))
