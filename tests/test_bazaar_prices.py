"""benchmarks/bazaar_prices.py: the decisions it reads are the teacher's own, the policy's answer is parsed as in
play, and the within-message correlation is the textbook one on hand values."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from maro_lightning.models import TinyModelConfig
from maro_lightning.module import MaroModule
from maro_lightning.play import PolicyPlayer

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("benchmarks_bazaar_prices", ROOT / "benchmarks" / "bazaar_prices.py")
bazaar_prices = sys.modules["benchmarks_bazaar_prices"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bazaar_prices)


def test_the_decisions_are_the_teachers_moves_on_the_game_before_them():
    found = bazaar_prices.decisions({"obs_format": "compact"}, "linear", games=3, seed=0)
    assert {d.role for d in found} == {"buyer", "seller"}
    for decision in found:
        assert decision.env.roles[decision.player] == decision.role
        assert len(decision.env.history) == decision.message  # the copy is the game before the move
        assert decision.teacher_kind in {"offer", "accept", "walk"}
        assert (decision.teacher_offer is not None) == (decision.teacher_kind == "offer")
        if decision.teacher_kind == "offer":  # linear concedes from its anchor to its reservation, never past it
            reservation = decision.env.reservation[decision.player]
            sign = 1 if decision.role == "seller" else -1
            assert sign * (decision.teacher_offer - reservation) >= 0


def test_an_answer_is_parsed_as_in_play_and_the_summary_counts_it():
    torch.manual_seed(0)
    tiny = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("bazaar",))
    module = MaroModule(tiny=tiny)
    module.configure_model()
    found = bazaar_prices.decisions({"obs_format": "compact"}, "linear", games=1, seed=0)[:4]
    answers = [bazaar_prices.answer(PolicyPlayer(module), d) for d in found]
    assert all(a.kind in {"offer", "accept", "walk", "talk", "invalid"} for a in answers)
    assert all(len(d.env.history) == d.message for d in found)  # answering left the decision's copy alone
    row = bazaar_prices.summary(found, answers)
    assert row["n"] == 4 and 0.0 <= row["same kind"] <= 1.0


def test_within_message_rank_correlation_removes_each_messages_mean():
    # Across messages x and y both rise (a plain correlation near 1); within each message they move oppositely.
    pairs = [(0, 0.0, 1.0), (0, 1.0, 0.0), (1, 10.0, 11.0), (1, 11.0, 10.0)]
    assert bazaar_prices.within_message_rank_correlation(pairs) == pytest.approx(-1.0)
    wild = [(0, 1.0, 1.0), (0, 2.0, 2.0), (0, 3.0, 900.0), (0, 4.0, 3.0)]  # one wild offer: still in order but one
    assert bazaar_prices.within_message_rank_correlation(wild) == pytest.approx(0.8)
    assert bazaar_prices.within_message_rank_correlation(
        [(0, 1.0, 5.0), (0, 2.0, 5.0), (0, 3.0, 7.0)]
    ) == pytest.approx(0.75**0.5)
    assert math.isnan(  # one pair per message: nothing varies within a message
        bazaar_prices.within_message_rank_correlation([(0, 1.0, 2.0), (1, 3.0, 4.0)])
    )
