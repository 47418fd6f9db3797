"""Two-process DDP on CPU (gloo) through ``ddp_spawn``: each rank simulates its own games, the gradients keep the
replicas identical, and a resume continues each rank's own stream (docs/design.md#the-training-loop). One test, as
every spawn of two ranks costs seconds of start-up."""

import lightning as L
import torch
from helpers import QUIET
from helpers import data
from helpers import flat_params
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint

from maro_lightning.callbacks import SimulationCallback


class CheckRanks(L.Callback):
    """Asserts inside every rank: same init, different games, identical parameters after the steps."""

    def setup(self, trainer, pl_module, stage):  # noqa: ANN001
        self.first_batch = None

    def on_train_start(self, trainer, pl_module):  # noqa: ANN001 - after DDP wrapped (and broadcast) the model
        params = pl_module.all_gather(flat_params(pl_module))
        assert torch.equal(params[0], params[1]), "the replicas start apart"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        if self.first_batch is None:
            self.first_batch = batch.input_ids.float().sum()
        # the loss divides by the step's totals over both ranks (one micro-batch per step here)
        local = torch.tensor([batch.targets.numel(), batch.size, batch.weights.double().sum()], dtype=torch.float64)
        torch.testing.assert_close(batch.step_totals.as_tensor(), pl_module.all_gather(local).sum(0).cpu())

    def on_train_end(self, trainer, pl_module):  # noqa: ANN001
        params = pl_module.all_gather(flat_params(pl_module))
        assert torch.equal(params[0], params[1]), "the replicas diverged"
        first = pl_module.all_gather(self.first_batch)
        assert first[0] != first[1], "both ranks trained on the same games"
        baselines = pl_module.all_gather(torch.tensor(list(pl_module.credit.counts.total(lambda *k: k).values())))
        assert torch.equal(baselines[0], baselines[1]), "the credit state differs across ranks"
        league = next(c for c in trainer.callbacks if isinstance(c, SimulationCallback)).league
        records = pl_module.all_gather(torch.tensor([[m.id, m.games] for m in league.members]))
        assert torch.equal(records[0], records[1]), "the league's records differ across ranks"


class SaveRankLosses(L.Callback):
    """Writes each rank's losses, and rank 0 the final parameters, to ``directory``."""

    def __init__(self, directory) -> None:  # noqa: ANN001
        self.directory, self.losses = directory, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):  # noqa: ANN001
        state = {"losses": self.losses, "params": flat_params(pl_module)}
        torch.save(state, self.directory / f"rank{trainer.global_rank}.pt")


def ddp_run(directory, max_steps, ckpt_path=None):  # noqa: ANN001
    L.seed_everything(0, verbose=False)
    directory.mkdir()
    checkpoints = ModelCheckpoint(dirpath=directory, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    callbacks = [simulation(rollout_every=2), SaveRankLosses(directory), checkpoints, CheckRanks()]
    trainer = L.Trainer(
        strategy="ddp_spawn",
        devices=2,
        max_steps=max_steps,
        callbacks=callbacks,
        **{**QUIET, "enable_checkpointing": True},
    )
    trainer.fit(tiny_module(), datamodule=data(batch_size=4), ckpt_path=ckpt_path)  # CheckRanks asserts in the ranks
    assert torch.isfinite(trainer.callback_metrics["train/loss"])  # rank 0's metrics come back to the parent
    return [torch.load(directory / f"rank{r}.pt") for r in range(2)]


def test_two_rank_ddp_stays_in_sync_and_resumes_each_ranks_own_stream(tmp_path, monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "PL_GLOBAL_SEED"):
        monkeypatch.delenv(name, raising=False)  # ddp_spawn leaves them behind; do not inherit or leak them
    straight = ddp_run(tmp_path / "a", max_steps=4)
    resumed = ddp_run(tmp_path / "b", max_steps=4, ckpt_path=tmp_path / "a" / "step=2.ckpt")
    for rank in range(2):  # each rank resumes its own buffer and plan, not rank 0's
        assert resumed[rank]["losses"] == straight[rank]["losses"][2:]
        assert torch.equal(resumed[rank]["params"], straight[rank]["params"])
    assert straight[0]["losses"] != straight[1]["losses"]
