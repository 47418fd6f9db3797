"""The scripted ladder: the policy against each scripted agent of each game, on fixed seeds.

Every evaluation replays the same games (the same deals, seats and scripted-agent seeds), so a change
in the numbers comes from the policy, not from the draw. Results go to :class:`~maro_lightning.metrics.OutcomeMetric`
under keys ``"{game}/{opponent}/{role}"``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from maro_lightning import envs
from maro_lightning.rollout.engine import GameSpec
from maro_lightning.rollout.engine import PlayedGame
from maro_lightning.rollout.engine import RolloutEngine
from maro_lightning.rollout.engine import game_seeds
from maro_lightning.rollout.generation import GenerationBackend
from maro_lightning.rollout.generation import SamplingConfig

DEFAULT_OPTIONS: dict[str, Any] = {"obs_format": "compact"}
ROLE_PROBE_SEEDS = range(32)  # resets scanned for the roles a game deals (enough for every game's role set)


@dataclass(frozen=True)
class LadderConfig:
    """Which games and scripted opponents the ladder plays, how often, and on which seeds."""

    games: tuple[str, ...] = ("bazaar",)
    """Games to evaluate on (``envs.names()``, or ``textarena:ID``)."""

    opponents: dict[str, tuple[str, ...]] | None = None
    """Per game, the scripted agents the policy meets; None, or a game left out, means every scripted agent of
    that game (``envs.agent_names(game)``)."""

    episodes: int = 32
    """Games played per (game, opponent) pair."""

    seed: int = 20_261_126
    """Root of the fixed seeds: the same value replays the same games at every evaluation."""

    options: dict[str, dict] | None = None
    """Per game, env options laid over ``{"obs_format": "compact"}`` (the default for every game, the format
    the tiny model is trained on)."""

    learner_players: dict[str, tuple[int, ...]] | None = None
    """Per game, the players the policy may take (e.g. ``{"bazaar": [1]}``: always the buyer); None, or a game
    left out, means any player, drawn per game."""

    def __post_init__(self) -> None:
        valid_games = envs.names()
        _check(len(self.games) > 0, "the ladder needs at least one game")
        for game in self.games:
            _check(envs.is_game(game), f"unknown game {game!r}; choose from: {', '.join(valid_games)}")
        _check(len(set(self.games)) == len(self.games), f"a game is listed twice in {list(self.games)}")
        _check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        per_game_fields = (
            ("opponents", self.opponents),
            ("options", self.options),
            ("learner_players", self.learner_players),
        )
        for field_name, per_game in per_game_fields:
            for game in per_game or {}:
                _check(game in self.games, f"{field_name} names {game!r}, which is not in games {list(self.games)}")
        for game in self.games:
            self._check_opponents(game)
            env = envs.make(game, **self.options_of(game))  # unknown options fail now, naming the valid ones
            env.reset(0)
            unknown = set(self.learners_of(game) or ()) - set(env.roles)
            _check(not unknown, f"{game}: learner_players {sorted(unknown)} are not players {sorted(env.roles)}")
            learners = self.learners_of(game)
            _check(learners is None or len(learners) > 0, f"{game}: learner_players is empty; omit the game for any")

    def opponents_of(self, game: str) -> list[str]:
        """The scripted agents the policy meets in ``game``, in the configured order."""
        if self.opponents is None or game not in self.opponents:
            return envs.agent_names(game)
        return list(self.opponents[game])

    def options_of(self, game: str) -> dict[str, Any]:
        """The env options of ``game``: the compact default with the configured options on top."""
        return {**DEFAULT_OPTIONS, **((self.options or {}).get(game) or {})}

    def learners_of(self, game: str) -> tuple[int, ...] | None:
        """The players the policy may take in ``game`` (None: any)."""
        return None if self.learner_players is None else self.learner_players.get(game)

    def _check_opponents(self, game: str) -> None:
        chosen, valid = self.opponents_of(game), envs.agent_names(game)
        _check(len(chosen) > 0, f"{game}: the opponent list is empty")
        _check(len(set(chosen)) == len(chosen), f"{game}: an opponent is listed twice in {chosen}")
        for agent in chosen:
            _check(agent in valid, f"{game}: unknown scripted agent {agent!r}; choose from: {', '.join(valid)}")


@dataclass(frozen=True)
class LadderMatch:
    """One rung of the ladder: ``episodes`` games of ``game`` against the scripted ``opponent``."""

    game: str
    opponent: str
    seed: int
    episodes: int
    options: dict[str, Any]
    learner_players: tuple[int, ...] | None = None


def ladder_matches(config: LadderConfig) -> list[LadderMatch]:
    """One match per (game, opponent), in config order, each with its own fixed seed."""
    return [
        LadderMatch(
            game,
            opponent,
            match_seed(config.seed, game, opponent),
            config.episodes,
            config.options_of(game),
            config.learners_of(game),
        )
        for game in config.games
        for opponent in config.opponents_of(game)
    ]


def match_seed(root: int, game: str, opponent: str) -> int:
    """A seed that depends only on (root, game, opponent): adding or reordering games changes no other match.

    CRC-32 rather than ``hash()``, which is salted per process for strings (PYTHONHASHSEED).
    """
    return zlib.crc32(f"{root}/{game}/{opponent}".encode())


def ladder_keys(config: LadderConfig) -> list[str]:
    """Every ``"{game}/{opponent}/{role}"`` the ladder can report, sorted: the keys of its OutcomeMetric."""
    keys = []
    for game in config.games:
        roles = game_roles(game, config.options_of(game))
        keys += [f"{game}/{opponent}/{role}" for opponent in config.opponents_of(game) for role in roles]
    return sorted(keys)


def game_roles(game: str, options: dict[str, Any]) -> list[str]:
    """The roles ``game`` deals, collected over a few resets (set-up is deterministic given the seed)."""
    env = envs.make(game, **options)
    roles: set[str] = set()
    for seed in ROLE_PROBE_SEEDS:
        env.reset(seed)
        roles.update(env.roles.values())
    return sorted(roles)


def play_match(
    match: LadderMatch,
    backend: GenerationBackend,
    tokenizer: PreTrainedTokenizerBase,
    sampling: SamplingConfig,
) -> list[PlayedGame]:
    """The policy (``backend``) plays the match's games, every other seat the scripted opponent.

    The deals, seats and scripted agents derive from ``match.seed``; the policy's sampling draws from
    torch's RNG (greedy ``temperature=0`` makes the whole match repeatable).
    """
    learners = None if match.learner_players is None else list(match.learner_players)
    spec = GameSpec(match.game, options=dict(match.options), opponents={match.opponent: 1.0}, learner_players=learners)
    seeds = game_seeds(match.seed, match.episodes, held_out=True)  # never a game that training plays
    return RolloutEngine([spec], tokenizer, sampling).play_seeds(seeds, backend)


def match_outcomes(match: LadderMatch, games: list[PlayedGame]) -> tuple[list[str], Tensor, Tensor]:
    """Key, reward (float64) and success (bool) of the policy player of every game, for ``OutcomeMetric.update``."""
    keys: list[str] = []
    rewards: list[float] = []
    success: list[bool] = []
    for game in games:
        outcome = game.env.outcome()
        for player in sorted(game.policy_players):
            keys.append(f"{match.game}/{match.opponent}/{outcome.roles[player]}")
            rewards.append(float(outcome.rewards[player]))
            success.append(bool(outcome.success[player]))
    return keys, torch.tensor(rewards, dtype=torch.float64), torch.tensor(success, dtype=torch.bool)


def invalid_rate(games: list[PlayedGame]) -> float:
    """Fraction of the policy players' turns (every attempt, retries included) that were invalid; 0.0 if none."""
    turns = [turn for game in games for turn in game.env.turns if turn.player in game.policy_players]
    return sum(not turn.valid for turn in turns) / len(turns) if turns else 0.0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
