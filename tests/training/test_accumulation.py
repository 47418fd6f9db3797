"""Gradient accumulation gives the update of one big batch: the loss divides by the whole optimizer step's tokens
(the invariance of docs/design.md#testing, here through the real Trainer, for both aggregations)."""

import copy
import functools

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import flat_params
from helpers import tiny_module

from maro_lightning.data import TrajectoryDataModule
from maro_lightning.module import LossConfig
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import RolloutEngine


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
def test_two_micro_batches_update_like_one_batch(aggregation, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    L.seed_everything(0, verbose=False)
    sgd = functools.partial(torch.optim.SGD, lr=1.0)  # an update proportional to the gradient (Adam's is not)
    module = tiny_module(optimizer=sgd, loss=LossConfig(beta=0.05, aggregation=aggregation))
    module.configure_model()
    spec = GameSpec("deal", options={"obs_format": "compact"}, opponents={"greedy": 1.0}, teacher="greedy")
    engine = RolloutEngine([spec], module.tokenizer, module.sampling)
    games = engine.play(6, seed=1, policy=module.policy_backend(), imitate=True)  # the teacher's texts vary in length
    samples = module.credit_round(module.score(games))
    assert len({len(s.response_ids) for s in samples}) > 1  # responses of different lengths: the case that matters
    start = flat_params(module)

    def one_step(batch_size, accumulate):
        copy_ = copy.deepcopy(module)
        dm = TrajectoryDataModule(batch_size=batch_size, seed=5)
        dm.push(samples)  # one plan: the same shuffled order, cut into 8 or into 2 × 4
        L.Trainer(max_steps=1, accumulate_grad_batches=accumulate, **QUIET).fit(copy_, datamodule=dm)
        return flat_params(copy_) - start

    whole, split = one_step(8, 1), one_step(4, 2)
    assert whole.abs().max() > 1e-4  # the step did move the weights
    torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-6)
