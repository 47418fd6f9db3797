"""Rollouts (docs/design.md#rollouts): seats, the batched multi-game engine and generation backends."""

from maro_lightning.rollout.engine import FROZEN
from maro_lightning.rollout.engine import HELD_OUT_SEEDS
from maro_lightning.rollout.engine import POLICY
from maro_lightning.rollout.engine import GameSpec
from maro_lightning.rollout.engine import PlayedGame
from maro_lightning.rollout.engine import RolloutEngine
from maro_lightning.rollout.engine import RolloutStats
from maro_lightning.rollout.engine import encode_prompt
from maro_lightning.rollout.engine import game_seeds
from maro_lightning.rollout.generation import GenerationBackend
from maro_lightning.rollout.generation import HFGenerate
from maro_lightning.rollout.generation import SamplingConfig
from maro_lightning.rollout.generation import left_pad
from maro_lightning.rollout.generation import truncate_prompt

__all__ = [
    "FROZEN",
    "HELD_OUT_SEEDS",
    "POLICY",
    "GameSpec",
    "GenerationBackend",
    "HFGenerate",
    "PlayedGame",
    "RolloutEngine",
    "RolloutStats",
    "SamplingConfig",
    "encode_prompt",
    "game_seeds",
    "left_pad",
    "truncate_prompt",
]
