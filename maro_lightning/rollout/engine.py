"""The rollout engine (docs/design.md#rollouts): many games at once, one batched generation per sweep.

Every sweep gathers the players who must act in every unfinished game. Scripted seats answer at once, until
a model seat is due; the prompts of all policy seats (and, separately, of all frozen-copy seats) across all
games go to the generation backend as one batch. A game's seats are drawn per game: one player is the learner
(the policy), the others come from the game's opponent mix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from transformers import PreTrainedTokenizerBase

from maro_lightning import distributed
from maro_lightning import envs
from maro_lightning.rollout.generation import GenerationBackend
from maro_lightning.rollout.generation import SamplingConfig
from maro_lightning.rollout.generation import truncate_prompt
from maro_lightning.rollout.league import OpponentPool

POLICY, FROZEN = "policy", "frozen"
MODEL_SEATS = (POLICY, FROZEN)
HELD_OUT_SEEDS = 2**31  # training games' seeds are below this; evaluation games take theirs from above it


@dataclass(frozen=True)
class GameSpec:
    """One game of the rollout mix.

    Args:
        name: a registered game (``envs.names()``) or a ``textarena:ID`` one.
        weight: relative frequency of this game in the mix.
        options: the game's constructor options (e.g. ``{"obs_format": "compact"}``).
        opponents: seat -> probability for every non-learner player: ``"policy"`` (self-play, trained on
            too), ``"frozen"`` (a periodically refreshed snapshot of the policy) or a scripted agent name.
        learner_players: the players the learner may take (None = any, drawn uniformly per game).
        teacher: a scripted agent that plays the learner's seat in imitation rounds (behaviour cloning warm
            start, docs/design.md#tiny-model); its text becomes the learner's behaviours.
    """

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    opponents: dict[str, float] = field(default_factory=lambda: {FROZEN: 1.0})
    learner_players: list[int] | None = None
    teacher: str | None = None

    def __post_init__(self) -> None:
        envs.make(self.name, **self.options)  # fails now, naming the valid games and options
        scripted = set(self.opponents) - set(MODEL_SEATS) | ({self.teacher} - {None})
        unknown = scripted - set(envs.agent_names(self.name))
        if unknown:
            raise ValueError(
                f"{self.name}: unknown opponents or teacher {sorted(unknown)}; use policy, frozen or one of "
                f"{', '.join(envs.agent_names(self.name))}"
            )
        if self.weight <= 0 or not self.opponents or min(self.opponents.values()) < 0:
            raise ValueError(f"{self.name}: weight must be > 0 and opponents a non-empty mix of weights >= 0")
        if sum(self.opponents.values()) <= 0:
            raise ValueError(f"{self.name}: opponents {self.opponents} are all weight 0; give one a weight > 0")
        if self.learner_players is not None:
            env = envs.make(self.name, **self.options)
            env.reset(0)
            outside = sorted(set(self.learner_players) - set(env.roles))
            if not self.learner_players or outside:
                raise ValueError(
                    f"{self.name}: learner_players {list(self.learner_players)} must be a non-empty list of players "
                    f"{sorted(env.roles)} (null: any player)"
                )


@dataclass
class PlayedGame:
    """A finished game and what the models saw and wrote, keyed by turn index (model-played turns only)."""

    env: envs.SocialEnv
    seats: dict[int, str]
    prompts: dict[int, str] = field(default_factory=dict)
    prompt_ids: dict[int, list[int]] = field(default_factory=dict)
    response_ids: dict[int, list[int]] = field(default_factory=dict)
    agents: dict[int, envs.ScriptedAgent] = field(default_factory=dict, repr=False)  # scripted seats and teachers
    member: int | None = None  # the league member playing the frozen seats (None: no league, or none frozen)

    @property
    def policy_players(self) -> set[int]:
        return {p for p, seat in self.seats.items() if seat == POLICY}


class RolloutInterrupted(Exception):
    """A round given up between sweeps because ``should_stop`` said so; its games are discarded."""


@dataclass
class RolloutStats:
    """Throughput of one ``play`` call."""

    games: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else 0.0


class RolloutEngine:
    """Plays a mix of games with policy, frozen-copy and scripted seats.

    Args:
        games: the game mix.
        tokenizer: encodes prompts (with its chat template when it has one) and decodes completions.
        sampling: generation settings.
        should_stop: asked between sweeps; when it returns True the round is given up with
            :class:`RolloutInterrupted` (a stop signal arrived: the run saves a checkpoint and ends).
    """

    def __init__(
        self,
        games: list[GameSpec],
        tokenizer: PreTrainedTokenizerBase,
        sampling: SamplingConfig,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if not games:
            raise ValueError("the rollout needs at least one game")
        self.games, self.tokenizer, self.sampling = games, tokenizer, sampling
        self.should_stop = should_stop
        self.stats = RolloutStats()

    def play(
        self,
        num_games: int,
        seed: int,
        policy: GenerationBackend,
        frozen: OpponentPool | None = None,
        imitate: bool = False,
    ) -> list[PlayedGame]:
        """Play ``num_games`` games to the end, their seeds drawn from ``seed`` (see :meth:`play_seeds`)."""
        return self.play_seeds(game_seeds(seed, num_games), policy, frozen, imitate)

    def play_seeds(
        self,
        seeds: list[int],
        policy: GenerationBackend,
        frozen: OpponentPool | None = None,
        imitate: bool = False,
    ) -> list[PlayedGame]:
        """Play one game per seed to the end. A game's seed alone fixes its game of the mix, deal, seats and
        scripted agents, so two calls with the same seeds meet the same situations whoever plays the learner
        (sampling draws from torch's RNG). A game's frozen seats play one member of the ``frozen`` pool (a
        league of past policies), drawn from the game's seed; without a pool they play ``policy``.
        With ``imitate``, each game's ``teacher`` plays the learner's seat and its text is recorded as the
        learner's behaviours (token ids included), as if the policy had written it; it plays the frozen seats too.

        With a ``collective`` policy backend (sharded by FSDP), every rank sweeps until the games of all ranks are
        over, and asks the policy once per sweep, with nothing when none of its seats is due (the backend then
        matches its calls over the ranks); a stop on any rank stops all."""
        if imitate and any(spec.teacher is None for spec in self.games):
            missing = [spec.name for spec in self.games if spec.teacher is None]
            raise ValueError(f"imitation needs a teacher for every game; {missing} have none")
        start = time.perf_counter()
        games = [self._new_game(seed, imitate, frozen) for seed in seeds]
        self.stats = RolloutStats(games=len(games))
        lockstep = getattr(policy, "collective", False)
        while self._sweep_again(games, lockstep):
            requests = self._sweep(games)
            if lockstep:
                requests.setdefault(None, [])
            for member, batch in requests.items():
                self._answer(batch, policy if member is None else frozen.backend(member))
        self.stats.seconds = time.perf_counter() - start
        return games

    def _sweep_again(self, games: list[PlayedGame], lockstep: bool) -> bool:
        """Whether a game is unfinished (in lock-step: on any rank); raises RolloutInterrupted when ``should_stop``
        says so (in lock-step: on any rank) before all are over."""
        unfinished = any(not g.env.done for g in games)
        stop = unfinished and self.should_stop is not None and self.should_stop()
        if lockstep:
            unfinished, stop = map(bool, distributed.max_over_ranks([unfinished, stop]))
        if stop:
            raise RolloutInterrupted(f"the round was given up after {self.stats.games} games were dealt")
        return unfinished

    def _new_game(self, seed: int, imitate: bool, frozen: OpponentPool | None) -> PlayedGame:
        """The game of ``seed``; the teacher's seed is drawn last, so imitation changes nothing else, and the
        league member from a stream of its own, so a league changes nothing else either."""
        rng = random.Random(seed)
        spec = rng.choices(self.games, weights=[g.weight for g in self.games])[0]
        env = envs.make(spec.name, **spec.options)
        env.reset(seed)
        players = sorted(env.roles)
        learner = rng.choice(spec.learner_players or players)
        names, weights = list(spec.opponents), list(spec.opponents.values())
        seats = {p: POLICY if p == learner else rng.choices(names, weights=weights)[0] for p in players}
        agents = {p: envs.agent(s, game=spec.name) for p, s in seats.items() if s not in MODEL_SEATS}
        for agent in agents.values():
            agent.reset(rng.randrange(2**31))
        if imitate:  # the teacher plays the learner's seat, and the frozen seats too: no past policy is worth
            # meeting before the policy can act, and the cloned games then need no generation at all
            for player in [learner] + [p for p, s in seats.items() if s == FROZEN]:
                agents[player] = envs.agent(spec.teacher, game=spec.name)
                agents[player].reset(rng.randrange(2**31))
        frozen_seats = FROZEN in seats.values() and not imitate
        member = frozen.sample(random.Random(f"league/{seed}")) if frozen and frozen_seats else None
        return PlayedGame(env, seats, agents=agents, member=member)

    def _sweep(self, games: list[PlayedGame]) -> dict[int | None, list[tuple[PlayedGame, int]]]:
        """Every game plays its scripted seats until a model seat is due; returns the model seats due, grouped by
        who plays them: the league member, or None for the policy (its own seats, and frozen seats when there is
        no league). So every unfinished game is in every sweep's batch: had a sweep stopped after one scripted
        move, games where the model moves second would be one sweep behind those where it moves first, and the
        sweeps would alternate between the two halves (twice the ``generate`` calls, each half as full)."""
        requests: dict[int | None, list[tuple[PlayedGame, int]]] = {}
        for game in games:
            for player in self._play_scripted(game):
                requests.setdefault(game.member if game.seats[player] == FROZEN else None, []).append((game, player))
        return requests

    def _play_scripted(self, game: PlayedGame) -> list[int]:
        """Scripted seats act until a model seat must act or the game ends; returns the model seats due."""
        while not game.env.done:
            waiting = []
            for player in game.env.to_act():
                if player not in game.env.to_act():
                    continue  # an earlier scripted vote in this pass closed the phase
                if player in game.agents:
                    self._act_scripted(game, player, teach=game.seats[player] == POLICY)
                else:
                    waiting.append(player)
            due = [player for player in waiting if player in game.env.to_act()]  # a later vote may close the phase
            if due:
                return due
        return []

    def _answer(self, batch: list[tuple[PlayedGame, int]], backend: GenerationBackend) -> None:
        prompts = [game.env.observation(player) for game, player in batch]
        prompt_ids = [truncate_prompt(ids, self.sampling) for ids in encode_prompts(self.tokenizer, prompts)]
        tick = time.perf_counter()
        completions = backend.generate(prompt_ids, self.sampling)
        self.stats.generate_seconds += time.perf_counter() - tick
        self.stats.generated_tokens += sum(len(c) for c in completions)
        eos = self.tokenizer.eos_token_id
        # A backend that returns nothing stopped at once: record the EOS HF generate would have written, so the
        # behaviour has a token to score and train on (a 0-token response carries no gradient).
        completions = [c or [eos] for c in completions] if eos is not None else completions
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        for (game, player), prompt, ids, completion, text in zip(
            batch, prompts, prompt_ids, completions, texts, strict=True
        ):
            if game.env.done or player not in game.env.to_act():
                continue  # the phase closed while this answer was being generated
            self._record(game, prompt, ids, completion)
            game.env.step(player, text)

    def _act_scripted(self, game: PlayedGame, player: int, teach: bool) -> None:
        """A scripted seat acts; a teacher's prompt and text are recorded as the learner's behaviour."""
        reply = game.agents[player].act(game.env.view(player))
        if teach:
            prompt = game.env.observation(player)
            ids = truncate_prompt(encode_prompt(self.tokenizer, prompt), self.sampling)
            self._record(game, prompt, ids, encode_response(self.tokenizer, reply))
        game.env.step(player, reply)

    @staticmethod
    def _record(game: PlayedGame, prompt: str, prompt_ids: list[int], response_ids: list[int]) -> None:
        turn = len(game.env.turns)  # the index the coming step will log
        game.prompts[turn], game.prompt_ids[turn], game.response_ids[turn] = prompt, prompt_ids, response_ids


def game_seeds(seed: int, num_games: int, held_out: bool = False) -> list[int]:
    """``num_games`` game seeds drawn from ``seed``: below :data:`HELD_OUT_SEEDS` for training, above it for
    held-out evaluation, so no evaluation game is ever one that training played."""
    rng = random.Random(seed)
    offset = HELD_OUT_SEEDS if held_out else 0
    return [offset + rng.randrange(HELD_OUT_SEEDS) for _ in range(num_games)]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of an observation as a one-message chat, ready for the assistant's reply."""
    return encode_prompts(tokenizer, [text])[0]


def encode_prompts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """:func:`encode_prompt` of every text, in one call of the tokenizer (one batch for its Rust encoder, not one
    Python round trip per prompt)."""
    if not texts:
        return []
    if tokenizer.chat_template:
        chats = [[{"role": "user", "content": text}] for text in texts]
        return [
            list(ids)
            for ids in tokenizer.apply_chat_template(
                chats, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        ]
    return tokenizer(texts)["input_ids"]


def encode_response(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a reply as the model would write it: the text, then EOS."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tokenizer(text, add_special_tokens=False)["input_ids"] + eos
