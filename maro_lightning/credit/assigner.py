"""The ``CreditAssigner``: finished episodes and utility estimates in, :class:`BehaviourSample` rows out.

It holds the configuration and the state that outlives a round (SPIRAL's EMA baselines and M2's rolling
counts). Its ``behaviour_rewards`` and ``compute_*`` methods are the hooks a subclass overrides for a new
reward scheme (one level deep); ``assign`` is fixed. ``assign(..., hooks=obj)`` calls ``obj``'s hooks instead:
that is how a :class:`~maro_lightning.module.MaroModule` subclass overrides them, its defaults calling the
assigner's.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

import torch
from torch import Tensor

from maro_lightning.credit.advantages import advantage_mode
from maro_lightning.credit.advantages import decomposed_rewards
from maro_lightning.credit.advantages import gae
from maro_lightning.credit.advantages import group_mean
from maro_lightning.credit.advantages import normalize_per_role
from maro_lightning.credit.advantages import returns_to_go
from maro_lightning.credit.config import CreditConfig
from maro_lightning.credit.episode import Behaviour
from maro_lightning.credit.episode import BehaviourSample
from maro_lightning.credit.episode import CreditBatch
from maro_lightning.credit.episode import Episode
from maro_lightning.credit.episode import flatten
from maro_lightning.credit.weights import RollingCounts
from maro_lightning.credit.weights import balance
from maro_lightning.credit.weights import cell_label
from maro_lightning.credit.weights import weighting

STATE_VERSION = 1


class CreditHooks(Protocol):
    """The five hooks of credit assignment, in the order ``assign`` calls them; every tensor is float64.

    ``CreditAssigner`` implements them (the defaults) and so does ``MaroModule`` (calling its assigner's).
    """

    def behaviour_rewards(self, episode: Episode, player: int) -> Tensor:
        """``[T]``: the immediate reward of each of ``player``'s T behaviours."""

    def compute_rewards(self, batch: CreditBatch) -> Tensor:
        """``[N]``: the M1 reward of each behaviour, in flattening order."""

    def compute_advantages(self, batch: CreditBatch, rewards: Tensor) -> Tensor:
        """``[N]``: the advantages, given the ``[N]`` rewards."""

    def compute_targets(self, batch: CreditBatch) -> Tensor:
        """``[N]``: the utility head's regression targets."""

    def compute_weights(self, batch: CreditBatch) -> Tensor:
        """``[N]``: the M2 weights (called after the round's counts entered the window)."""


class CreditAssigner:
    """Turns a rollout round into per-behaviour rewards (M1), weights (M2) and advantages (M3 and baselines).

    Example::

        assigner = CreditAssigner(CreditConfig(mode="maro", weighting="role"))
        episodes = [Episode.from_env(env, policy_players={1}) for env in finished_envs]
        order = flatten(episodes)                       # score (V_t, Q_t) the behaviours in this order
        samples = assigner.assign(episodes, values, q_values)

    Args:
        config: the switches and hyperparameters (default: full MARO).

    Raises:
        ValueError: ``config.mode`` or ``config.weighting`` is not registered.
    """

    def __init__(self, config: CreditConfig | None = None) -> None:
        self.config = config or CreditConfig()
        advantage_mode(self.config.mode)  # fail at construction, not at the first round
        weighting(self.config.weighting)
        self.baselines: dict[tuple[str, str], float] = {}  # (game, role) -> EMA of the agents' returns
        self.counts = RollingCounts(self.config.window)
        self.cell_stats: dict[str, tuple[int, float]] = {}  # last round: cell label -> (window count, weight)

    # ------------------------------------------------------------------------------------------ fixed entry
    def assign(
        self,
        episodes: Iterable[Episode],
        values: Tensor | None = None,
        q_values: Tensor | None = None,
        hooks: CreditHooks | None = None,
    ) -> list[BehaviourSample]:
        """Credit every policy behaviour of one rollout round, and advance the state by one round.

        Args:
            episodes: the round's finished episodes.
            values: ``[N]`` V_t of every behaviour, in the flattening order of :func:`flatten`
                (None: zeros, e.g. modes that use no utility head).
            q_values: ``[N]`` Q_t in the same order (None: zeros).
            hooks: whose hook methods to call (default: this assigner's), e.g. a ``MaroModule``.

        Returns:
            N samples in flattening order. A round with no behaviour returns ``[]`` and leaves the state
            unchanged (it counts as no round at all for the window and the baselines).

        Raises:
            ValueError: ``values``/``q_values`` have the wrong shape or a non-finite entry (the message
                names the behaviour), or a hook returned a bad tensor.
        """
        hooks = self if hooks is None else hooks
        batch = self.build_batch(tuple(episodes), values, q_values, hooks)
        if batch.size == 0:
            return []
        batch = self._start_new_baselines(batch)
        rewards = _checked("compute_rewards", hooks.compute_rewards(batch), batch.size)
        advantages = _checked("compute_advantages", hooks.compute_advantages(batch, rewards), batch.size)
        targets = _checked("compute_targets", hooks.compute_targets(batch), batch.size)
        self.counts.push(_fine_counts(batch))  # the window includes this round: every sample's cell has a count
        weights = _checked("compute_weights", hooks.compute_weights(batch), batch.size)
        self._update_baselines(batch)  # after the advantages read them (SPIRAL: read before update)
        return _samples(batch, rewards, weights, advantages, targets)

    # ------------------------------------------------------------------------------------------------ hooks
    def behaviour_rewards(self, episode: Episode, player: int) -> Tensor:
        """Hook: the immediate rewards ρ_t of ``player``'s T behaviours, ``[T]`` float64.

        Default: the outcome z_i on the last behaviour, 0 before, minus ``config.invalid_penalty`` on every
        invalid behaviour. Override to shape rewards from the behaviours (``episode.behaviours[player][t].info``);
        every mode then uses them (M1 through ``δ_t``, the baselines through ``R_i = Σ_t ρ_t``).
        """
        behaviours = episode.behaviours[player]
        rewards = torch.zeros(len(behaviours), dtype=torch.float64)
        rewards[-1] = episode.outcome.rewards[player]
        invalid = torch.tensor([not b.valid for b in behaviours], dtype=torch.float64)
        return rewards - self.config.invalid_penalty * invalid

    def compute_rewards(self, batch: CreditBatch) -> Tensor:
        """Hook: the M1 reward r_t of each behaviour, ``[N]`` float64 (GAE over turn-level TD errors)."""
        return decomposed_rewards(batch, self.config)

    def compute_advantages(self, batch: CreditBatch, rewards: Tensor) -> Tensor:
        """Hook: ``[N]`` advantages from the configured mode, standardised per (game, role) where it applies."""
        mode = advantage_mode(self.config.mode)
        advantages = mode.fn(batch, rewards, self.config)
        normalize = self.config.normalize_per_role
        if mode.normalize_per_role if normalize is None else normalize:
            advantages = normalize_per_role(advantages, batch.role, len(batch.roles), self.config.norm_eps)
        return advantages

    def compute_weights(self, batch: CreditBatch) -> Tensor:
        """Hook: the M2 weights, ``[N]`` float64 with mean 1 within ``weight_clip``; records ``cell_stats``."""
        cell = weighting(self.config.weighting)
        cells = [cell(*key) for key in _fine_keys(batch)]
        weights, table = balance(cells, self.counts.total(cell), self.config.weight_clip)
        self.cell_stats = {cell_label(c): stat for c, stat in table.items()}
        return weights

    def compute_targets(self, batch: CreditBatch) -> Tensor:
        """Hook: the utility head's regression target at V_t and Q_t, ``[N]`` float64.

        ``"outcome"``: the return-to-go ``G_t = Σ_k γ^k ρ_{t+k}`` (z_i by default). ``"lambda_return"``:
        ``V_t + GAE_λ(δ)_t``, computed with the decomposition whatever ``decompose`` says.
        """
        if self.config.utility_target == "outcome":
            return returns_to_go(batch, self.config.gamma)
        return batch.values + gae(batch, self.config.lam, self.config.gamma)

    # ------------------------------------------------------------------------------------ building a round
    def build_batch(
        self,
        episodes: tuple[Episode, ...],
        values: Tensor | None,
        q_values: Tensor | None,
        hooks: CreditHooks | None = None,
    ) -> CreditBatch:
        """The round as flat tensors (see :class:`CreditBatch`); validates the utility estimates. The immediate
        rewards come from ``hooks.behaviour_rewards`` (default: this assigner's)."""
        hooks = self if hooks is None else hooks
        rows = flatten(episodes)
        agents = [(e, p) for e in episodes for p in e.behaviours]
        sizes = torch.tensor([len(e.behaviours[p]) for e, p in agents], dtype=torch.int64)
        agent = torch.repeat_interleave(torch.arange(len(agents)), sizes)  # [N]
        step = torch.arange(len(rows)) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)  # [N]
        games = tuple(sorted({e.game for e in episodes}))
        roles = tuple(sorted({(e.game, b.role) for e, b in rows}))
        return CreditBatch(
            episodes=episodes,
            agent=agent,
            step=step,
            last=step == sizes[agent] - 1,
            game=_index([e.game for e, _ in rows], games),
            role=_index([(e.game, b.role) for e, b in rows], roles),
            games=games,
            roles=roles,
            z=_floats([e.outcome.rewards[b.player] for e, b in rows]),
            success=torch.tensor([bool(e.outcome.success[b.player]) for e, b in rows], dtype=torch.bool),
            values=_estimates("values", values, rows),
            q_values=_estimates("q_values", q_values, rows),
            turn_rewards=torch.cat([_checked_rewards(hooks, e, p) for e, p in agents] or [_floats([])]),
            baselines=_floats([self.baselines.get((e.game, b.role), 0.0) for e, b in rows]),
        )

    # ------------------------------------------------------------------------------------------------ state
    def _start_new_baselines(self, batch: CreditBatch) -> CreditBatch:
        """A (game, role) seen for the first time starts from its mean return in this round, not from 0: from 0,
        its first rounds' advantages would all be biased by that mean (e.g. +0.4 for a role that mostly wins)."""
        means = self._round_means(batch)
        new = {key: mean for key, mean in zip(batch.roles, means.tolist(), strict=True) if key not in self.baselines}
        if not new:
            return batch
        self.baselines.update(new)
        baselines = [self.baselines[batch.roles[role]] for role in batch.role.tolist()]
        return dataclasses.replace(batch, baselines=_floats(baselines))

    def _round_means(self, batch: CreditBatch) -> Tensor:
        """``[num roles]`` mean return R_i of the round's agents of each (game, role)."""
        returns = batch.agent_sum(batch.turn_rewards)  # [M]
        return group_mean(returns, batch.agent_first(batch.role), len(batch.roles))

    def _update_baselines(self, batch: CreditBatch) -> None:
        """``b ← decay · b + (1 − decay) · mean R_i`` per (game, role) of the round (SPIRAL, arXiv 2506.24119).

        The mean is over the round's agents of that role; roles absent from the round keep their baseline,
        and a role seen for the first time started from its mean in this round (:meth:`_start_new_baselines`).
        """
        means = self._round_means(batch)
        decay = self.config.ema_decay
        for key, mean in zip(batch.roles, means.tolist(), strict=True):
            self.baselines[key] = decay * self.baselines.get(key, 0.0) + (1.0 - decay) * mean

    def state_dict(self) -> dict[str, Any]:
        """The state that outlives a round, as plain lists (``torch.load(weights_only=True)`` reads it back)."""
        baselines = [[game, role, value] for (game, role), value in sorted(self.baselines.items())]
        return {"version": STATE_VERSION, "baselines": baselines, "counts": self.counts.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. The window keeps the newest ``config.window`` rounds."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"CreditAssigner state version {state.get('version')!r}, expected {STATE_VERSION}")
        self.baselines = {(str(g), str(r)): float(v) for g, r, v in state["baselines"]}
        self.counts.load_state_dict(state["counts"])

    def metrics(self) -> dict[str, float]:
        """Flat numbers for logging: the last round's M2 cells (``count/<cell>``, ``weight/<cell>``) and the
        EMA baselines (``baseline/<game>/<role>``)."""
        out = {f"count/{label}": float(n) for label, (n, _) in self.cell_stats.items()}
        out |= {f"weight/{label}": w for label, (_, w) in self.cell_stats.items()}
        return out | {f"baseline/{game}/{role}": b for (game, role), b in sorted(self.baselines.items())}


# ---------------------------------------------------------------------------------------------- helpers
def _floats(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _index(keys: list[Any], vocabulary: tuple[Any, ...]) -> Tensor:
    position = {key: i for i, key in enumerate(vocabulary)}
    return torch.tensor([position[key] for key in keys], dtype=torch.int64)


def _estimates(name: str, estimates: Tensor | None, rows: list[tuple[Episode, Behaviour]]) -> Tensor:
    """Validate V or Q: ``[N]`` finite, any float dtype and device -> ``[N]`` float64 on the CPU."""
    if estimates is None:
        return torch.zeros(len(rows), dtype=torch.float64)
    if estimates.shape != (len(rows),):
        raise ValueError(
            f"{name} has shape {tuple(estimates.shape)}, expected ({len(rows)},): one per behaviour in "
            "the flattening order of credit.flatten(episodes)"
        )
    estimates = estimates.detach().to("cpu", torch.float64)
    bad = (~torch.isfinite(estimates)).nonzero()
    if len(bad):
        i = int(bad[0])
        episode, b = rows[i]
        raise ValueError(
            f"{name}[{i}] is {estimates[i].item()} (episode {episode.episode_id}, player {b.player}, turn "
            f"{b.index}): utility estimates must be finite"
        )
    return estimates


def _checked_rewards(hooks: CreditHooks, episode: Episode, player: int) -> Tensor:
    rewards = hooks.behaviour_rewards(episode, player)
    where = f"behaviour_rewards(episode {episode.episode_id}, player {player})"
    return _checked(where, rewards, len(episode.behaviours[player]))


def _checked(where: str, x: Tensor, n: int) -> Tensor:
    """A hook's output must be ``[n]`` and finite; returned as float64."""
    if not isinstance(x, Tensor) or x.shape != (n,):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{where} returned {shape}, expected a tensor of shape ({n},)")
    if not torch.isfinite(x).all():
        raise ValueError(f"{where} returned a non-finite value")
    return x.to(torch.float64)


def _fine_keys(batch: CreditBatch) -> list[tuple[str, str, bool]]:
    """(game, role, success) of every behaviour."""
    return [(*batch.roles[r], s) for r, s in zip(batch.role.tolist(), batch.success.tolist(), strict=True)]


def _fine_counts(batch: CreditBatch) -> Counter[tuple[str, str, bool]]:
    return Counter(_fine_keys(batch))


def _samples(
    batch: CreditBatch, rewards: Tensor, weights: Tensor, advantages: Tensor, targets: Tensor
) -> list[BehaviourSample]:
    """One row per behaviour, in flattening order; the [N] tensors become Python scalars."""
    columns = {
        "step": batch.step,
        "num_steps": torch.bincount(batch.agent)[batch.agent],
        "z": batch.z,
        "success": batch.success,
        "value": batch.values,
        "q_value": batch.q_values,
        "utility": batch.utility,
        "reward": rewards,
        "weight": weights,
        "advantage": advantages,
        "utility_target": targets,
    }
    lists = {name: column.tolist() for name, column in columns.items()}
    return [
        BehaviourSample(
            episode_id=e.episode_id,
            game=e.game,
            seed=e.seed,
            player=b.player,
            role=b.role,
            turn=b.index,
            valid=b.valid,
            prompt=b.prompt,
            response=b.raw,
            **{name: column[i] for name, column in lists.items()},
        )
        for i, (e, b) in enumerate(flatten(batch.episodes))
    ]
