"""Random streams: one root seed (``seed_everything``) for every component whose own seed is left unset."""

from __future__ import annotations

import os

import torch

GLOBAL_SEED_VARIABLE = "PL_GLOBAL_SEED"  # where Lightning's seed_everything (and LightningCLI's) records its seed


def root_seed(explicit: int | None) -> int:
    """``explicit`` when set, else the seed given to ``seed_everything`` (LightningCLI's ``seed_everything:``),
    else 0. So ``--seed_everything N`` moves every stream of a run (model init, rollout games, batch order)."""
    if explicit is not None:
        return explicit
    return int(os.environ.get(GLOBAL_SEED_VARIABLE, 0))


class seeded:  # noqa: N801 - used like torch.no_grad
    """Run a block with torch's RNG seeded to ``seed`` and restore the outer stream after: rollouts and
    evaluation sample from streams of their own, so they are resumable and independent per rank."""

    def __init__(self, seed: int, device: torch.device) -> None:
        devices = [device] if device.type == "cuda" else []
        self.fork = torch.random.fork_rng(devices=devices)
        self.seed = seed

    def __enter__(self) -> None:
        self.fork.__enter__()
        torch.manual_seed(self.seed % 2**63)

    def __exit__(self, *exc: object) -> None:
        self.fork.__exit__(*exc)
