"""Robustness of a training round: degenerate generations go through the games' invalid-action policy and still
train; a non-finite loss or gradient either stops the run with a clear message or skips the update, and never
reaches the weights."""

from __future__ import annotations

import copy
import functools
import math

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import RecordLosses
from helpers import data
from helpers import flat_params
from helpers import tiny_module

from maro_lightning.batch import collate
from maro_lightning.envs.base import FORFEIT_BONUS
from maro_lightning.envs.base import FORFEIT_PENALTY
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig

GAMES = ("bazaar", "deal", "mafia")
# Text that is never a legal action in a game where every seat writes it: nobody ever offers or proposes, so
# there is nothing to accept; there is no Player 9 of 6, and the Mafia day discussion takes no tag at all.
NEVER_VALID = {"bazaar": "[Accept]", "deal": "[Accept]", "mafia": "[Vote: Player 9]"}
ACTION_PHASES = {"night", "day-vote"}  # Mafia phases where a tag is required; "day-talk" is talk only
NO_TAG = ("eos", "garbage", "talk", "empty")


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


# ------------------------------------------------------------------------------------------ stub backends
class Fixed:
    """Writes the same completion for every prompt, whatever the prompt."""

    def __init__(self, completion: list[int]) -> None:
        self.completion = completion

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        return [list(self.completion) for _ in prompts]


class Garbage:
    """Exactly ``max_new_tokens`` tokens and no EOS: the sampler ran into the length cap."""

    def __init__(self, token: int) -> None:
        self.token = token

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        return [[self.token] * sampling.max_new_tokens for _ in prompts]


def stub(kind: str, game: str, tokenizer) -> Fixed | Garbage:  # noqa: ANN001
    encode = functools.partial(tokenizer.encode, add_special_tokens=False)
    eos = tokenizer.eos_token_id
    if kind == "eos":
        return Fixed([eos])
    if kind == "garbage":
        return Garbage(tokenizer.convert_tokens_to_ids("["))  # "[ [ [ [ [ [": a bracket never closed, no tag
    if kind == "talk":
        return Fixed(encode("Let") + [eos])  # a word of the tiny vocabulary ("hello" would be <unk>, decoded "")
    if kind == "empty":
        return Fixed([])  # HF generate always writes >= 1 token; another backend might not
    return Fixed(encode(NEVER_VALID[game]) + [eos])  # "invalid" and "forfeit"


@functools.cache
def _configured(game: str) -> MaroModule:
    module = tiny_module(game)
    module.configure_model()
    return module


def configured(game: str) -> MaroModule:
    """A fresh configured tiny module (a copy: building the vocabulary plays 200 games per game)."""
    return copy.deepcopy(_configured(game))


def play(module: MaroModule, game: str, backend, options=None, num_games=3, **spec) -> list[PlayedGame]:  # noqa: ANN001
    spec.setdefault("opponents", {"policy": 1.0})  # by default every seat writes the stub's text
    games = [GameSpec(game, options={"obs_format": "compact", **(options or {})}, **spec)]
    return RolloutEngine(games, module.tokenizer, module.sampling).play(num_games, seed=7, policy=backend)


def fit_on(module: MaroModule, samples, max_steps: int = 1, callbacks=(), **data_kwargs) -> L.Trainer:  # noqa: ANN001
    """Train on a hand-made buffer: no simulation, the data module replans passes over it."""
    dm = data(**data_kwargs)
    dm.push(samples)
    trainer = L.Trainer(max_steps=max_steps, callbacks=list(callbacks), **QUIET)
    trainer.fit(module, datamodule=dm)
    return trainer


# ------------------------------------------------------------------------------------ the games' rules
def check_rules(game: str, kind: str, played: PlayedGame) -> None:
    """What the game's invalid-action policy (docs/games.md, ``envs/base.py``) makes of the stub's text."""
    env, turns = played.env, played.env.turns
    outcome = env.outcome()
    for turn in turns:
        assert ("invalid_reason" in turn.info) == (not turn.valid), turn
    invalid = [t for t in turns if not t.valid]
    if kind == "forfeit":  # on_invalid="forfeit": the first player to use up its retry loses at once
        last = turns[-1]  # Mafia's night actors each made their first attempt before the forfeit
        assert len(invalid) == len(turns) and [t.index for t in turns if t.info.get("forfeit")] == [last.index]
        attempts = [t.player for t in turns]
        assert attempts.count(last.player) == 2 and all(attempts.count(p) == 1 for p in set(attempts) - {last.player})
        assert outcome.rewards == {p: FORFEIT_PENALTY if p == last.player else FORFEIT_BONUS for p in env.roles}
        return
    # Otherwise every invalid decision is re-prompted once (max_retries=1), then defaulted by the game.
    defaulted = [t for t in invalid if t.info.get("defaulted")]
    assert len(defaulted) == len(invalid) - len(defaulted)
    assert not any(t.info.get("forfeit") for t in turns)
    if game in ("bazaar", "deal"):
        no_deal = outcome.metrics["deal" if game == "bazaar" else "agreement"]
        assert no_deal == 0.0 and set(outcome.rewards.values()) == {0.0} and not any(outcome.success.values())
        applied = [t for t in turns if t.valid or t.info.get("defaulted")]
        assert len(applied) == 10 and all(t.info["kind"] == "talk" and t.action is None for t in applied)
        if kind == "invalid":  # [Accept] with nothing to accept: every attempt invalid, then defaulted to talk
            assert len(turns) == 2 * 10 and len(invalid) == 20
        else:  # no tag is talk, valid until the message limit: T = 10 messages, no deal
            assert len(turns) == 10 and not invalid
        return
    # Mafia: talk is valid only in the day discussion; a night or vote turn needs its tag.
    for turn in turns:
        needs_tag = turn.phase in ACTION_PHASES
        assert turn.valid == (kind in NO_TAG and not needs_tag), turn
    for turn in defaulted:  # the game picks a legal target for the missing action
        if turn.phase in ACTION_PHASES:
            assert turn.action.startswith("[") and turn.info["target"] != turn.player
    teams = {2: [-1.0] * 4 + [1.0] * 2, 4: [-1.0] * 2 + [1.0] * 4}  # winners: the 2 Mafia or the 4 villagers
    assert sorted(outcome.rewards.values()) in teams.values()


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("kind", ["eos", "garbage", "talk", "empty", "invalid", "forfeit"])
@pytest.mark.parametrize("game", GAMES)
def test_degenerate_generations_follow_the_rules_and_still_train(game, kind):
    L.seed_everything(0, verbose=False)
    module = configured(game)
    tokenizer = module.tokenizer
    options = {"on_invalid": "forfeit"} if kind == "forfeit" else None
    games = play(module, game, stub(kind, game, tokenizer), options)

    assert all(g.env.done for g in games)
    for played in games:
        assert set(played.response_ids) == {t.index for t in played.env.turns}  # every seat is the stub
        check_rules(game, kind, played)
    responses = [r for g in games for r in g.response_ids.values()]
    if kind == "empty":  # recorded as a lone EOS: the token HF generate would have written
        assert all(r == [tokenizer.eos_token_id] for r in responses)
    if kind == "garbage":
        assert all(len(r) == module.sampling.max_new_tokens and tokenizer.eos_token_id not in r for r in responses)

    samples = module.credit_round(module.score(games))
    assert len(samples) == sum(len(g.env.turns) for g in games)
    for s in samples:
        assert math.isfinite(s.advantage) and math.isfinite(s.weight) and math.isfinite(s.utility_target)
        assert torch.isfinite(s.old_logprobs).all() and len(s.old_logprobs) == len(s.response_ids) >= 1
    batch = collate(samples, module.pad_id)
    assert batch.targets.numel() == sum(len(r) for r in responses)
    assert torch.equal(batch.input_ids[batch.token_rows, batch.token_cols + 1], batch.targets)

    record = RecordLosses()
    trainer = fit_on(module, samples, callbacks=[record])
    assert trainer.global_step == 1 and len(record.losses) == 1 and math.isfinite(record.losses[0])
    assert torch.isfinite(flat_params(module)).all()
    for key in ("train/pg_loss", "train/entropy", "train/logprob", "train/advantage_mean"):
        assert torch.isfinite(trainer.callback_metrics[key]), key


# ------------------------------------------------------------------------------------ non-finite steps
BAD = 1  # batch index of the poisoned step: the second one


def poisoned(module_class: type[MaroModule], on_nonfinite: str, **loss) -> tuple[MaroModule, list]:
    """A ``module_class`` module with ``loss.on_nonfinite`` set, and a scored round with spread-out advantages:
    the stub accepts whatever the linear agent offers (and is invalid, then defaulted, when there is nothing to
    accept), at prices that differ per game."""
    torch.manual_seed(0)
    module = tiny_module("bazaar", module_class, loss=LossConfig(beta=0.05, on_nonfinite=on_nonfinite, **loss))
    module.configure_model()
    backend = stub("invalid", "bazaar", module.tokenizer)
    games = play(module, "bazaar", backend, opponents={"linear": 1.0}, num_games=8)
    samples = module.credit_round(module.score(games))
    assert len({round(s.advantage, 6) for s in samples}) > 2  # a real policy gradient, not all zeros
    return module, samples


class NaNWeights(MaroModule):
    """The ``token_weights`` hook returns NaN on the second training step: the loss is NaN."""

    calls = 0

    def token_weights(self, batch):  # noqa: ANN001
        weights, normalizer = super().token_weights(batch)
        self.calls += 1
        return (torch.full_like(weights, float("nan")) if self.calls == BAD + 1 else weights), normalizer


class Params(L.Callback):
    """The parameters at the start and the end of every training batch."""

    def __init__(self) -> None:
        self.before: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self.before[batch_idx] = flat_params(pl_module).clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.after[batch_idx] = flat_params(pl_module).clone()


class NaNGradient(Params):
    """A finite loss, but a NaN gradient on one parameter during the second step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if batch_idx == BAD:
            weight = pl_module.policy.get_input_embeddings().weight
            self.handle = weight.register_hook(lambda grad: grad * float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx == BAD:
            self.handle.remove()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


@pytest.mark.parametrize(
    ("module_class", "callback", "quantity"),
    [(NaNWeights, Params, "pg_loss"), (MaroModule, NaNGradient, "grad_norm")],
    ids=["nan-loss", "nan-gradient"],
)
def test_raise_names_the_step_and_leaves_the_weights_alone(module_class, callback, quantity):
    module, samples = poisoned(module_class, "raise")
    params = callback()
    with pytest.raises(FloatingPointError, match=rf"global step {BAD} .*{quantity}=nan"):
        fit_on(module, samples, max_steps=4, callbacks=[params], batch_size=4)
    assert not torch.equal(params.before[0], params.after[0])  # the good step did train
    assert torch.equal(flat_params(module), params.before[BAD])  # no NaN reached the weights
    assert BAD not in params.after


@pytest.mark.parametrize(
    ("module_class", "callback"), [(NaNWeights, Params), (MaroModule, NaNGradient)], ids=["nan-loss", "nan-gradient"]
)
def test_skip_drops_the_bad_update_and_finishes(module_class, callback):
    module, samples = poisoned(module_class, "skip")
    params = callback()
    trainer = fit_on(module, samples, max_steps=4, callbacks=[params], batch_size=4)
    assert trainer.global_step == 4 and sorted(params.after) == [0, 1, 2, 3]  # the skipped step counts as one
    assert torch.equal(params.before[BAD], params.after[BAD])  # the bad step changed nothing
    for step in (0, 2, 3):
        assert not torch.equal(params.before[step], params.after[step]), step  # the others trained
    assert torch.isfinite(flat_params(module)).all()


class NaNFrom(MaroModule):
    """The loss is NaN on every step from the second on."""

    calls = 0

    def token_weights(self, batch):  # noqa: ANN001
        weights, normalizer = super().token_weights(batch)
        self.calls += 1
        return (torch.full_like(weights, float("nan")) if self.calls > BAD else weights), normalizer


def logged(root) -> dict[str, list[float]]:  # noqa: ANN001
    """metrics.csv's per-step values of each train/* key, in step order (rows without it left out)."""
    import csv

    (path,) = root.glob("**/metrics.csv")
    rows = list(csv.DictReader(path.open()))
    return {key: [float(r[key]) for r in rows if r.get(key)] for key in ("train/grad_norm", "train/skipped_steps")}


@pytest.mark.parametrize(
    ("module_class", "callback"), [(NaNWeights, Params), (MaroModule, NaNGradient)], ids=["loss", "gradient"]
)
def test_a_skipped_step_is_counted_and_logs_no_stale_value(tmp_path, module_class, callback):
    from lightning.pytorch.loggers import CSVLogger

    module, samples = poisoned(module_class, "skip")
    dm = data(batch_size=4)
    dm.push(samples)
    logger = CSVLogger(tmp_path)
    trainer = L.Trainer(max_steps=4, callbacks=[callback()], **{**QUIET, "logger": logger, "log_every_n_steps": 1})
    trainer.fit(module, datamodule=dm)
    values = logged(tmp_path)
    assert values["train/skipped_steps"] == [0.0, 1.0, 1.0, 1.0] and module.skipped_steps == 1
    norms = values["train/grad_norm"]
    assert len(norms) == 4 and math.isnan(norms[BAD])  # not the previous step's norm
    assert all(math.isfinite(norms[i]) and norms[i] > 0 for i in (0, 2, 3))


def test_too_many_skipped_steps_stop_the_run():
    module, samples = poisoned(NaNFrom, "skip", skip_window=5, max_skipped_fraction=0.2)
    params = Params()
    message = r"2 of the last 3 optimizer steps were skipped .*global step 2; more than loss.max_skipped_fraction=0.2"
    with pytest.raises(FloatingPointError, match=message):
        fit_on(module, samples, max_steps=20, callbacks=[params], batch_size=4)
    assert sorted(params.after) == [0, 1]  # stopped during the third step, the second skipped one
