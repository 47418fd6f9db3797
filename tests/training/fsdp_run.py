"""Two FSDP2 ranks on CPU (gloo) through Lightning's ``ModelParallelStrategy``, started by ``test_fsdp.py``.

``python fsdp_run.py OUT``; Lightning starts the second rank by running this file again. Each rank trains 4 steps of
the tiny model (a warm-start round, then an RL round: generation, scoring, the reference's refresh, a league member)
with more games on rank 1 than on rank 0, gradient checkpointing and gradient clipping on, saving a checkpoint at
step 2; then, in the same processes, resumes from it to step 4 and plays one ladder match per rank (``validate``).
Each rank writes what it saw to ``OUT/rank{r}.json``.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from helpers import QUIET
from helpers import data
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.tensor import DTensor

from maro_lightning import fsdp
from maro_lightning.callbacks import SimulationCallback
from maro_lightning.module import REFERENCE
from maro_lightning.module import MaroModule

CLIP = 0.05  # below the tiny model's gradient norms: every step is clipped


class Probe(L.Callback):
    """Makes the rounds uneven (3 games on rank 0, 5 on rank 1) and records, per rank: the policy's forwards and
    ``generate`` calls, the losses, the logged and the clipped gradient norms, the sharding and the snapshots."""

    def __init__(self) -> None:
        self.record: dict = {"forwards": 0, "generates": 0, "losses": [], "grad_norms": [], "clipped_norms": []}

    def setup(self, trainer: L.Trainer, module: MaroModule, stage: str) -> None:
        simulation_callback = next(c for c in trainer.callbacks if isinstance(c, SimulationCallback))
        simulation_callback.games_per_round = 3 + 2 * trainer.global_rank
        self.record["games_per_round"] = simulation_callback.games_per_round

    def on_fit_start(self, trainer: L.Trainer, module: MaroModule) -> None:  # configure_model has sharded it
        params = list(module.parameters())
        self.record["all_sharded"] = all(isinstance(p, DTensor) for p in params)
        self.record["local_numel"] = sum(p.to_local().numel() for p in params)
        self.record["numel"] = sum(p.numel() for p in params)
        self.record["checkpointing"] = any(getattr(m, "gradient_checkpointing", False) for m in module.policy.modules())
        self._instrument(module)

    def _instrument(self, module: MaroModule) -> None:
        """Count the trunk's forwards (generation, scoring, training) and ``generate`` calls; check each refreshed
        snapshot against the policy's gathered weights."""
        record, generate, refresh = self.record, module.policy.generate, module.refresh_snapshot

        def count_forward(*_) -> None:  # noqa: ANN002
            record["forwards"] += 1

        def counted_generate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            record["generates"] += 1
            return generate(*args, **kwargs)

        def checked_refresh(name: str) -> None:
            refresh(name)
            policy, snapshot = module.policy_weights(), module.snapshots[name].state_dict()
            record[f"refreshed_{name}_equal"] = all(torch.equal(policy[k], v) for k, v in snapshot.items())

        module.policy.get_decoder().register_forward_pre_hook(count_forward)
        module.policy.generate, module.refresh_snapshot = counted_generate, checked_refresh

    def on_train_batch_end(self, trainer: L.Trainer, module: MaroModule, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.record["losses"].append(float(outputs["loss"]))
        self.record["grad_norms"].append(float(trainer.callback_metrics["train/grad_norm"]))
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        self.record["clipped_norms"].append(float(fsdp.global_norm(grads)))

    def on_train_end(self, trainer: L.Trainer, module: MaroModule) -> None:
        snapshot = module.snapshots[REFERENCE]
        self.record["snapshot_sharded"] = fsdp.is_sharded(snapshot)
        self.record["snapshot_sum"] = float(sum(t.double().sum() for t in snapshot.state_dict().values()))


def fit(out: Path, ckpt_path: Path | None = None) -> tuple[L.Trainer, MaroModule, dict]:
    L.seed_everything(0, verbose=False)
    probe = Probe()
    checkpoints = ModelCheckpoint(dirpath=out, every_n_train_steps=2, save_top_k=-1, filename="{step}")
    strategy = ModelParallelStrategy(
        data_parallel_size=2, tensor_parallel_size=1, save_distributed_checkpoint=False, timeout=timedelta(seconds=60)
    )
    trainer = L.Trainer(
        strategy=strategy,
        devices=2,
        max_steps=4,
        gradient_clip_val=CLIP,
        callbacks=[simulation(rollout_every=2, imitation_rounds=1), probe, checkpoints],
        **{**QUIET, "enable_checkpointing": True},
    )
    module = tiny_module(score_batch_size=4, generation_batch_size=2, gradient_checkpointing=True)
    trainer.fit(module, datamodule=data(batch_size=4), ckpt_path=ckpt_path)
    return trainer, module, probe.record


def main(out: Path) -> None:
    _, module, straight = fit(out / "straight")
    final = fsdp.full_tensors(module.state_dict())
    trainer, module, resumed = fit(out / "resumed", ckpt_path=out / "straight" / "step=2.ckpt")
    resumed_final = fsdp.full_tensors(module.state_dict())
    resumed["params_equal"] = final.keys() == resumed_final.keys() and all(
        torch.equal(final[k], resumed_final[k]) for k in final
    )
    trainer.limit_val_batches = 1  # one match per rank: the ladder's generation in lock-step too
    metrics = trainer.validate(module, datamodule=trainer.datamodule, verbose=False)[0]
    resumed["validated"] = sorted(k for k in metrics if k.startswith("val/invalid_rate/"))
    rank = torch.distributed.get_rank()
    (out / f"rank{rank}.json").write_text(json.dumps({"straight": straight, "resumed": resumed}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
