"""SIGTERM or SIGINT during a rollout round: the round is given up at the next sweep, a checkpoint of the state
before it is saved, the run ends with status 128 + signal, and the checkpoint resumes."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import data
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint

from maro_lightning.rollout import RolloutEngine
from maro_lightning.signals import RunStopped


class Sweeps:
    """Counts the engine's sweeps per round and sends ``signum`` to this process during the second round."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, signum: int | None) -> None:
        self.rounds: list[int] = []
        sweep = RolloutEngine._sweep

        def counted(engine: RolloutEngine, games: list) -> dict:
            if not any(len(g.env.turns) for g in games):  # the first sweep of a round
                self.rounds.append(0)
            self.rounds[-1] += 1
            if signum is not None and len(self.rounds) == 2 and self.rounds[-1] == 2:
                os.kill(os.getpid(), signum)  # handled at once, in this (the main) thread
            return sweep(engine, games)

        monkeypatch.setattr(RolloutEngine, "_sweep", counted)


def fit(root, max_steps: int, ckpt_path=None) -> tuple[L.Trainer, object]:  # noqa: ANN001
    L.seed_everything(0, verbose=False)
    sim = simulation(games_per_round=4, rollout_every=2)
    checkpoints = ModelCheckpoint(dirpath=root, every_n_train_steps=100)
    trainer = L.Trainer(max_steps=max_steps, callbacks=[sim, checkpoints], **{**QUIET, "enable_checkpointing": True})
    trainer.fit(tiny_module(), datamodule=data(batch_size=4), ckpt_path=ckpt_path)
    return trainer, sim


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_rollout_stops_at_the_next_sweep_and_leaves_a_resumable_checkpoint(
    tmp_path, monkeypatch, signum
):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    before = signal.getsignal(signum)
    sweeps = Sweeps(monkeypatch, signum)
    with pytest.raises(RunStopped) as stopped:
        fit(tmp_path, max_steps=50)
    assert stopped.value.code == 128 + signum
    assert sweeps.rounds[1] == 2  # the round was given up right after the sweep that got the signal
    assert len(sweeps.rounds) == 2 and signal.getsignal(signum) == before  # no more rounds; handlers restored

    saved = torch.load(tmp_path / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == 2 and saved["callbacks"]["SimulationCallback"]["rounds"] == 1

    monkeypatch.undo()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    resumed = Sweeps(monkeypatch, None)
    trainer, sim = fit(tmp_path / "resumed", max_steps=4, ckpt_path=tmp_path / "interrupted.ckpt")
    assert trainer.global_step == 4 and sim.rounds == 2  # the given-up round was played again, then trained on
    assert len(resumed.rounds) == 1 and resumed.rounds[0] > 2
