"""The reward schemes of ``maro_lightning.credit.shaping``: a cost for a negotiation that ends without a deal."""

from dataclasses import replace

import pytest
from conftest import build_episode

from maro_lightning.credit import CreditConfig
from maro_lightning.credit.shaping import NoDealCost


def _bazaar(deal: float):
    episode = build_episode("bazaar", 1, {0: ("seller", 0.0, False, 2), 1: ("buyer", 0.0, False, 2)})
    return replace(episode, outcome=replace(episode.outcome, metrics={"deal": deal}))


def test_a_game_without_a_deal_costs_each_player_on_its_last_behaviour():
    assigner = NoDealCost(CreditConfig(invalid_penalty=0.0), cost=0.2)
    assert assigner.behaviour_rewards(_bazaar(deal=0.0), 0).tolist() == [0.0, -0.2]
    assert assigner.behaviour_rewards(_bazaar(deal=0.0), 1).tolist() == [0.0, -0.2]
    assert assigner.behaviour_rewards(_bazaar(deal=1.0), 1).tolist() == [0.0, 0.0]  # a deal: the outcome alone
    # Every mode sees it. The GRPO-like baseline: the round's mean return is −0.1 (a deal: 0, none: −0.2), so the
    # players of the failed game get −0.1 and those of the deal +0.1 (without the cost all four returns are 0).
    outcome_mode = NoDealCost(CreditConfig(mode="outcome"), cost=0.2)
    advantages = [s.advantage for s in outcome_mode.assign([_bazaar(deal=0.0), _bazaar(deal=1.0)])]
    assert advantages == pytest.approx([-0.1] * 4 + [0.1] * 4)


def test_the_cost_can_fall_on_some_roles_only():
    seller_only = NoDealCost(CreditConfig(invalid_penalty=0.0), cost=0.3, roles=["seller"])
    assert seller_only.behaviour_rewards(_bazaar(deal=0.0), 0).tolist() == [0.0, -0.3]  # player 0 sells
    assert seller_only.behaviour_rewards(_bazaar(deal=0.0), 1).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="roles is empty"):
        NoDealCost(roles=[])


def test_a_game_without_an_agreement_or_a_negative_cost_is_refused():
    mafia = build_episode("mafia", 1, {0: ("mafia", 1.0, True, 1)})
    with pytest.raises(ValueError, match="needs a game with an agreement .*bazaar.*; got mafia"):
        NoDealCost().behaviour_rewards(mafia, 0)
    with pytest.raises(ValueError, match="cost must be >= 0"):
        NoDealCost(cost=-0.1)
