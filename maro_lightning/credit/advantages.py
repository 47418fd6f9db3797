"""Advantage modes (docs/design.md#formulation): small pure functions over a rollout round, chosen by name.

A mode maps ``(batch, rewards, config) -> advantages``, all per-behaviour ``[N]`` float64 tensors in the
round's flattening order, where ``rewards`` are the M1 rewards r_t. It also declares whether its
advantages are standardised per (game, role) by default (``CreditConfig.normalize_per_role`` overrides).

Notation, per agent i (one player in one episode) with behaviours t = 1..T:
``ρ_t`` the immediate reward of behaviour t (z_i on the last one, 0 before, unless a subclass shapes it),
``V_t``/``Q_t`` the utility head before/after the behaviour, ``R_i = Σ_t ρ_t`` the agent's return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from maro_lightning.credit.config import CreditConfig
from maro_lightning.credit.episode import CreditBatch
from maro_lightning.registry import Registry

AdvantageFn = Callable[[CreditBatch, Tensor, CreditConfig], Tensor]
F = TypeVar("F", bound=AdvantageFn)


@dataclass(frozen=True)
class AdvantageMode:
    """A registered mode: the function and whether it standardises per role unless the config says otherwise."""

    fn: AdvantageFn
    normalize_per_role: bool


MODES: Registry[AdvantageMode] = Registry("advantage mode")


def register_advantage(name: str, *, normalize_per_role: bool = True) -> Callable[[F], F]:
    """Decorator: make ``fn(batch, rewards, config) -> [N] advantages`` selectable as ``CreditConfig(mode=name)``."""
    return MODES.decorator(name, lambda fn: AdvantageMode(fn, normalize_per_role))


def advantage_modes() -> list[str]:
    """Names of the registered advantage modes."""
    return MODES.names()


def advantage_mode(name: str) -> AdvantageMode:
    """The mode registered as ``name``; a clear error listing the names otherwise."""
    return MODES.get(name)


# ------------------------------------------------------------------------------------ M1: the decomposition
def discounted_sum(x: Tensor, last: Tensor, factor: float) -> Tensor:
    """``y_t = x_t + factor · y_{t+1}`` within each agent, ``y_T = x_T``: [N], [N] bool -> [N] float64.

    Agents are contiguous, so row i + 1 continues row i's agent exactly when ``last[i]`` is False.
    """
    out, ends = x.tolist(), last.tolist()
    for i in range(len(out) - 2, -1, -1):
        if not ends[i]:
            out[i] += factor * out[i + 1]
    return torch.tensor(out, dtype=torch.float64)


def td_errors(batch: CreditBatch, gamma: float) -> Tensor:
    """Turn-level TD errors ``δ_t = ρ_t + γ·V_{t+1} − V_t`` with ``V_{T+1} = 0``: [N] float64.

    With the default rewards this is ``δ_t = γ·V_{t+1} − V_t`` and ``δ_T = z_i − V_T``; for γ = 1 they
    telescope: ``Σ_t δ_t = z_i − V_1``, the final outcome split exactly over the behaviours.
    """
    next_values = torch.where(batch.last, 0.0, batch.values.roll(-1))  # the roll's wrap lands on a last row
    return batch.turn_rewards + gamma * next_values - batch.values


def gae(batch: CreditBatch, lam: float, gamma: float) -> Tensor:
    """M1 rewards ``r_t = Σ_k (γλ)^k δ_{t+k}``: [N] float64.

    Generalised advantage estimation (Schulman et al. 2015, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", arXiv 1506.02438), at the turn level. λ = 1, γ = 1: ``r_t = z_i − V_t``;
    λ = 0: ``r_t = δ_t``.
    """
    return discounted_sum(td_errors(batch, gamma), batch.last, gamma * lam)


def returns_to_go(batch: CreditBatch, gamma: float) -> Tensor:
    """Monte-Carlo returns ``G_t = Σ_k γ^k ρ_{t+k}``: [N] float64 (z_i on every row by default with γ = 1)."""
    return discounted_sum(batch.turn_rewards, batch.last, gamma)


def decomposed_rewards(batch: CreditBatch, config: CreditConfig) -> Tensor:
    """The M1 reward of each behaviour: [N] float64.

    ``decompose=True``: ``r_t = GAE_λ(δ)_t``. ``decompose=False`` (−M1): ``r_t = R_i − V_{i,1}`` on every
    behaviour of agent i, the sum of the TD errors (γ = 1) given undivided to each behaviour. This keeps the
    learned baseline and removes only the per-turn split; λ = 1 would not do that, since ``z − V_t`` still
    differs from turn to turn.
    """
    if config.decompose:
        return gae(batch, config.lam, config.gamma)
    return batch.agent_return - batch.agent_first(batch.values)[batch.agent]


# ------------------------------------------------------------------------------------------ group statistics
def group_mean(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """[K] values, [K] int64 group ids -> [num_groups] means (NaN for an empty group)."""
    sums = torch.zeros(num_groups, dtype=x.dtype).index_add_(0, group, x)
    counts = torch.zeros(num_groups, dtype=x.dtype).index_add_(0, group, torch.ones_like(x))
    return sums / counts


def normalize_per_role(advantages: Tensor, role: Tensor, num_roles: int, eps: float) -> Tensor:
    """Standardise ``A`` within each role: ``(A − mean_role) / max(std_role, eps)``: [N] -> [N].

    The std is the population std (divide by n), so a role with one sample, or with equal advantages,
    gets advantage 0: within the round there is nothing to compare it with.
    """
    centred = advantages - group_mean(advantages, role, num_roles)[role]
    std = group_mean(centred**2, role, num_roles).sqrt()[role]
    return centred / std.clamp_min(eps)


# ------------------------------------------------------------------------------------------------- the modes
@register_advantage("maro")
def maro_advantage(batch: CreditBatch, rewards: Tensor, config: CreditConfig) -> Tensor:
    """MARO: ``A_t = α·r_t + (1 − α)·u_t`` with ``u_t = Q_t − V_t`` (M3); −M3 (``use_utility=False``) sets α = 1."""
    alpha = config.alpha if config.use_utility else 1.0
    return alpha * rewards + (1.0 - alpha) * batch.utility


@register_advantage("outcome", normalize_per_role=False)
def outcome_advantage(batch: CreditBatch, rewards: Tensor, config: CreditConfig) -> Tensor:
    """GRPO-like broadcast: ``A_t = R_i − mean_j R_j``, the mean over the round's agents of the same game.

    The mean counts each agent once (not once per behaviour), like GRPO's mean over a group's completions.
    """
    returns = batch.agent_sum(batch.turn_rewards)  # [M]
    game = batch.agent_first(batch.game)  # [M]
    return (returns - group_mean(returns, game, len(batch.games))[game])[batch.agent]


@register_advantage("role_baseline", normalize_per_role=False)
def role_baseline_advantage(batch: CreditBatch, rewards: Tensor, config: CreditConfig) -> Tensor:
    """SPIRAL's role-conditioned advantage (Liu et al. 2025, arXiv 2506.24119): ``A_t = R_i − b_{game, role}``.

    ``batch.baselines`` holds the EMA baselines as they were before this round: reading them before the
    update keeps each agent's own return out of its baseline. The assigner updates them afterwards.
    """
    return batch.agent_return - batch.baselines


@register_advantage("imitation", normalize_per_role=False)
def imitation_advantage(batch: CreditBatch, rewards: Tensor, config: CreditConfig) -> Tensor:
    """Behaviour cloning as a policy gradient: ``A_t = 1`` on a teacher's behaviours, so that with the ratio
    at 1 the loss ``−A·log π`` is the teacher's negative log-likelihood (docs/design.md#tiny-model)."""
    return torch.ones(batch.size, dtype=torch.float64)
