"""The league of frozen opponents (docs/design.md#self-play): past snapshots of the policy for the frozen seats.

Every refresh (the end of the warm start, then every ``opponent_refresh`` rounds) the policy's weights join the
league, and the oldest member leaves when it is full. Each game with a frozen seat draws one member, by recency
or by prioritised fictitious self-play (PFSP: members the learner beats less often are drawn more often; Vinyals
et al. 2019, "Grandmaster level in StarCraft II", whose ``f_hard(x) = (1 − x)^p`` is the weighting here).
Scripted anchors are not members: they are the other names of a game's opponent mix, e.g.
``opponents: {frozen: 0.75, linear: 0.25}``.

The members' weights live on the CPU (one copy of the policy each, or of its adapters under LoRA); a frozen seat plays
through one model, the module's opponent snapshot, into which a member's weights are loaded when another member played
last.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal
from typing import Protocol

from torch import Tensor

from maro_lightning.rollout.generation import GenerationBackend


@dataclass(frozen=True)
class LeagueConfig:
    """Which past policies the frozen seats play, and how a game draws one."""

    size: int = 1
    """Past snapshots kept (the newest ``size``). 1: the frozen seat is always the latest snapshot."""

    sampling: Literal["recency", "pfsp", "uniform"] = "recency"
    """How a game draws its member: "recency" (the newest most often, see ``recency_decay``), "pfsp" (the ones the
    learner beats least most often, see ``pfsp_power``) or "uniform"."""

    recency_decay: float = 0.7
    """recency: a member k refreshes older than the newest has weight ``recency_decay ** k``."""

    pfsp_power: float = 2.0
    """pfsp: a member has weight ``(1 − p) ** pfsp_power``, p the learner's success rate against it with a uniform
    prior, ``(successes + 1) / (games + 2)``. 2 is AlphaStar's f_hard."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"league size must be >= 1, got {self.size}")
        if not 0.0 < self.recency_decay <= 1.0:
            raise ValueError(f"recency_decay must be in (0, 1], got {self.recency_decay}")
        if self.pfsp_power < 0.0:
            raise ValueError(f"pfsp_power must be >= 0, got {self.pfsp_power}")


@dataclass
class Member:
    """A past policy: its weights (CPU), the round it joined, and the learner's record against it."""

    id: int
    joined: int
    """The round it joined."""
    weights: dict[str, Tensor] = field(repr=False)
    successes: float = 0.0
    games: int = 0

    @property
    def learner_success_rate(self) -> float:
        """The learner's success rate against this member, with a uniform prior (0.5 before any game)."""
        return (self.successes + 1.0) / (self.games + 2.0)


class Snapshot(Protocol):
    """Where a member's weights are loaded: a copy of the policy, or under LoRA an adapter snapshot."""

    def load_state_dict(self, weights: Mapping[str, Tensor]) -> Any: ...


class OpponentPool(Protocol):
    """What the rollout engine needs for frozen seats: a member per game, and a backend that plays it."""

    def sample(self, rng: random.Random) -> int: ...

    def backend(self, member: int) -> GenerationBackend: ...


class League:
    """The members, their draw probabilities and the learner's record against each (see the module docstring)."""

    def __init__(self, config: LeagueConfig | None = None) -> None:
        self.config = config or LeagueConfig()
        self.members: list[Member] = []  # oldest first
        self.next_id = 0
        self._loaded: tuple[int, int] | None = None  # (id of the model, member) whose weights it holds

    def add(self, weights: Mapping[str, Tensor], joined: int) -> Member:
        """A copy of the policy's ``weights`` (its state dict, or under LoRA its adapter's) joins as the newest member
        (at round ``joined``); the oldest leaves when the league is full."""
        copied = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights.items()}
        member = Member(self.next_id, joined, copied)
        self.members = [*self.members, member][-self.config.size :]
        self.next_id += 1
        return member

    def probabilities(self) -> list[float]:
        """The draw probability of every member, oldest first."""
        if not self.members:
            raise RuntimeError("the league is empty: add the policy before drawing an opponent")
        if self.config.sampling == "recency":
            newest = len(self.members) - 1
            weights = [self.config.recency_decay ** (newest - i) for i in range(len(self.members))]
        elif self.config.sampling == "pfsp":
            weights = [(1.0 - m.learner_success_rate) ** self.config.pfsp_power for m in self.members]
        else:
            weights = [1.0] * len(self.members)
        total = sum(weights)
        return [w / total for w in weights]

    def sample(self, rng: random.Random) -> int:
        """A member's id, drawn with :meth:`probabilities` from ``rng``."""
        return rng.choices([m.id for m in self.members], weights=self.probabilities())[0]

    def record(self, member: int, success: float) -> None:
        """The learner's success (0 to 1) in one game against ``member``; a member that left is ignored."""
        for m in self.members:
            if m.id == member:
                m.successes, m.games = m.successes + success, m.games + 1

    def load(self, member: int, model: Snapshot) -> Snapshot:
        """``model`` (the opponent snapshot) holding ``member``'s weights (loaded only if it held another member's)."""
        if self._loaded != (id(model), member):
            weights = next((m.weights for m in self.members if m.id == member), None)
            if weights is None:
                raise KeyError(f"league member {member} is not in the league (members: {[m.id for m in self.members]})")
            model.load_state_dict(weights)
            self._loaded = (id(model), member)
        return model

    def metrics(self) -> dict[str, float]:
        """The league's size and the learner's success rate against it, weighted by the draw probabilities."""
        if not self.members:
            return {}
        rates = [m.learner_success_rate for m in self.members]
        expected = sum(p * r for p, r in zip(self.probabilities(), rates, strict=True))
        return {"league/members": float(len(self.members)), "league/learner_success_rate": expected}

    def state_dict(self) -> dict[str, Any]:
        members = [vars(m).copy() for m in self.members]
        return {"members": members, "next_id": self.next_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.members = [Member(**m) for m in state["members"]][-self.config.size :]
        self.next_id, self._loaded = state["next_id"], None
