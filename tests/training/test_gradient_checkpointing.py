"""``model.init_args.gradient_checkpointing``: the policy's decoder layers recompute their activations in the training
backward, the step's loss and gradients stay those without it, and rollouts and scoring are unaffected."""

import functools

import lightning as L
import torch
from helpers import QUIET
from helpers import RecordLosses
from helpers import flat_params
from helpers import tiny_module

from maro_lightning.data import TrajectoryDataModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import RolloutEngine
from maro_lightning.seeding import seeded


def _built(gradient_checkpointing: bool):
    sgd = functools.partial(torch.optim.SGD, lr=1.0)  # the update is minus the gradient
    module = tiny_module(optimizer=sgd, gradient_checkpointing=gradient_checkpointing)
    L.seed_everything(0, verbose=False)  # the same initial weights, snapshot included, for both modules
    module.configure_model()
    return module


def _fit_one_step(module, samples) -> tuple[float, torch.Tensor, int]:
    """One optimizer step on ``samples``: its loss, the parameters' change and the runs of layer 0 (counted as they
    start: a recompute stops once it has the tensors backward needs, before the layer's last module returns)."""
    calls = []
    hook = module.policy.model.layers[0].input_layernorm.register_forward_pre_hook(lambda *_: calls.append(1))
    dm = TrajectoryDataModule(batch_size=8, seed=5)
    dm.push(samples)
    losses, start = RecordLosses(), flat_params(module)
    L.Trainer(max_steps=1, callbacks=[losses], **QUIET).fit(module, datamodule=dm)
    hook.remove()
    return losses.losses[0], flat_params(module) - start, len(calls)


def test_checkpointing_recomputes_the_layers_and_keeps_the_step(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    plain, checkpointed = _built(False), _built(True)
    assert all(layer.gradient_checkpointing for layer in checkpointed.policy.model.layers)  # what HF reports
    assert not any(layer.gradient_checkpointing for layer in plain.policy.model.layers)
    spec = GameSpec("deal", options={"obs_format": "compact"}, opponents={"greedy": 1.0}, teacher="greedy")
    engine = RolloutEngine([spec], plain.tokenizer, plain.sampling)
    sampled = {}
    for module in (plain, checkpointed):  # the policy plays, generate() samples from the same stream for both
        with seeded(1, torch.device("cpu")):
            sampled[module] = engine.play(3, seed=1, policy=module.policy_backend())
    assert [g.response_ids for g in sampled[plain]] == [g.response_ids for g in sampled[checkpointed]]
    taught = engine.play(6, seed=2, policy=plain.policy_backend(), imitate=True)  # outcomes vary: a real gradient
    scored = {m: m.score(taught) for m in (plain, checkpointed)}  # no grad, eval mode
    for a, b in zip(scored[plain].old_logprobs, scored[checkpointed].old_logprobs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    samples = plain.credit_round(scored[plain])
    loss, update, calls = _fit_one_step(plain, samples)
    loss_ckpt, update_ckpt, calls_ckpt = _fit_one_step(checkpointed, samples)
    assert (calls, calls_ckpt) == (1, 2)  # one micro-batch; checkpointed, the layer runs again in backward
    assert loss_ckpt == loss  # the forward is the same computation
    assert update.abs().max() > 1e-4  # the step did move the weights
    torch.testing.assert_close(update_ckpt, update, rtol=1e-5, atol=1e-7)
