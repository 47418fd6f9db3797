"""Reward schemes shipped with the library (docs/design.md#extending): credit assigners with shaped immediate rewards.

Inject one into a run with ``model.init_args.credit: {class_path: maro_lightning.credit.shaping.NoDealCost,
init_args: {config: {mode: maro, ...}, cost: 0.2}}``; every advantage mode then uses the shaped rewards (M1 through
the TD errors, the baselines through the returns).
"""

from __future__ import annotations

import functools

from torch import Tensor

from maro_lightning import envs
from maro_lightning.credit.assigner import CreditAssigner
from maro_lightning.credit.config import CreditConfig
from maro_lightning.credit.episode import Episode


class NoDealCost(CreditAssigner):
    """MARO, plus a cost on the last behaviour of a player whose game ended without an agreement.

    In a negotiation, no deal scores 0 (an outside option), so a policy that learns to hold out for better terms
    can drift into closing fewer deals (both-role self-play in Bazaar did: docs/design.md#tiny-model). The cost makes
    a failed negotiation worse than the outside option, for both sides. Games with an agreement metric only
    (``SocialEnv.agreement_metric``: Bazaar's ``deal``, Deal's ``agreement``).

    Args:
        config: the credit switches, as for :class:`CreditAssigner`.
        cost: subtracted from the player's last immediate reward when the game ended without agreement (>= 0).
        roles: the roles that pay it (e.g. ``[seller]``: the side whose last offer decides, in Bazaar); None: all.
    """

    def __init__(self, config: CreditConfig | None = None, cost: float = 0.2, roles: list[str] | None = None) -> None:
        super().__init__(config)
        if cost < 0:
            raise ValueError(f"NoDealCost: cost must be >= 0, got {cost}")
        if roles is not None and not roles:
            raise ValueError("NoDealCost: roles is empty (None: every role pays the cost)")
        self.cost, self.roles = cost, None if roles is None else frozenset(roles)

    def behaviour_rewards(self, episode: Episode, player: int) -> Tensor:
        rewards = super().behaviour_rewards(episode, player)  # [T] float64: z_i on the last behaviour
        pays = self.roles is None or episode.roles[player] in self.roles
        if pays and not episode.outcome.metrics[_agreement_metric(episode.game)]:
            rewards[-1] -= self.cost
        return rewards


@functools.cache
def _agreement_metric(game: str) -> str:
    metric = envs.make(game).agreement_metric
    if metric is None:
        with_agreement = [name for name in envs.names() if envs.make(name).agreement_metric is not None]
        raise ValueError(f"NoDealCost needs a game with an agreement ({', '.join(with_agreement)}); got {game}")
    return metric
