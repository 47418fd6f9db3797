"""Paired evaluation: lines play the same held-out games; identical lines give Δ = 0 with SE 0; the teacher
line is the scripted agent on those games; decoding is chosen at evaluation time."""

from __future__ import annotations

import math

import pytest
import torch

from maro_lightning import envs
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.paired import HELD_OUT_OPPONENT
from maro_lightning.paired import HELD_OUT_OPTIONS
from maro_lightning.paired import TRAIN
from maro_lightning.paired import Condition
from maro_lightning.paired import Line
from maro_lightning.paired import condition_seeds
from maro_lightning.paired import default_conditions
from maro_lightning.paired import evaluate
from maro_lightning.paired import paired_difference
from maro_lightning.rollout import HELD_OUT_SEEDS
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout.engine import encode_response

BAZAAR = {"obs_format": "compact", "listing_range": (100, 100)}
BUYER_VS_LINEAR = Condition("bazaar", "linear", TRAIN, BAZAAR, (1,))


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=1, corpus_games=("bazaar",)), "eager")[1]


class RandomBuyer:
    """A stand-in policy whose text depends on torch's RNG: a random offer, or an accept. Two lines with it play
    the same games only if the evaluation seeds their sampling alike."""

    def __init__(self, tokenizer, accept: float = 0.3) -> None:  # noqa: ANN001
        self.tokenizer, self.accept = tokenizer, accept

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        replies = []
        for _ in prompts:
            price = int(torch.randint(50, 110, ()).item())
            text = "[Accept]" if torch.rand(()).item() < self.accept else f"[Offer: ${price}]"
            replies.append(encode_response(self.tokenizer, text))
        return replies


def policy_line(name: str, tokenizer) -> Line:  # noqa: ANN001
    return Line(name, RandomBuyer(tokenizer), tokenizer, SamplingConfig())


def test_identical_lines_give_a_zero_difference_with_zero_standard_error(tokenizer):
    lines = [policy_line("a", tokenizer), policy_line("b", tokenizer)]
    report = evaluate(lines, [BUYER_VS_LINEAR], episodes=40, seed=5)
    (pair,) = report.pairs()
    assert (pair["line"], pair["baseline"], pair["n"]) == ("b", "a", 40)
    assert pair["d_reward"] == 0.0 and pair["se_reward"] == 0.0
    assert pair["d_success"] == 0.0 and pair["se_success"] == 0.0
    rewards = [r.reward for r in report.records[BUYER_VS_LINEAR.name]["a"]]
    assert len(set(rewards)) > 5  # the games differ from each other: Δ = 0 is not a degenerate constant


def test_lines_that_play_differently_give_a_nonzero_difference(tokenizer):
    """The control of the test above: a buyer that accepts more often differs from one that rarely does."""
    eager = Line("eager", RandomBuyer(tokenizer, accept=0.9), tokenizer, SamplingConfig())
    report = evaluate([policy_line("a", tokenizer), eager], [BUYER_VS_LINEAR], episodes=40, seed=5)
    (pair,) = report.pairs()
    assert pair["se_reward"] > 0 and pair["d_reward"] != 0.0


def test_the_teacher_line_is_the_scripted_agent_on_the_same_deals(tokenizer):
    teacher = Line("linear (teacher)", agent="linear")
    report = evaluate([teacher, policy_line("policy", tokenizer)], [BUYER_VS_LINEAR], episodes=30, seed=9)
    records = report.records[BUYER_VS_LINEAR.name]
    assert all(r.invalid == 0 and r.role == "buyer" for r in records["linear (teacher)"])
    # Replaying each deal with two linear agents gives the teacher line's outcome: the same deal, the teacher in
    # the buyer's seat (linear agents are deterministic given the deal).
    seeds = condition_seeds(9, BUYER_VS_LINEAR, 30)
    assert all(seed >= HELD_OUT_SEEDS for seed in seeds)  # never a training game's seed
    for seed, record in zip(seeds, records["linear (teacher)"], strict=True):
        env = envs.make("bazaar", **BAZAAR)
        seats = {0: envs.agent("linear", game="bazaar"), 1: envs.agent("linear", game="bazaar")}
        outcome = envs.play_episode(env, seats, seed)
        assert math.isclose(outcome.rewards[1], record.reward)
    assert report.pairs()[0]["line"] == "policy" and report.pairs()[0]["baseline"] == "linear (teacher)"


def test_paired_difference_by_hand():
    # d = (0.5, -0.5, 1.0, 0.0): mean 0.25; sample sd sqrt(((.25)^2 + (.75)^2 + (.75)^2 + (.25)^2) / 3) = 0.6455;
    # SE = 0.6455 / 2 = 0.3227.
    diff, se = paired_difference([1.0, 0.0, 1.0, 0.5], [0.5, 0.5, 0.0, 0.5])
    assert math.isclose(diff, 0.25) and math.isclose(se, math.sqrt(1.25 / 3) / 2)
    with pytest.raises(ValueError, match="same, non-zero length"):
        paired_difference([1.0], [])


def test_default_conditions_split_training_from_held_out():
    spec = GameSpec("bazaar", options=BAZAAR, opponents={"linear": 1.0, "frozen": 0.0}, learner_players=[1])
    conditions = default_conditions(
        [spec], {"bazaar": ["linear", "boulware", "conceder"]}, {"bazaar": {"listing_range": (150, 300)}}
    )
    assert [(c.opponent, c.split) for c in conditions] == [
        ("linear", TRAIN),
        ("boulware", HELD_OUT_OPPONENT),
        ("conceder", HELD_OUT_OPPONENT),
        ("linear", HELD_OUT_OPTIONS),
    ]
    assert conditions[-1].options["listing_range"] == (150, 300) and conditions[0].learner_players == (1,)
    with pytest.raises(ValueError, match="unknown scripted opponents"):
        default_conditions([spec], {"bazaar": ["nobody"]})


def test_pooled_pairs_concatenate_the_paired_games_of_a_split(tokenizer):
    boulware, conceder = (
        Condition("bazaar", name, HELD_OUT_OPPONENT, BAZAAR, (1,)) for name in ("boulware", "conceder")
    )
    eager = Line("eager", RandomBuyer(tokenizer, accept=0.9), tokenizer, SamplingConfig())
    report = evaluate([policy_line("a", tokenizer), eager], [BUYER_VS_LINEAR, boulware, conceder], episodes=20, seed=3)
    (pooled,) = report.pooled_pairs()  # the training split has one opponent: nothing to pool there
    assert (pooled["split"], pooled["opponents"], pooled["n"]) == (HELD_OUT_OPPONENT, "boulware+conceder", 40)
    a = [r.reward for c in (boulware, conceder) for r in report.records[c.name]["a"]]
    b = [r.reward for c in (boulware, conceder) for r in report.records[c.name]["eager"]]
    assert (pooled["d_reward"], pooled["se_reward"]) == pytest.approx(paired_difference(b, a))
    assert "boulware+conceder" in report.format() and report.to_json()["pooled_pairs"] == [pooled]
