"""Small, fast training runs of the real stack: the tiny model, real games, real Lightning."""

from __future__ import annotations

import functools

import lightning as L
import torch

from maro_lightning.callbacks import SimulationCallback
from maro_lightning.data import TrajectoryDataModule
from maro_lightning.evaluation import LadderConfig
from maro_lightning.models import TinyModelConfig
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import SamplingConfig

QUIET = dict(
    accelerator="cpu",
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    limit_val_batches=0,
    num_sanity_val_steps=0,
)
TEACHERS = {"bazaar": "linear", "deal": "greedy", "mafia": "scripted"}


def tiny_module(game: str = "bazaar", module_class: type[MaroModule] = MaroModule, **kwargs) -> MaroModule:
    """A MaroModule on a very small tiny model whose vocabulary comes from ``game``."""
    kwargs.setdefault("loss", LossConfig(beta=0.05))
    kwargs.setdefault("optimizer", functools.partial(torch.optim.AdamW, lr=1e-2))  # picklable: ddp_spawn sends it
    return module_class(
        tiny=TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=(game,)),
        sampling=SamplingConfig(max_new_tokens=6, max_prompt_tokens=192, keep_head_tokens=64),
        **kwargs,
    )


def simulation(game: str = "bazaar", games_per_round: int = 4, **kwargs) -> SimulationCallback:
    """A few games a round against a scripted agent and a frozen copy."""
    opponents = {"frozen": 0.5, TEACHERS[game]: 0.5}
    spec = GameSpec(game, options={"obs_format": "compact"}, opponents=opponents, teacher=TEACHERS[game])
    return SimulationCallback(games=[spec], games_per_round=games_per_round, **kwargs)


def data(game: str = "bazaar", **kwargs) -> TrajectoryDataModule:
    kwargs.setdefault("batch_size", 8)
    return TrajectoryDataModule(evaluation=LadderConfig(games=(game,), episodes=2), **kwargs)


def flat_params(module: MaroModule) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class RecordLosses(L.Callback):
    """Keeps every step's loss and the parameters when training starts."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.start: torch.Tensor | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: MaroModule) -> None:
        self.start = flat_params(pl_module).clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.losses.append(float(outputs["loss"]))
