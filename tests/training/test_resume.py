"""Stop after k steps, resume from the checkpoint, and the run continues exactly as if never stopped:
global step, optimizer state, credit state, the league of frozen opponents, data plan and the rollouts' random
streams."""

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import RecordLosses
from helpers import data
from helpers import flat_params
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint

from maro_lightning.module import OPPONENT
from maro_lightning.rollout.league import LeagueConfig


def run(root, max_steps, ckpt_path=None):
    L.seed_everything(0, verbose=False)
    module, sim, record = (
        tiny_module(),
        simulation(imitation_rounds=1, opponent_refresh=1, rollout_every=2, league=LeagueConfig(3, "pfsp")),
        RecordLosses(),
    )
    checkpoints = ModelCheckpoint(dirpath=root, every_n_train_steps=3, save_top_k=-1, filename="{step}")
    trainer = L.Trainer(
        max_steps=max_steps, callbacks=[sim, record, checkpoints], **{**QUIET, "enable_checkpointing": True}
    )
    trainer.fit(module, datamodule=data(batch_size=4), ckpt_path=ckpt_path)
    return trainer, module, sim, record


def test_a_resumed_run_matches_the_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    _, straight, straight_sim, straight_losses = run(tmp_path / "a", max_steps=9)
    trainer, resumed, resumed_sim, resumed_losses = run(tmp_path / "b", 9, ckpt_path=tmp_path / "a" / "step=3.ckpt")
    assert trainer.global_step == 9 and len(resumed_losses.losses) == 6
    assert resumed_losses.losses == straight_losses.losses[3:]  # bit for bit, rounds after the resume included
    assert straight_sim.rounds == resumed_sim.rounds == 5  # rounds at steps 0, 2, 4, 6, 8
    assert torch.equal(flat_params(straight), flat_params(resumed))
    assert straight.credit.state_dict() == resumed.credit.state_dict()
    league, resumed_league = straight_sim.league, resumed_sim.league
    assert [(m.id, m.successes, m.games) for m in league.members] == [
        (m.id, m.successes, m.games) for m in resumed_league.members
    ]
    assert len(league.members) == 3 and sum(m.games for m in league.members) > 0  # PFSP had a record to draw on
    for a, b in zip(straight.snapshots[OPPONENT].parameters(), resumed.snapshots[OPPONENT].parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_of_other_games_does_not_resume_the_simulation():
    """The Python API's side of `maro fit --ckpt_path` refusing a checkpoint of another game."""
    from maro_lightning.errors import ConfigError

    sim, other = simulation("bazaar"), simulation("deal")
    other.rounds = 3
    with pytest.raises(ConfigError, match="trained on deal, but the SimulationCallback plays bazaar"):
        sim.load_state_dict(other.state_dict())
    sim.load_state_dict(simulation("bazaar").state_dict() | {"rounds": 3})
    assert sim.rounds == 3
