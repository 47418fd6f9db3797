"""A user's module, imported by a config's ``imports:`` (tests/training/test_user_imports.py): it registers a game,
its scripted agents and an advantage mode, none of which the library knows."""

from __future__ import annotations

import functools

import torch

from maro_lightning import envs
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import register_advantage
from maro_lightning.envs.bazaar import Bazaar
from maro_lightning.envs.registry import register_agent
from maro_lightning.envs.registry import register_game

CALLS: list[tuple[str, ...]] = []  # the games of every round the mode credited


@register_game
class QuickBazaar(Bazaar):
    """Bazaar with at most 4 messages: a quicker haggle."""

    name = "quick_bazaar"

    def __init__(self, *, max_messages: int = 4, **options) -> None:
        super().__init__(max_messages=max_messages, **options)


for _agent in envs.agent_names("bazaar"):  # Bazaar's scripted agents play it as well
    register_agent("quick_bazaar", _agent)(functools.partial(envs.agent, _agent, game="bazaar"))


@register_advantage("sign_of_reward", normalize_per_role=False)
def sign_of_reward(batch, rewards, config):  # CreditBatch, [N] M1 rewards, CreditConfig -> [N]
    """Only the direction of each behaviour's M1 reward: +1, 0 or -1."""
    CALLS.append(batch.games)
    return torch.sign(rewards)


class CountingAssigner(CreditAssigner):
    """MARO's assigner that counts the rounds it weighted (injected with ``credit: {class_path: ...}``)."""

    rounds = 0

    def compute_weights(self, batch):
        type(self).rounds += 1
        return super().compute_weights(batch)
