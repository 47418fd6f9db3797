"""Rollout throughput on the tiny model: one game at a time vs many games batched (target: >= 4×).

Both modes play the same number of games (the policy in one seat, a scripted opponent in the other);
"sequential" calls the engine once per game, "batched" once for all, so every sweep is one ``generate``
over all due policy seats. Reports; asserts nothing.

    python benchmarks/bench_rollout.py [--game bazaar] [--games 32] [--max-new-tokens 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig

OPPONENT = {"bazaar": "linear", "deal": "greedy", "mafia": "scripted"}


def run(engine: RolloutEngine, backend: HFGenerate, games: int, per_call: int, seed: int) -> tuple[float, int]:
    """Seconds and generated tokens to play ``games`` games, ``per_call`` at a time."""
    start, tokens = time.perf_counter(), 0
    for offset in range(0, games, per_call):
        engine.play(per_call, seed=seed + offset, policy=backend)
        tokens += engine.stats.generated_tokens
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="bazaar", choices=sorted(OPPONENT))
    parser.add_argument("--games", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TinyModelConfig())
    spec = GameSpec(args.game, options={"obs_format": "compact"}, opponents={OPPONENT[args.game]: 1.0})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=args.max_new_tokens))
    backend = HFGenerate(model, tokenizer)
    print(
        f"# rollout, {args.game}, tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), "
        f"{args.games} games, max_new_tokens={args.max_new_tokens}, median of {args.repeats}"
    )
    print(f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| mode | games per call | episodes/s | generated tokens/s |")
    print("|---|---:|---:|---:|")
    rates = {}
    for mode, per_call in (("sequential", 1), ("batched", args.games)):
        runs = [run(engine, backend, args.games, per_call, seed=1000 * r) for r in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        tokens = statistics.median(t / s for s, t in runs)
        rates[mode] = args.games / seconds
        print(f"| {mode} | {per_call} | {rates[mode]:.1f} | {tokens:,.0f} |")
    print(f"\nbatched / sequential episodes/s: {rates['batched'] / rates['sequential']:.1f}×")


if __name__ == "__main__":
    main()
