"""A short real training run of the tiny model on one device: does the whole loop work there, and how fast?

Plays rounds of Bazaar (generation, scoring, credit), trains with the fused loss (Triton on CUDA), and prints one
markdown table: steps, rounds, wall time, rollout tokens/s, last losses. Needs torch, lightning and transformers
(not jsonargparse or datasets, which the GPU image lacks). Reports; asserts only that the losses are finite.

    python benchmarks/train_smoke.py --device cuda --steps 30
"""

from __future__ import annotations

import argparse
import math
import time

import lightning as L
import torch

from maro_lightning.callbacks import SimulationCallback
from maro_lightning.data import TrajectoryDataModule
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import SamplingConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--games", type=int, default=128, help="games per round")
    args = parser.parse_args()
    L.seed_everything(0, verbose=False)
    game = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"linear": 1.0}, teacher="linear")
    simulation = SimulationCallback([game], games_per_round=args.games, imitation_rounds=2, rl_lr=1e-4)
    module = MaroModule(loss=LossConfig(beta=0.05), sampling=SamplingConfig(max_new_tokens=16))
    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[simulation],
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=TrajectoryDataModule(batch_size=128))
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\n{device}, torch {torch.__version__}, {args.games} games a round, 2 cloning rounds then MARO\n")
    print("| steps | rounds | seconds | rollout tokens/s | train/loss | train/kl | rollout/invalid_rate |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {trainer.global_step} | {simulation.rounds} | {seconds:.1f} "
        f"| {metrics.get('rollout/generated_tokens_per_second', 0):,.0f} | {metrics['train/loss']:.4f} "
        f"| {metrics.get('train/kl', 0):.4f} | {metrics.get('rollout/invalid_rate', 0):.3f} |"
    )
    if not math.isfinite(metrics["train/loss"]):
        raise SystemExit("non-finite loss")


if __name__ == "__main__":
    main()
