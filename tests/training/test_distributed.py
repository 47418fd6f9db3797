"""Two-process DDP on CPU (gloo) through ``ddp_spawn``: each rank simulates its own games, and the
gradients keep the replicas identical (LIGHTNING_RECIPES §3)."""

import lightning as L
import torch
from helpers import QUIET
from helpers import data
from helpers import flat_params
from helpers import simulation
from helpers import tiny_module


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

    def on_train_end(self, trainer, pl_module):  # noqa: ANN001
        params = pl_module.all_gather(flat_params(pl_module))
        assert torch.equal(params[0], params[1]), "the replicas diverged"
        first = pl_module.all_gather(self.first_batch)
        assert first[0] != first[1], "both ranks trained on the same games"
        baselines = pl_module.all_gather(torch.tensor(list(pl_module.credit.counts.total(lambda *k: k).values())))
        assert torch.equal(baselines[0], baselines[1]), "the credit state differs across ranks"


def test_two_rank_ddp_keeps_replicas_in_sync(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "PL_GLOBAL_SEED"):
        monkeypatch.delenv(name, raising=False)  # ddp_spawn leaves them behind; do not inherit or leak them
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(strategy="ddp_spawn", devices=2, max_steps=3, callbacks=[simulation(), CheckRanks()], **QUIET)
    trainer.fit(tiny_module(), datamodule=data())  # the checks run inside the ranks; a failure fails the fit
    assert torch.isfinite(trainer.callback_metrics["train/loss"])  # rank 0's metrics come back to the parent
