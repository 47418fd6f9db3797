"""Every credit hook can be overridden on a MaroModule subclass, one level deep, or on an assigner injected as
``credit`` (``credit: {class_path: ...}`` in YAML); the module's defaults call its assigner's."""

import sys

import pytest
import torch

from maro_lightning.cli import main
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig
from maro_lightning.module import MaroModule
from maro_lightning.scoring import ScoredRound

N = 11  # behaviours of the canonical round (tests/credit/conftest.py)
RETURN_TO_GO_OF_ONES = [2.0, 1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0]  # Σ_{k≥t} 1 per agent


class Rewards(MaroModule):
    def behaviour_rewards(self, episode, player):
        return torch.ones(len(episode.behaviours[player]), dtype=torch.float64)


class M1(MaroModule):
    def compute_rewards(self, batch):
        return torch.arange(batch.size, dtype=torch.float64)


class Advantages(MaroModule):
    def compute_advantages(self, batch, rewards):
        return 2 * super().compute_advantages(batch, rewards)


class Weights(MaroModule):
    def compute_weights(self, batch):
        return torch.full((batch.size,), 3.0, dtype=torch.float64)


class Targets(MaroModule):
    def compute_targets(self, batch):
        return -batch.z


def _round(mafia_round) -> ScoredRound:
    episodes, values, q_values = mafia_round
    return ScoredRound(episodes, values, q_values, [([1], [2])] * N, [None] * N)


def _credit(module: MaroModule, mafia_round) -> list:
    return module.credit_round(_round(mafia_round))


def test_the_default_hooks_give_the_assigners_credit(mafia_round):
    expected = CreditAssigner(CreditConfig()).assign(*mafia_round)
    assert [s.advantage for s in _credit(MaroModule(), mafia_round)] == [s.advantage for s in expected]


def test_behaviour_rewards_override(mafia_round):
    samples = _credit(Rewards(credit=CreditConfig(lam=1.0)), mafia_round)
    assert [s.utility_target for s in samples] == RETURN_TO_GO_OF_ONES  # the target is the shaped return-to-go


def test_compute_rewards_override(mafia_round):
    samples = _credit(M1(), mafia_round)
    assert [s.reward for s in samples] == list(range(N))


def test_compute_advantages_override_calling_super(mafia_round):
    default = [s.advantage for s in _credit(MaroModule(), mafia_round)]
    doubled = [s.advantage for s in _credit(Advantages(), mafia_round)]
    assert doubled == [2 * a for a in default] and any(default)


def test_compute_weights_override(mafia_round):
    assert [s.weight for s in _credit(Weights(), mafia_round)] == [3.0] * N


def test_compute_targets_override(mafia_round):
    samples = _credit(Targets(), mafia_round)
    assert [s.utility_target for s in samples] == [-s.z for s in samples]


class HalfAdvantages(CreditAssigner):
    def compute_advantages(self, batch, rewards):
        return super().compute_advantages(batch, rewards) / 2


def test_an_injected_assigner_supplies_the_modules_defaults_and_composes_with_overrides(mafia_round):
    default = [s.advantage for s in _credit(MaroModule(), mafia_round)]
    injected = MaroModule(credit=HalfAdvantages(CreditConfig()))
    assert [s.advantage for s in _credit(injected, mafia_round)] == [a / 2 for a in default]
    both = Advantages(credit=HalfAdvantages(CreditConfig()))  # module override → injected assigner → default
    assert [s.advantage for s in _credit(both, mafia_round)] == default
    assert injected.credit_config == CreditConfig() and injected.hparams["credit"]["mode"] == "maro"


def test_an_explicit_assigner_uses_its_own_hooks_not_the_modules(mafia_round):
    class Refuses(MaroModule):
        def behaviour_rewards(self, episode, player):
            raise AssertionError("the warm start's imitation credit must not call the module's hooks")

    imitation = CreditAssigner(CreditConfig(mode="imitation", weighting="none"))
    samples = Refuses().credit_round(_round(mafia_round), imitation)
    assert [s.advantage for s in samples] == [1.0] * N


def test_a_config_injects_an_assigner_by_class_path(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["maro"])
    credit = "{class_path: maro_lightning.credit.CreditAssigner, init_args: {config: {lam: 0.5}}}"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.init_args.credit", credit, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: maro_lightning.credit.CreditAssigner" in printed and "lam: 0.5" in printed
