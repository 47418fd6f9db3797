"""The format cost: ``invalid_penalty`` lowers the immediate reward of invalid behaviours, in every mode."""

import pytest
from conftest import build_episode

from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig

BAD = {"invalid_reason": "the offer must be a whole number"}


def _episode():
    # Player 0 (buyer, z = 0.5) acts 3 times, its second attempt invalid; player 1 (seller, z = 0.25) once.
    return build_episode("bazaar", 1, {0: ("buyer", 0.5, True, 3), 1: ("seller", 0.25, False, 1)}, {(0, 1): BAD})


def test_invalid_behaviours_cost_the_penalty():
    assigner = CreditAssigner(CreditConfig(invalid_penalty=0.25))
    assert assigner.behaviour_rewards(_episode(), 0).tolist() == [0.0, -0.25, 0.5]
    assert assigner.behaviour_rewards(_episode(), 1).tolist() == [0.25]  # valid: untouched
    assert CreditAssigner().behaviour_rewards(_episode(), 0).tolist() == [0.0, 0.0, 0.5]  # default: no cost


def test_the_penalty_reaches_the_baseline_modes_through_the_return():
    # outcome mode: A = R_i − mean of the game's agents; R_0 = 0.5 − 0.25 = 0.25, R_1 = 0.25: both A = 0 (without the
    # penalty: 0.5 − 0.375 = 0.125 and −0.125).
    with_cost = CreditAssigner(CreditConfig(mode="outcome", invalid_penalty=0.25)).assign([_episode()])
    without = CreditAssigner(CreditConfig(mode="outcome")).assign([_episode()])
    assert [s.advantage for s in with_cost] == [0.0, 0.0, 0.0, 0.0]
    assert [s.advantage for s in without] == [0.125, 0.125, 0.125, -0.125]
    with pytest.raises(ValueError, match="invalid_penalty must be >= 0"):
        CreditConfig(invalid_penalty=-0.1)
