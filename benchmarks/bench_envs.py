"""Env overhead: steps per second of random play, per game, with and without rendering prompts.

A rollout renders the acting player's observation before every step (the model's prompt), so the
"with prompt" column is the overhead that sits next to generation. Reports; asserts nothing.

    python benchmarks/bench_envs.py [--games bazaar deal mafia] [--episodes 2000] [--format full]
"""

from __future__ import annotations

import argparse
import platform
import time

from maro_lightning import envs


def measure(game: str, episodes: int, obs_format: str, render: bool) -> tuple[float, float]:
    """Steps per second and episodes per second of ``episodes`` random games."""
    env = envs.make(game, obs_format=obs_format)
    env.reset(0)
    agents = {player: envs.agent("random", game=game) for player in env.roles}
    steps = 0
    start = time.perf_counter()
    for seed in range(episodes):
        envs.play_episode(env, agents, seed, before_step=env.observation if render else None)
        steps += len(env.turns)
    elapsed = time.perf_counter() - start
    return steps / elapsed, episodes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", nargs="+", default=envs.names())
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--format", dest="obs_format", choices=["full", "compact"], default="full")
    args = parser.parse_args()
    print(f"# env steps/s, random play, {args.episodes} episodes, {args.obs_format} prompts")
    print(f"# {platform.machine()}, python {platform.python_version()}")
    print("| game | steps/s (agents only) | steps/s (with prompt) | episodes/s (with prompt) |")
    print("|---|---:|---:|---:|")
    for game in args.games:
        bare, _ = measure(game, args.episodes, args.obs_format, render=False)
        with_prompt, eps = measure(game, args.episodes, args.obs_format, render=True)
        print(f"| {game} | {bare:,.0f} | {with_prompt:,.0f} | {eps:,.0f} |")


if __name__ == "__main__":
    main()
