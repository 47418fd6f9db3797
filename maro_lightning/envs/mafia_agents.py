"""Scripted Mafia agents, acting through text (docs/games.md#mafia).

They read only their player's view. Two fixed phrases carry what they tell each other, and the agents parse
them back from the public record with :data:`ACCUSE` and :data:`CLAIM`: ``I accuse Player k`` and
``I am the Detective``. ``scripted`` plays the role it was dealt: Mafia -> ``scripted_mafia``, Detective ->
``truthful_detective``, Doctor -> ``scripted_doctor``, Villager -> ``bandwagon``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.registry import register_agent

ACCUSE = re.compile(r"\bI accuse Player (\d{1,6})", re.IGNORECASE)
CLAIM = re.compile(r"\bI am the Detective\b", re.IGNORECASE)
CHATTER = ("I have nothing to add.", "Let us think carefully.", "Something feels off today.", "I trust nobody yet.")


def accusations(view: dict[str, Any], speakers: Iterable[int] | None = None) -> Counter:
    """How often each living player was accused in today's talk (by ``speakers`` only, when given)."""
    alive, allowed = set(view["alive"]), None if speakers is None else set(speakers)
    counts: Counter = Counter()
    for event in view["events"]:
        if event[0] == "talk" and event[1] == view["day"] and (allowed is None or event[3] in allowed):
            counts.update(k for k in map(int, ACCUSE.findall(event[4])) if k in alive)
    return counts


def claimed_detectives(view: dict[str, Any]) -> list[int]:
    """Living players who said ``I am the Detective`` on any day, in order of first claim."""
    claims = [event[3] for event in view["events"] if event[0] == "talk" and CLAIM.search(event[4])]
    return [p for p in dict.fromkeys(claims) if p in view["alive"]]


def living_others(view: dict[str, Any]) -> list[int]:
    return [p for p in view["alive"] if p != view["player"]]


class _Seat(ScriptedAgent):
    """Splits a turn into talk (day discussion) and choosing a target (night actions and day votes)."""

    def act(self, view: dict[str, Any]) -> str:
        if view["action"] == "talk":
            return self.talk(view)
        return f"[{view['action'].capitalize()}: Player {self.target(view)}]"

    def talk(self, view: dict[str, Any]) -> str:
        return self.rng.choice(CHATTER)

    def target(self, view: dict[str, Any]) -> int:
        return self.rng.choice(view["targets"])

    def most(self, counts: Counter, allowed: list[int]) -> int | None:
        """The most counted of ``allowed`` (ties at random), None when none of them was counted."""
        scores = {p: counts[p] for p in allowed if counts[p]}
        if not scores:
            return None
        top = max(scores.values())
        return self.rng.choice([p for p, c in scores.items() if c == top])


@register_agent("mafia", "random")
class RandomVoter(_Seat):
    """Random legal targets; short random talk, now and then a random accusation."""

    def talk(self, view: dict[str, Any]) -> str:
        if self.rng.random() < 0.2:
            return f"I accuse Player {self.rng.choice(living_others(view))}."
        return super().talk(view)


@register_agent("mafia", "bandwagon")
class Bandwagon(_Seat):
    """Accuses and votes for the player most accused in today's talk (a random one before anyone accused).

    Night actions, if its role has any, are random legal targets.
    """

    def suspect(self, view: dict[str, Any]) -> int:
        others = living_others(view)
        top = self.most(accusations(view), others)
        return self.rng.choice(others) if top is None else top

    def talk(self, view: dict[str, Any]) -> str:
        return f"I accuse Player {self.suspect(view)}."

    def target(self, view: dict[str, Any]) -> int:
        if view["phase"] == "night":
            return super().target(view)
        return self.suspect(view)


@register_agent("mafia", "truthful_detective")
class TruthfulDetective(Bandwagon):
    """Investigates players it has not investigated yet; once it finds a living Mafia member, claims to be the
    Detective, names that player in talk and votes for it. Before that it plays like :class:`Bandwagon`."""

    def found(self, view: dict[str, Any]) -> int | None:
        return next((t for _, t, bad in view["investigations"] if bad and t in view["alive"]), None)

    def talk(self, view: dict[str, Any]) -> str:
        found = self.found(view)
        return super().talk(view) if found is None else f"I am the Detective. I accuse Player {found}."

    def target(self, view: dict[str, Any]) -> int:
        if view["phase"] == "night":
            seen = {t for _, t, _ in view["investigations"]}
            return self.rng.choice([t for t in view["targets"] if t not in seen] or view["targets"])
        found = self.found(view)
        return super().target(view) if found is None else found


@register_agent("mafia", "scripted_doctor")
class ScriptedDoctor(Bandwagon):
    """Protects a player who claimed to be the Detective, else a random other player; votes like Bandwagon."""

    def target(self, view: dict[str, Any]) -> int:
        claimed = [p for p in claimed_detectives(view) if p in view["targets"]]
        if view["phase"] == "night" and claimed:
            return claimed[0]
        return super().target(view)


@register_agent("mafia", "scripted_mafia")
class ScriptedMafia(_Seat):
    """Never targets a teammate. At night kills a claimed Detective, else follows a teammate's vote, else picks
    at random. By day picks one non-Mafia scapegoat (a claimed Detective, a teammate's accusation, the most
    accused, or a random one), accuses it in talk and votes for it."""

    def __init__(self) -> None:
        super().__init__()
        self.scapegoat: tuple[int, int] | None = None  # (day, player): talk and vote agree within a day

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self.scapegoat = None

    def pick(self, view: dict[str, Any]) -> int:
        if self.scapegoat is not None and self.scapegoat[0] == view["day"] and self.scapegoat[1] in view["alive"]:
            return self.scapegoat[1]
        innocents = [p for p in living_others(view) if p not in view["teammates"]]
        claimed = [p for p in claimed_detectives(view) if p in innocents]
        choice = claimed[0] if claimed else self.most(accusations(view, view["teammates"]), innocents)
        choice = self.most(accusations(view), innocents) if choice is None else choice
        choice = self.rng.choice(innocents) if choice is None else choice
        self.scapegoat = (view["day"], choice)
        return choice

    def talk(self, view: dict[str, Any]) -> str:
        return f"I accuse Player {self.pick(view)}."

    def target(self, view: dict[str, Any]) -> int:
        if view["phase"] != "night":
            return self.pick(view)
        claimed = [p for p in claimed_detectives(view) if p in view["targets"]]
        tonight = [t for k, v, t, _ in view["mafia_votes"] if k == view["day"] and v != view["player"]]
        return (claimed or [t for t in tonight if t in view["targets"]] or [super().target(view)])[0]


_BY_ROLE = {"mafia": ScriptedMafia, "detective": TruthfulDetective, "doctor": ScriptedDoctor}


@register_agent("mafia", "scripted")
class RoleAware(ScriptedAgent):
    """Plays the role it was dealt with that role's scripted agent (a Villager plays :class:`Bandwagon`)."""

    def __init__(self) -> None:
        super().__init__()
        self.seat: ScriptedAgent | None = None

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self.seat = None

    def act(self, view: dict[str, Any]) -> str:
        if self.seat is None:  # the role is known only from the first view of a game
            self.seat = _BY_ROLE.get(view["role"], Bandwagon)()
            self.seat.rng = self.rng
        return self.seat.act(view)
