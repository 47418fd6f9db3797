"""Hand-made episodes for the credit tests.

The canonical round (``mafia_round``): two Mafia-like games with three roles, uneven behaviour counts,
wins and losses. Flattening order (episode, then player, then play order) and the utility estimates:

    row  episode player role      z   success  V      Q
    0    0       0      mafia    +1   yes      0.5    0.75
    1    0       0      mafia    +1   yes      0.25   0.5
    2    0       1      villager −1   no       0     −0.5
    3    0       1      villager −1   no      −0.5   −0.25
    4    0       1      villager −1   no      −0.25  −1
    5    0       2      doctor   −1   no       0.5    0
    6    1       0      mafia    −1   no       0.25  −0.25
    7    1       1      villager +1   yes     −0.5    0
    8    1       1      villager +1   yes      0.5    0.75
    9    1       2      doctor   +1   yes      0      0.5
    10   1       2      doctor   +1   yes      0.5    1

All numbers are dyadic, so the hand-computed results below are exact in floating point.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from maro_lightning.credit import Behaviour
from maro_lightning.credit import Episode
from maro_lightning.envs import Outcome

AgentSpec = tuple[str, float, bool, int]  # role, z, success, number of behaviours


def build_episode(
    game: str, seed: int, agents: Mapping[int, AgentSpec], infos: Mapping[tuple[int, int], dict[str, Any]] | None = None
) -> Episode:
    """An episode whose players act round-robin; ``infos[(player, t)]`` is the info of a behaviour (invalid if it
    holds ``invalid_reason``)."""
    infos = infos or {}
    roles = {p: spec[0] for p, spec in agents.items()}
    behaviours: dict[int, list[Behaviour]] = {p: [] for p in agents}
    index = 0
    for t in range(max(spec[3] for spec in agents.values())):
        for p, (role, _, _, count) in agents.items():
            if t < count:
                info = infos.get((p, t), {})
                valid = "invalid_reason" not in info
                behaviours[p].append(Behaviour(index, p, role, "play", f"p{p} t{t}", "", None, valid, info))
                index += 1
    outcome = Outcome(
        rewards={p: spec[1] for p, spec in agents.items()},
        success={p: spec[2] for p, spec in agents.items()},
        roles=roles,
        metrics={},
    )
    return Episode(game, seed, roles, outcome, behaviours)


E0 = {0: ("mafia", 1.0, True, 2), 1: ("villager", -1.0, False, 3), 2: ("doctor", -1.0, False, 1)}
E1 = {0: ("mafia", -1.0, False, 1), 1: ("villager", 1.0, True, 2), 2: ("doctor", 1.0, True, 2)}
VALUES = [0.5, 0.25, 0.0, -0.5, -0.25, 0.5, 0.25, -0.5, 0.5, 0.0, 0.5]
Q_VALUES = [0.75, 0.5, -0.5, -0.25, -1.0, 0.0, -0.25, 0.0, 0.75, 0.5, 1.0]


@pytest.fixture
def make_episode() -> Callable[..., Episode]:
    return build_episode


@pytest.fixture
def mafia_round() -> tuple[list[Episode], torch.Tensor, torch.Tensor]:
    """The canonical round: 2 episodes, 11 behaviours, V and Q as in the module docstring."""
    episodes = [build_episode("mafia", 0, E0), build_episode("mafia", 1, E1)]
    return episodes, torch.tensor(VALUES), torch.tensor(Q_VALUES)
