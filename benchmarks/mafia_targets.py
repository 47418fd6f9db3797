"""Does a Mafia policy read its legal targets from the prompt? For every target choice of real games (the scripted
agent in every seat, the game options the checkpoint was trained with), the probability the policy puts on a legal
target at the target's position, given the prompt and the answer's prefix ``[Tag: Player``, against chance (the
share of the players that are legal), and how much that distribution changes from prompt to prompt.

    .venv/bin/python benchmarks/mafia_targets.py CKPT [CKPT ...] --games 40

A policy that reads the list puts most of its mass on legal targets; one that has learned only which numbers are
common puts about the chance share there, whatever the prompt (``spread`` near 0: the mean total-variation distance
between two decisions' target distributions). Prints one row per checkpoint and kind of decision.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict
from dataclasses import dataclass

import torch

from maro_lightning import envs
from maro_lightning.envs.episode import play_episode
from maro_lightning.play import PolicyPlayer
from maro_lightning.rollout.engine import encode_prompt


@dataclass(frozen=True)
class Decision:
    kind: str  # night vote, protect, investigate or day vote
    prompt: str
    tag: str
    legal: tuple[int, ...]
    players: int


def decisions(options: dict, games: int, seed: int) -> list[Decision]:
    """The target choices of ``games`` scripted games, with each chooser's prompt as the policy would see it."""
    found: list[Decision] = []
    for game in range(games):
        env = envs.make("mafia", **options)
        agents = {player: envs.agent("scripted", game="mafia") for player in range(env.n_players)}

        def record(player: int, env: envs.SocialEnv = env) -> None:
            tag = env.expected_tag(player)
            if tag is not None:
                kind = "day vote" if env.stage == "day-vote" else f"night {tag}"
                legal = tuple(env.legal_targets(player))
                found.append(Decision(kind, env.observation(player), tag, legal, env.n_players))

        play_episode(env, agents, seed + game, before_step=record)
    return found


@torch.no_grad()
def target_distribution(player: PolicyPlayer, decision: Decision) -> torch.Tensor:
    """``[players]``: the policy's next-token probabilities of ``0``..``n-1`` after ``[Tag: Player``, renormalised."""
    tokenizer = player.module.tokenizer
    prefix = tokenizer(f"[{decision.tag.capitalize()}: Player", add_special_tokens=False)["input_ids"]
    ids = encode_prompt(tokenizer, decision.prompt) + prefix
    logits = player.module.policy(torch.tensor([ids])).logits[0, -1]
    digits = [tokenizer(str(k), add_special_tokens=False)["input_ids"][-1] for k in range(decision.players)]
    return logits[digits].softmax(-1)


def report(path: str, found: list[Decision]) -> list[str]:
    player = PolicyPlayer.from_checkpoint(path)
    by_kind: dict[str, list[tuple[Decision, torch.Tensor]]] = defaultdict(list)
    for decision in found:
        by_kind[decision.kind].append((decision, target_distribution(player, decision)))
    rows = []
    for kind, items in sorted(by_kind.items()):
        legal_mass = sum(float(p[list(d.legal)].sum()) for d, p in items) / len(items)
        chance = sum(len(d.legal) / d.players for d, _ in items) / len(items)
        pairs = list(itertools.islice(itertools.combinations([p for _, p in items], 2), 2000))
        spread = sum(0.5 * float((a - b).abs().sum()) for a, b in pairs) / max(len(pairs), 1)
        rows.append(f"{path[-60:]:<60} {kind:<18} {len(items):>5} {legal_mass:>10.3f} {chance:>7.3f} {spread:>7.3f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of `maro fit` runs on Mafia")
    parser.add_argument("--games", type=int, default=40, help="scripted games whose decisions are read (40)")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first game (10000)")
    args = parser.parse_args(argv)
    print(f"{'checkpoint':<60} {'decision':<18} {'n':>5} {'P(legal)':>10} {'chance':>7} {'spread':>7}")
    for path in args.checkpoints:
        options = PolicyPlayer.from_checkpoint(path).game_options.get("mafia", {})
        for row in report(path, decisions(options, args.games, args.seed)):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
