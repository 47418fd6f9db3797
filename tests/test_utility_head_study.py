"""benchmarks/utility_head.py: its pieces on a tiny model (the read positions, the information rule of the hand
features, the bootstrap's EV, the agents across chunks) and one fit, in seconds."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from maro_lightning.metrics import explained_variance
from maro_lightning.models import TinyModelConfig
from maro_lightning.module import HeadConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import game_seeds
from maro_lightning.seeding import seeded

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("benchmarks_utility_head", ROOT / "benchmarks" / "utility_head.py")
study = sys.modules["benchmarks_utility_head"] = importlib.util.module_from_spec(_SPEC)  # dataclasses look it up
_SPEC.loader.exec_module(study)

SPECS = [GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"frozen": 0.5, "linear": 0.5})]


def _module(head: HeadConfig | None = None) -> MaroModule:
    torch.manual_seed(0)
    tiny = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("bazaar",))
    module = MaroModule(tiny=tiny, head=head)
    module.configure_model()
    torch.nn.init.normal_(module.utility_head.out.weight)  # a head that says something, so positions matter
    module.policy.eval()
    return module


@pytest.fixture(scope="module")
def module():
    return _module()


def _games(module, seeds):
    engine = RolloutEngine(SPECS, module.tokenizer, module.sampling)
    with seeded(0, module.device):
        return engine.play_seeds(seeds, module.policy_backend())


def test_collect_reads_where_the_head_reads_and_keeps_agents_apart(module):
    seeds = game_seeds(0, 6)
    data = study.collect(module, SPECS, seeds, chunk=3)  # two chunks: asserts the head's V on every chunk
    n = len(data.keys)
    assert {k: v.shape for k, v in data.inputs.items()} == {
        "last": (n, 2, 32), "mid": (n, 2, 32), "mean": (n, 2, 32), "visible": (n, 2, 17), "hidden": (n, 2, 20),
    }  # fmt: skip
    torch.testing.assert_close(module.utility_head(data.inputs["last"][:, 1]), data.q_values)
    assert int(data.agent.max()) + 1 == 6  # one learner per game, ids distinct across the chunks
    outcome, lam = data.targets["outcome"], data.targets["lambda_return"]
    assert not torch.equal(outcome, lam)  # λ-returns read the head's V, the return-to-go does not
    episodes = data.agent.tolist()
    assert all(outcome[i] == outcome[j] for i in range(n) for j in range(n) if episodes[i] == episodes[j])


def test_collect_reads_what_a_last_mean_head_reads():
    module = _module(HeadConfig(inputs="last_mean"))
    study.collect(module, SPECS, game_seeds(3, 2))  # asserts the library's V from the study's last and mean inputs
    refits = [v for v in study.variants("last_mean") if v.start == "checkpoint"]
    assert refits and all(v.inputs == ("last", "mean") for v in refits)  # its refits read the same


def test_bazaar_visible_features_do_not_see_the_other_reservation(module):
    games = _games(module, game_seeds(1, 4))
    scored = module.score(games)
    before = study.hand_inputs(games, scored.episodes)
    for game in games:
        game.env.reservation = {p: r + 7 for p, r in game.env.reservation.items()}  # a different hidden deal
    after = study.hand_inputs(games, scored.episodes)
    assert torch.equal(before["visible"], after["visible"])
    assert not torch.equal(before["hidden"], after["hidden"])
    visible = before["visible"]
    assert torch.equal(visible[:, 0, :10], visible[:, 1, :10])  # the state is the same before and after acting
    assert (visible[:, 0, 10:] == 0).all() and (visible[:, 1, 10] == 1).all()  # the action only at Q


def test_ev_from_sums_is_the_library_explained_variance_and_the_bootstrap_varies():
    torch.manual_seed(0)
    y = torch.randn(40, dtype=torch.float64)
    v, q = y + 0.5 * torch.randn(40, dtype=torch.float64), y + torch.randn(40, dtype=torch.float64)
    agent = torch.arange(40) // 4
    totals = study.agent_sums(v, q, y, agent).sum(0)
    torch.testing.assert_close(study.ev_from_sums(totals), explained_variance(v, q, y))
    assert study.bootstrap_evs(v, q, y, agent, boot=100).std() > 0


def test_a_fit_learns_a_visible_target(module):
    data = study.collect(module, SPECS, game_seeds(2, 8), chunk=8)
    target = data.inputs["visible"][:, 0, 1].double()  # own reservation / L: visible, so learnable from the features
    data = dataclasses.replace(data, targets={"outcome": target}, weights=torch.ones(len(target)))
    variant = study.Variant("hand", inputs=("visible",), width=16, depth=1, lr=1e-2, epochs=200)
    values, q_values = study.fit(variant, data, module.utility_head)(data.inputs["visible"]).unbind(-1)
    assert explained_variance(values, q_values, target) > 0.8
