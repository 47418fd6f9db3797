"""The league of frozen opponents: draw probabilities (recency, PFSP), membership, and the engine's use of it."""

import random
from collections import Counter

import pytest
import torch

from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout.league import League
from maro_lightning.rollout.league import LeagueConfig


def _league(n: int, **config) -> League:
    league = League(LeagueConfig(**config))
    for joined in range(n):
        league.add(torch.nn.Linear(2, 2).state_dict(), joined=joined)
    return league


def test_recency_draws_newer_members_more_and_keeps_the_newest():
    league = _league(5, size=3, recency_decay=0.5)
    assert [m.id for m in league.members] == [2, 3, 4]  # the two oldest left
    assert league.probabilities() == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    counts = Counter(league.sample(random.Random(seed)) for seed in range(2000))
    assert counts[4] > counts[3] > counts[2] > 0


def test_pfsp_prefers_the_members_the_learner_beats_least():
    league = _league(3, size=3, sampling="pfsp", pfsp_power=2.0)
    assert league.probabilities() == pytest.approx([1 / 3] * 3)  # no games yet: the prior 0.5 everywhere
    for _ in range(8):
        league.record(0, 1.0)  # the learner always beats member 0 ...
        league.record(1, 0.0)  # ... and never member 1
    league.record(2, 0.5)
    rates = [m.learner_success_rate for m in league.members]
    assert rates == pytest.approx([0.9, 0.1, 0.5])
    weights = [(1 - r) ** 2 for r in rates]
    assert league.probabilities() == pytest.approx([w / sum(weights) for w in weights])
    assert league.probabilities()[1] > league.probabilities()[2] > league.probabilities()[0]


def test_uniform_records_of_a_departed_member_and_bad_configs():
    league = _league(3, size=2, sampling="uniform")
    assert league.probabilities() == [0.5, 0.5]
    league.record(0, 1.0)  # member 0 left: nothing to record
    assert sum(m.games for m in league.members) == 0
    with pytest.raises(ValueError, match="size"):
        LeagueConfig(size=0)
    with pytest.raises(ValueError, match="recency_decay"):
        LeagueConfig(recency_decay=0.0)
    with pytest.raises(RuntimeError, match="empty"):
        League().sample(random.Random(0))


def test_members_are_copies_loaded_on_demand_and_survive_a_state_round_trip():
    league = League(LeagueConfig(size=2))
    policy, vessel = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    first = league.add(policy.state_dict(), joined=0)
    with torch.no_grad():
        policy.weight.add_(1.0)  # training goes on: the member keeps the weights it joined with
    second = league.add(policy.state_dict(), joined=5)
    torch.testing.assert_close(league.load(first.id, vessel).weight, policy.weight - 1.0)
    torch.testing.assert_close(league.load(second.id, vessel).weight, policy.weight)
    league.record(second.id, 1.0)
    restored = League(LeagueConfig(size=2))
    restored.load_state_dict(league.state_dict())
    assert [(m.id, m.joined, m.games) for m in restored.members] == [(0, 0, 0), (1, 5, 1)]
    assert restored.next_id == 2 and restored.probabilities() == league.probabilities()
    with pytest.raises(KeyError, match="not in the league"):
        restored.load(7, vessel)


class _Pool:
    """Members are scripted backends that write a fixed action and count their calls."""

    def __init__(self, tokenizer, members: list[int]) -> None:
        self.tokenizer, self.members, self.calls = tokenizer, members, Counter()

    def sample(self, rng: random.Random) -> int:
        return rng.choice(self.members)

    def backend(self, member: int):
        pool = self

        class _Walk:
            def generate(self, prompts, sampling):
                pool.calls[member] += 1
                return [pool.tokenizer("[Walk]", add_special_tokens=False)["input_ids"] for _ in prompts]

        return _Walk()


def test_engine_plays_each_games_frozen_seats_with_the_member_drawn_from_its_seed():
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, corpus_games=("bazaar",)))
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"frozen": 1.0})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=4))
    pool = _Pool(tokenizer, members=[3, 8])
    games = engine.play(12, seed=5, policy=HFGenerate(model, tokenizer), frozen=pool)
    assert {g.member for g in games} == {3, 8}  # both members met, one per game
    sweeps = max(len(g.env.turns) for g in games)
    assert sum(pool.calls.values()) <= 2 * sweeps  # one generate call per member and sweep, not one per game
    again = engine.play(12, seed=5, policy=HFGenerate(model, tokenizer), frozen=_Pool(tokenizer, members=[3, 8]))
    assert [g.member for g in again] == [g.member for g in games]  # the draw comes from the game's seed
    no_league = engine.play(12, seed=5, policy=HFGenerate(model, tokenizer))
    assert [g.seats for g in no_league] == [g.seats for g in games]  # and changes nothing else about the deal
    assert all(g.member is None for g in no_league)


def test_in_the_warm_start_the_teacher_plays_the_frozen_seats_too():
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, corpus_games=("bazaar",)))
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"frozen": 1.0}, teacher="linear")
    pool = _Pool(tokenizer, members=[3])
    games = RolloutEngine([spec], tokenizer, SamplingConfig()).play(
        6, seed=2, policy=_NoText(), frozen=pool, imitate=True
    )
    assert not pool.calls and all(g.member is None for g in games)  # nothing generated, no member met
    assert all(g.env.done and set(g.agents) == set(g.seats) for g in games)  # every seat scripted
    assert all(g.response_ids for g in games)  # the learner's turns were recorded for cloning


class _NoText:
    def generate(self, prompts, sampling):
        raise AssertionError("a warm-start round asked a model for text")
