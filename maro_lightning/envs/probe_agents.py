"""Scripted agents of the mechanism probes, acting through text (docs/games.md#mechanism-probes).

They read only their player's view. Every agent plays either seat of its game (the tiny tokenizer's corpus and the
evaluation seat them anywhere).

- ``probe_decisive`` and ``probe_noisy``: ``random`` (any number, sometimes talk), ``careless`` (on the turn that
  counts, right with probability 0.55 and otherwise quiet, a miss: the teacher of the probe configs, with room for RL
  above it) and ``sharp`` (always right there). On the turns that do not count (the lookouts' watches without a
  ship), ``careless`` and ``sharp`` keep quiet (talk) and ``random`` raises a random flag.
- ``probe_skewed``: ``random``, ``naive`` (hides behind a random door; opens the closed doors in order from door 1:
  the teacher) and ``predictable`` (a creature of habit: hides behind the seeker's door s or the next one; opens the
  doors in order from s). ``predictable`` is what each role can learn to exploit.
"""

from __future__ import annotations

from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.registry import register_agent

CARELESS_ACCURACY = 0.55  # the teacher's hit rate where it counts: cloning it leaves RL room to improve
TALK_RATE = 0.1  # how often `random` talks instead of acting
QUIET = "All quiet."  # what `careless` and `sharp` write on a turn that does not count, or when they miss
CHOOSERS = ("probe_decisive", "probe_noisy")


def tag(view: dict[str, Any], k: int) -> str:
    """The action the view asks for, with number ``k``: ``[Flag: 2]``."""
    return f"[{view['action'].capitalize()}: {k}]"


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
    """Where it counts, right with probability ``accuracy`` and otherwise quiet (it missed the ship; it took no lot);
    quiet on the turns that do not count.

    Both choices are what a tiny model can clone (docs/games.md#decisive-watch-m1): cloned on random flags on the
    watches without a ship, it did not learn the ship's watch even from a teacher always right there (nine noise
    targets for one signal); and from a teacher whose mistakes were random wrong numbers it learned the numbers'
    marginal (uniform) rather than the weak conditional (0.55 against 0.225 each), answering at chance. A mistake
    that is a miss leaves a deterministic copy and a 55% marginal, both learnt.

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
        if right is None or self.rng.random() >= self.accuracy:
            return QUIET
        return tag(view, right)

    def __repr__(self) -> str:
        return f"Careless(accuracy={self.accuracy})"


for _game in CHOOSERS:
    register_agent(_game, "random")(RandomChoice)
    register_agent(_game, "careless")(Careless)
    register_agent(_game, "sharp")(lambda: Careless(accuracy=1.0))
register_agent("probe_skewed", "random")(RandomChoice)


@register_agent("probe_skewed", "naive")
class Naive(ScriptedAgent):
    """Hides the prize behind a uniformly random door; opens the lowest-numbered door still closed (it ignores s).

    The seeker is deterministic so that a tiny model can clone it: a seeker opening random closed doors was cloned
    as one opening random doors, closed or not (the marginal, not the conditional). Against ``predictable`` both win
    5 games in 6.
    """

    def act(self, view: dict[str, Any]) -> str:
        if view["role"] == "hider":
            return tag(view, self.rng.randint(1, view["doors"]))
        return tag(view, (view["closed"] or [1])[0])


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
