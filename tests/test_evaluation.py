"""The scripted ladder: config validation, fixed seeds, its keys, and matches played by the tiny model."""

from types import SimpleNamespace

import pytest
import torch

from maro_lightning import envs
from maro_lightning.envs import Turn
from maro_lightning.evaluation import LadderConfig
from maro_lightning.evaluation import LadderMatch
from maro_lightning.evaluation import invalid_rate
from maro_lightning.evaluation import ladder_keys
from maro_lightning.evaluation import ladder_matches
from maro_lightning.evaluation import match_outcomes
from maro_lightning.evaluation import play_match
from maro_lightning.metrics import OutcomeMetric
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import SamplingConfig

SAMPLING = SamplingConfig(max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, corpus_games=("bazaar",)))


class EndOfText:
    """A backend that answers every prompt with EOS alone: an empty message, instantly."""

    def __init__(self, eos_id: int) -> None:
        self.eos_id = eos_id

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        return [[self.eos_id] for _ in prompts]


def test_defaults_cover_every_bazaar_agent_in_compact_format():
    config = LadderConfig()
    assert config.opponents_of("bazaar") == envs.agent_names("bazaar")
    assert config.options_of("bazaar") == {"obs_format": "compact"}
    layered = LadderConfig(options={"bazaar": {"max_retries": 2}})
    assert layered.options_of("bazaar") == {"obs_format": "compact", "max_retries": 2}
    matches = ladder_matches(LadderConfig(games=("bazaar", "deal"), opponents={"deal": ("greedy",)}, episodes=3))
    assert [(m.game, m.opponent) for m in matches] == [("bazaar", a) for a in envs.agent_names("bazaar")] + [
        ("deal", "greedy")
    ]
    assert all(m.episodes == 3 for m in matches)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"games": ("chess",)}, r"unknown game 'chess'.*bazaar"),
        ({"games": ()}, "at least one game"),
        ({"games": ("bazaar", "bazaar")}, "listed twice"),
        ({"opponents": {"bazaar": ("grandmaster",)}}, r"unknown scripted agent 'grandmaster'.*linear"),
        ({"opponents": {"bazaar": ()}}, "empty"),
        ({"opponents": {"deal": ("greedy",)}}, "not in games"),
        ({"options": {"mafia": {}}}, "not in games"),
        ({"episodes": 0}, "episodes must be >= 1"),
        ({"learner_players": {"bazaar": (2,)}}, r"learner_players \[2\] are not players \[0, 1\]"),
    ],
)
def test_bad_configs_fail_early(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LadderConfig(**kwargs)


def test_unknown_env_options_fail_early():
    with pytest.raises(TypeError, match="no option colour"):
        LadderConfig(options={"bazaar": {"colour": "red"}})


def test_seeds_are_fixed_and_independent_of_the_other_games():
    alone = {(m.game, m.opponent): m.seed for m in ladder_matches(LadderConfig())}
    more = {(m.game, m.opponent): m.seed for m in ladder_matches(LadderConfig(games=("deal", "bazaar")))}
    assert {k: v for k, v in more.items() if k[0] == "bazaar"} == alone
    assert len(set(more.values())) == len(more)  # every match its own games
    assert alone == {(m.game, m.opponent): m.seed for m in ladder_matches(LadderConfig())}
    assert alone != {(m.game, m.opponent): m.seed for m in ladder_matches(LadderConfig(seed=1))}


def test_ladder_keys_of_bazaar():
    expected = {f"bazaar/{agent}/{role}" for agent in envs.agent_names("bazaar") for role in ("buyer", "seller")}
    keys = ladder_keys(LadderConfig())
    assert keys == sorted(expected)
    assert ladder_keys(LadderConfig(games=("mafia",), opponents={"mafia": ("random",)})) == [
        f"mafia/random/{role}" for role in ("detective", "doctor", "mafia", "villager")
    ]


def test_tiny_model_plays_a_match_to_the_end(tiny):
    model, tokenizer = tiny
    config = LadderConfig(opponents={"bazaar": ("linear",)}, episodes=4)
    (match,) = ladder_matches(config)
    games = play_match(match, HFGenerate(model, tokenizer), tokenizer, SAMPLING)
    assert len(games) == 4 and all(g.env.done for g in games)
    assert all(set(g.seats.values()) == {"policy", "linear"} for g in games)
    keys, rewards, success = match_outcomes(match, games)
    assert len(keys) == 4 and set(keys) <= set(ladder_keys(config))
    assert rewards.dtype == torch.float64 and success.dtype == torch.bool
    assert 0.0 <= invalid_rate(games) <= 1.0
    metric = OutcomeMetric(ladder_keys(config))
    metric.update(keys, rewards, success)
    assert sum(v.item() for k, v in metric.compute().items() if k.endswith("/n")) == 4


def test_same_seed_replays_the_same_scripted_games(tiny):
    model, tokenizer = tiny
    match = LadderMatch("bazaar", "tit_for_tat", seed=123, episodes=4, options={"obs_format": "compact"})
    setups = []
    for torch_seed in (1, 2):  # different policy samples: the deals and seats must not depend on them
        torch.manual_seed(torch_seed)
        games = play_match(match, HFGenerate(model, tokenizer), tokenizer, SAMPLING)
        setups.append([(g.env.seed, g.seats, g.env.roles) for g in games])
    assert setups[0] == setups[1]
    moved = LadderMatch(**{**match.__dict__, "seed": 124})
    other = play_match(moved, EndOfText(tokenizer.eos_token_id), tokenizer, SAMPLING)
    assert [g.env.seed for g in other] != [seed for seed, _, _ in setups[0]]


def test_every_default_ladder_runs_and_reports_known_keys(tiny):
    _, tokenizer = tiny
    config = LadderConfig(games=tuple(envs.names()), episodes=2)
    metric = OutcomeMetric(ladder_keys(config))
    for match in ladder_matches(config):
        games = play_match(match, EndOfText(tokenizer.eos_token_id), tokenizer, SAMPLING)
        metric.update(*match_outcomes(match, games))  # raises on a key outside ladder_keys
    assert sum(v.item() for k, v in metric.compute().items() if k.endswith("/n")) == 2 * len(ladder_matches(config))


def test_learner_players_fix_the_policy_seat(tiny):
    _, tokenizer = tiny
    config = LadderConfig(opponents={"bazaar": ("linear",)}, episodes=6, learner_players={"bazaar": (1,)})
    (match,) = ladder_matches(config)
    keys, _, _ = match_outcomes(match, play_match(match, EndOfText(tokenizer.eos_token_id), tokenizer, SAMPLING))
    assert keys == ["bazaar/linear/buyer"] * 6


def _turn(index: int, player: int, valid: bool) -> Turn:
    return Turn(index, player, "seller", "bargain", "raw", "", None, valid)


def test_invalid_rate_counts_policy_turns_only():
    env = SimpleNamespace(turns=[_turn(0, 0, False), _turn(1, 1, False), _turn(2, 0, True), _turn(3, 0, True)])
    game = PlayedGame(env=env, seats={0: "policy", 1: "linear"})
    assert invalid_rate([game]) == pytest.approx(1 / 3)
    assert invalid_rate([PlayedGame(env=SimpleNamespace(turns=[]), seats={0: "policy"})]) == 0.0
    assert invalid_rate([]) == 0.0
