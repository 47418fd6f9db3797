"""A few real optimizer steps per game: finite losses, changed weights, logged metrics; imitation, replay,
subclassing, the evaluation ladder."""

import math

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import RecordLosses
from helpers import data
from helpers import flat_params
from helpers import simulation
from helpers import tiny_module

from maro_lightning.credit import Episode
from maro_lightning.module import HeadConfig
from maro_lightning.module import MaroModule


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.mark.parametrize("game", ["bazaar", "deal", "mafia"])
def test_a_few_steps_per_game_change_the_weights(game):
    L.seed_everything(0, verbose=False)
    module, record = tiny_module(game), RecordLosses()
    sim = simulation(game, imitation_rounds=1)
    trainer = L.Trainer(max_steps=4, callbacks=[sim, record], **QUIET)
    trainer.fit(module, datamodule=data(game))
    assert trainer.global_step == 4 and sim.rounds >= 2  # the warm-start round, then RL rounds
    assert all(math.isfinite(loss) for loss in record.losses)
    assert not torch.equal(record.start, flat_params(module))
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/pg_loss", "train/utility_loss", "train/entropy", "rollout/invalid_rate"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert any(k.startswith(f"rollout/{game}/") and k.endswith("/success") for k in metrics)


def test_a_head_reading_last_and_mean_states_trains_in_the_real_loop():
    L.seed_everything(0, verbose=False)
    module, dm = tiny_module(head=HeadConfig(inputs="last_mean")), data()
    pushed = []
    push = dm.push
    dm.push = lambda samples: pushed.append(samples) or push(samples)
    trainer = L.Trainer(max_steps=4, callbacks=[simulation(imitation_rounds=1)], **QUIET)
    trainer.fit(module, datamodule=dm)
    head = module.utility_head
    assert head.body[0].normalized_shape == (64,) and head.out.weight.abs().sum() > 0  # 2H in; trained from zero
    rl = pushed[-1]  # scored by the head trained on the rounds before
    assert all(math.isfinite(s.value) and math.isfinite(s.q_value) for s in rl) and any(s.value != 0 for s in rl)


def test_imitation_rounds_clone_the_teacher_then_rl_takes_over():
    L.seed_everything(0, verbose=False)
    module, dm = tiny_module(), data()
    sim = simulation(imitation_rounds=2, rl_lr=1e-4)
    pushed = []
    push = dm.push
    dm.push = lambda samples: pushed.append(samples) or push(samples)
    trainer = L.Trainer(max_steps=8, callbacks=[sim], **QUIET)
    trainer.fit(module, datamodule=dm)
    assert [g["lr"] for g in trainer.optimizers[0].param_groups] == [1e-4]  # RL's rate after the warm start
    teacher, rl = pushed[0], pushed[-1]
    assert all(s.advantage == 1.0 and s.old_logprobs is None for s in teacher)  # imitation: the NLL
    assert any(s.response.startswith(("How", "[", "Let", "I")) for s in teacher)  # the linear agent's text
    assert all(s.old_logprobs is not None and s.ref_logprobs is not None for s in rl)  # beta > 0: KL term
    assert len(pushed) > 2


def test_replay_trains_from_saved_rounds_without_simulating(tmp_path):
    L.seed_everything(0, verbose=False)
    shards = tmp_path / "rounds"
    trainer = L.Trainer(max_steps=3, callbacks=[simulation()], **QUIET)
    trainer.fit(tiny_module(), datamodule=data(persist_dir=str(shards)))
    saved = sorted(p.name for p in shards.iterdir())
    assert saved and saved[0] == "round_000001"
    module, record = tiny_module(), RecordLosses()
    replay = data(replay_dir=str(shards))
    L.Trainer(max_steps=3, callbacks=[record], **QUIET).fit(module, datamodule=replay)
    assert replay.replay_position >= 1 and all(math.isfinite(x) for x in record.losses)
    assert not torch.equal(record.start, flat_params(module))


class InvalidPenalty(MaroModule):
    """A new reward scheme: −0.25 on every invalid behaviour, on top of the outcome."""

    def behaviour_rewards(self, episode: Episode, player: int) -> torch.Tensor:
        rewards = super().behaviour_rewards(episode, player)
        invalid = torch.tensor([not b.valid for b in episode.behaviours[player]], dtype=torch.float64)
        return rewards - 0.25 * invalid


def test_a_subclass_with_a_new_reward_scheme_trains():
    L.seed_everything(0, verbose=False)
    module, record = tiny_module("mafia", module_class=InvalidPenalty), RecordLosses()
    seen = []
    hook = module.behaviour_rewards
    module.behaviour_rewards = lambda e, p: seen.append(hook(e, p)) or seen[-1]
    L.Trainer(max_steps=3, callbacks=[simulation("mafia"), record], **QUIET).fit(module, datamodule=data("mafia"))
    assert seen and all(math.isfinite(x) for x in record.losses)
    assert any((r < 0).any() and r[-1] != 0 for r in seen)  # invalid turns were penalised, the outcome kept
    assert not torch.equal(record.start, flat_params(module))


def test_validate_plays_the_ladder_with_wilson_intervals():
    L.seed_everything(0, verbose=False)
    module = tiny_module()
    trainer = L.Trainer(**{**QUIET, "limit_val_batches": None})
    (results,) = trainer.validate(module, datamodule=data(), verbose=False)
    keys = [k.removesuffix("/success") for k in results if k.endswith("/success")]
    assert {k.split("/")[2] for k in keys} == {
        "linear",
        "boulware",
        "conceder",
        "hardliner",
        "random",
        "time_dependent",
        "tit_for_tat",
    }
    for key in keys:
        assert results[f"{key}/success_low"] <= results[f"{key}/success"] <= results[f"{key}/success_high"]
    assert any(k.startswith("val/invalid_rate/bazaar/") for k in results)


def test_a_trained_tiny_policy_exports_and_reloads_as_a_hugging_face_folder(tmp_path):
    from maro_lightning.models import load_policy

    module = tiny_module()
    module.configure_model()
    module.save_pretrained(str(tmp_path / "policy"))
    model, tokenizer = load_policy(str(tmp_path / "policy"), dtype="float32", attn_implementation="eager")
    text = "[Offer: $92] S L=100"
    assert tokenizer(text)["input_ids"] == module.tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == module.tokenizer.chat_template
    ids = torch.tensor([module.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, module.policy(input_ids=ids).logits)

    # the exported folder trains like any Hugging Face model path (SDPA attention, loaded, not built)
    L.seed_everything(0, verbose=False)
    loaded, record = tiny_module(policy=str(tmp_path / "policy")), RecordLosses()
    L.Trainer(max_steps=2, callbacks=[simulation(), record], **QUIET).fit(loaded, datamodule=data())
    assert loaded.policy.config._attn_implementation == "sdpa" and all(math.isfinite(x) for x in record.losses)
    assert not torch.equal(record.start, flat_params(loaded))


def test_the_simulation_needs_the_trajectory_data_module():
    loader = torch.utils.data.DataLoader(range(4))
    with pytest.raises(TypeError, match="SimulationCallback feeds a TrajectoryDataModule"):
        L.Trainer(max_steps=1, callbacks=[simulation()], **QUIET).fit(tiny_module(), train_dataloaders=loader)
