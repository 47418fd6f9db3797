"""benchmarks/mafia_targets.py: the target choices it reads are real, legal and complete, and the policy's target
distribution it measures is a distribution over the players."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from maro_lightning.models import TinyModelConfig
from maro_lightning.module import MaroModule
from maro_lightning.play import PolicyPlayer

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("benchmarks_mafia_targets", ROOT / "benchmarks" / "mafia_targets.py")
mafia_targets = sys.modules["benchmarks_mafia_targets"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mafia_targets)


def test_the_decisions_are_every_target_choice_with_its_legal_targets():
    found = mafia_targets.decisions({"obs_format": "compact", "talk_rounds": 1}, games=2, seed=0)
    kinds = {d.kind for d in found}
    assert {"day vote", "night vote"} <= kinds <= {"day vote", "night vote", "night protect", "night investigate"}
    for decision in found:
        assert decision.players == 6 and decision.legal and set(decision.legal) <= set(range(6))
        assert decision.prompt.rstrip().endswith(" ".join(map(str, decision.legal)))  # compact: `> vote 0 2 3`
        assert decision.tag == ("vote" if decision.kind == "day vote" else decision.kind.split()[1])


def test_the_target_distribution_covers_the_players():
    torch.manual_seed(0)
    tiny = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("mafia",))
    module = MaroModule(tiny=tiny)
    module.configure_model()
    player = PolicyPlayer(module)
    decision = mafia_targets.decisions({"obs_format": "compact"}, games=1, seed=0)[0]
    probabilities = mafia_targets.target_distribution(player, decision)
    assert probabilities.shape == (6,) and float(probabilities.sum()) == pytest.approx(1.0)
