"""A trained policy in the seats of ``maro play``: it reads its player's observation text, as in training."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from maro_lightning import checkpoints
from maro_lightning import envs
from maro_lightning.module import MaroModule
from maro_lightning.rollout import encode_prompt
from maro_lightning.rollout import truncate_prompt


class PolicyPlayer:
    """The policy of a checkpoint, sampling with its training config (or another temperature)."""

    def __init__(
        self, module: MaroModule, temperature: float | None = None, game_options: dict[str, dict] | None = None
    ) -> None:
        self.module = module.eval()
        self.game_options = game_options or {}  # game -> the env options of training (compact prompts, ...)
        sampling = module.sampling
        if temperature is not None:
            sampling = dataclasses.replace(sampling, temperature=temperature)
        self.sampling, self.backend = sampling, module.policy_backend()

    @classmethod
    def from_checkpoint(cls, path: str, temperature: float | None = None, seed: int = 0) -> PolicyPlayer:
        torch.manual_seed(seed)  # the same seed replays the same sampled game
        module = MaroModule.load_from_checkpoint(path, map_location="cpu")
        return cls(module, temperature, trained_game_options(path))

    def seat(self, env: envs.SocialEnv, player: int) -> PolicySeat:
        """An agent for ``play_episode`` that plays ``player`` of ``env``."""
        return PolicySeat(self, env, player)

    def reply(self, observation: str) -> str:
        """The policy's text for one observation (prompt truncated as in training)."""
        tokenizer = self.module.tokenizer
        ids = truncate_prompt(encode_prompt(tokenizer, observation), self.sampling)
        (completion,) = self.backend.generate([ids], self.sampling)
        return tokenizer.decode(completion, skip_special_tokens=True)


def trained_game_options(path: str) -> dict[str, dict[str, Any]]:
    """Game -> the env options the checkpoint's policy was trained with (from the SimulationCallback's state)."""
    return checkpoints.trained_games(checkpoints.load(path))


class PolicySeat(envs.ScriptedAgent):
    """Adapts :class:`PolicyPlayer` to the agent interface: the model reads the observation, not the view."""

    def __init__(self, player: PolicyPlayer, env: envs.SocialEnv, seat: int) -> None:
        super().__init__()
        self.policy, self.env, self.seat = player, env, seat

    def act(self, view: dict[str, Any]) -> str:
        return self.policy.reply(self.env.observation(self.seat))

    def __repr__(self) -> str:
        return "PolicySeat()"
