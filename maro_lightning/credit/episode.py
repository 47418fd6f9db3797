"""The data model of credit assignment (docs/design.md#behaviour-samples): finished games in, a row per behaviour out.

A rollout round is a sequence of :class:`Episode`. Its behaviours are always taken in one order, the
*flattening order* that every per-behaviour tensor follows: episodes in the given order, then players by
ascending id, then each player's behaviours in play order (see :func:`flatten`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from dataclasses import fields
from itertools import pairwise

import torch
from torch import Tensor

from maro_lightning.envs.base import Outcome
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.base import Turn


@dataclass(frozen=True)
class Behaviour(Turn):
    """One behaviour: a logged :class:`~maro_lightning.envs.Turn` (valid or not) and the prompt it answered.

    Invalid attempts are behaviours too: the model wrote them, so they get credit like any other. The fields
    are the turn's (``index`` in ``env.turns``, ``player``, ``role``, ``phase``, ``raw`` (the text to train on),
    ``public``, ``action``, ``valid``, ``info``) plus:

    Attributes:
        prompt: the observation text the player saw, filled by the rollout (None when unknown).
    """

    prompt: str | None = None

    @classmethod
    def from_turn(cls, turn: Turn, prompt: str | None = None) -> Behaviour:
        """Copy a logged turn (its ``info`` too, so later edits of the env leave the behaviour alone)."""
        # Only info is mutable: deep-copying it alone takes under half of dataclasses.asdict's time (which recurses).
        return cls(
            **{f.name: getattr(turn, f.name) for f in fields(Turn)} | {"info": deepcopy(turn.info)}, prompt=prompt
        )


@dataclass(frozen=True)
class Episode:
    """A finished game, reduced to what credit assignment needs.

    Attributes:
        game: the game's registry name.
        seed: the seed the env was reset with.
        roles: player id -> role, for every player (policy or not).
        outcome: the env's :class:`~maro_lightning.envs.Outcome`; ``outcome.rewards[i]`` is z_i.
        behaviours: policy player id -> its behaviours in play order. Only the players whose behaviours
            become samples appear, and only with at least one behaviour.
        episode_id: a name unique within the run; defaults to ``"{game}/{seed}"``.

    Raises:
        ValueError: a behaviour disagrees with ``roles`` or is out of order, or a behaving player has no
            finite reward or no success flag in ``outcome``.
    """

    game: str
    seed: int
    roles: Mapping[int, str]
    outcome: Outcome
    behaviours: Mapping[int, Sequence[Behaviour]]
    episode_id: str = ""

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ (tuples, so nobody appends to a finished game).
        object.__setattr__(self, "behaviours", {p: tuple(bs) for p, bs in sorted(self.behaviours.items()) if bs})
        object.__setattr__(self, "episode_id", self.episode_id or f"{self.game}/{self.seed}")
        for player, behaviours in self.behaviours.items():
            self._check_player(player, behaviours)

    @classmethod
    def from_env(
        cls,
        env: SocialEnv,
        policy_players: set[int] | None = None,
        prompts: Mapping[int, str] | None = None,
        episode_id: str = "",
    ) -> Episode:
        """Read a finished env: its roles, outcome and the turns of the policy players.

        Args:
            env: a game that is done.
            policy_players: the players the trained policy controlled (None: all); only their behaviours
                become samples.
            prompts: turn index -> the observation text the player saw before that turn. The turn a player
                is about to take gets index ``len(env.turns)``, so a rollout records
                ``prompts[len(env.turns)] = env.observation(player)`` just before ``env.step``.
            episode_id: see the class attribute.

        Raises:
            ValueError: the game is not finished, or ``policy_players`` names a player the game lacks.
        """
        if not env.done:
            raise ValueError(f"{env.name} seed {env.seed}: the episode is not finished (env.done is False)")
        players = set(env.roles) if policy_players is None else set(policy_players)
        if players - set(env.roles):
            raise ValueError(f"{env.name}: policy_players {sorted(players - set(env.roles))} are not in the game")
        prompts = prompts or {}
        behaviours: dict[int, list[Behaviour]] = {p: [] for p in players}
        for turn in env.turns:
            if turn.player in players:
                behaviours[turn.player].append(Behaviour.from_turn(turn, prompts.get(turn.index)))
        return cls(env.name, env.seed, dict(env.roles), env.outcome(), behaviours, episode_id)

    @property
    def num_behaviours(self) -> int:
        """Behaviours that become samples."""
        return sum(len(bs) for bs in self.behaviours.values())

    def flat(self) -> list[Behaviour]:
        """The behaviours in flattening order: players by ascending id, then play order."""
        return [b for bs in self.behaviours.values() for b in bs]

    def _check_player(self, player: int, behaviours: Sequence[Behaviour]) -> None:
        where = f"episode {self.episode_id}, player {player}"
        if player not in self.roles:
            raise ValueError(f"{where}: the player is not in roles {dict(self.roles)}")
        if any(b.player != player or b.role != self.roles[player] for b in behaviours):
            raise ValueError(f"{where}: a behaviour's player or role disagrees with roles ({self.roles[player]!r})")
        if any(a.index >= b.index for a, b in pairwise(behaviours)):
            raise ValueError(f"{where}: behaviours are not in play order (turn indices must increase)")
        z = self.outcome.rewards.get(player)
        if z is None or not math.isfinite(z) or player not in self.outcome.success:
            raise ValueError(f"{where}: the outcome needs a finite reward and a success flag, got reward {z!r}")


def flatten(episodes: Sequence[Episode]) -> list[tuple[Episode, Behaviour]]:
    """Every behaviour of a round in flattening order, with its episode: the order of V, Q and the samples."""
    return [(episode, b) for episode in episodes for b in episode.flat()]


@dataclass
class BehaviourSample:
    """One training row per policy behaviour (docs/design.md#behaviour-samples); what the buffer stores and replays.

    The credit fields are filled by :class:`~maro_lightning.credit.CreditAssigner`; the tensor fields by
    the scorer that tokenises the behaviour (None until then).

    Attributes:
        episode_id: the episode's name.
        game: the game's registry name.
        seed: the episode's seed.
        player: who acted.
        role: the player's role.
        turn: index of the behaviour in the game's turn log.
        step: t − 1, the behaviour's 0-based position among its player's behaviours.
        num_steps: T, how many behaviours the player has in the episode.
        valid: whether the behaviour was a legal action.
        prompt: the observation text the player saw (None when the rollout did not record it).
        response: the model's raw text.
        z: the player's outcome reward z_i.
        success: the player's success flag.
        value: V_t, the utility head at the last prompt token.
        q_value: Q_t, the utility head at the last response token.
        utility: u_t = Q_t − V_t (M3).
        reward: r_t, the decomposed reward (M1).
        weight: w, the role-balance weight (M2), mean 1 over the round.
        advantage: A_t, what the policy gradient multiplies.
        utility_target: the regression target of the utility head at V_t and Q_t.
        prompt_ids: [P] int64, the prompt's token ids.
        response_ids: [R] int64, the response's token ids.
        old_logprobs: [R] float32, log-probs of the response tokens under the rollout policy.
        ref_logprobs: [R] float32, log-probs of the response tokens under the frozen reference (None when the KL
            term is off).
    """

    episode_id: str
    game: str
    seed: int
    player: int
    role: str
    turn: int
    step: int
    num_steps: int
    valid: bool
    prompt: str | None
    response: str
    z: float
    success: bool
    value: float
    q_value: float
    utility: float
    reward: float
    weight: float
    advantage: float
    utility_target: float
    prompt_ids: Tensor | None = None
    response_ids: Tensor | None = None
    old_logprobs: Tensor | None = None
    ref_logprobs: Tensor | None = None


BehaviorSample = BehaviourSample
"""The American spelling of :class:`BehaviourSample`, kept as an alias."""


@dataclass(frozen=True)
class CreditBatch:
    """One rollout round as flat tensors over its N behaviours (flattening order); what the hooks read.

    An *agent* is one (episode, player) pair: its behaviours form a contiguous segment of the N rows.
    Roles are keyed by (game, role), as role names mean different things in different games.

    Attributes:
        episodes: the round.
        agent: [N] int64, the agent (segment) index 0..M−1 of each behaviour.
        step: [N] int64, t − 1 within the agent.
        last: [N] bool, t == T (the agent's last behaviour).
        game: [N] int64, index into ``games``.
        role: [N] int64, index into ``roles``.
        games: the round's game names, sorted.
        roles: the round's (game, role) keys, sorted.
        z: [N] float64, the agent's outcome reward z_i.
        success: [N] bool, the agent's success flag.
        values: [N] float64, V_t.
        q_values: [N] float64, Q_t.
        turn_rewards: [N] float64, ρ_t, the immediate reward of each behaviour (z_i on the last by default).
        baselines: [N] float64, the EMA baseline of the behaviour's (game, role), read before this round's update.
    """

    episodes: tuple[Episode, ...]
    agent: Tensor
    step: Tensor
    last: Tensor
    game: Tensor
    role: Tensor
    games: tuple[str, ...]
    roles: tuple[tuple[str, str], ...]
    z: Tensor
    success: Tensor
    values: Tensor
    q_values: Tensor
    turn_rewards: Tensor
    baselines: Tensor

    @property
    def size(self) -> int:
        """N, the number of behaviours."""
        return self.agent.numel()

    @property
    def num_agents(self) -> int:
        """M, the number of (episode, player) segments."""
        return int(self.agent[-1]) + 1 if self.size else 0

    @property
    def utility(self) -> Tensor:
        """[N] float64, u_t = Q_t − V_t (M3)."""
        return self.q_values - self.values

    def agent_sum(self, x: Tensor) -> Tensor:
        """[N] -> [M]: the sum of ``x`` over each agent's behaviours."""
        return torch.zeros(self.num_agents, dtype=x.dtype).index_add_(0, self.agent, x)

    def agent_first(self, x: Tensor) -> Tensor:
        """[N] -> [M]: ``x`` at each agent's first behaviour (per-agent constants: ``z``, ``role``, ``game``)."""
        return x[self.step == 0]

    @property
    def agent_return(self) -> Tensor:
        """[N] float64, R_i = Σ_t ρ_t, the agent's undiscounted total reward (z_i by default), on every row."""
        return self.agent_sum(self.turn_rewards)[self.agent]
