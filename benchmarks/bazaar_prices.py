"""Does a Bazaar policy read its prices from the prompt? At every decision of real games (the teacher in both seats,
the game options the checkpoint was trained with), the policy answers the teacher's prompt; its answer is applied
to a copy of the game, so it is parsed exactly as in play, and compared with what the teacher did there.

    .venv/bin/python benchmarks/bazaar_prices.py CKPT [CKPT ...] --games 100 --teacher linear

Per role: how often the policy takes the teacher's kind of action (offer, accept, walk; invalid answers count as
disagreement), how often it answers with talk alone (no action: its standing offer stays) or walks, how often it
accepts where the teacher offered (gives ground) and offers where the teacher accepted;
where both offer, the share of the policy's offers within $1 of the teacher's, and the rank correlation of the two
offers within each message index (pooled over the indices; ranks, because one wild offer would decide a Pearson
correlation). A time-dependent teacher's offer at a given message index is a function of the player's private
reservation (``linear``: ``A + (R − A)·t/(T−1)``, docs/games.md), so a policy that reads its reservation correlates
with it, and one that has learned only the usual price at each point of the game does not (near 0). ``accepts below
reservation`` is the share of the policy's accepts at a price outside its own reservation (a negative share). Prints
one row per checkpoint and role.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections import defaultdict
from dataclasses import dataclass

from maro_lightning import envs
from maro_lightning.play import PolicyPlayer


@dataclass(frozen=True)
class Decision:
    role: str
    message: int  # the index of the message being written
    env: envs.SocialEnv  # a copy of the game just before the teacher acted
    player: int
    teacher_kind: str  # offer, accept, walk or talk
    teacher_offer: int | None


@dataclass(frozen=True)
class Answer:
    kind: str  # offer, accept, walk, talk, or invalid
    offer: int | None
    share: float | None  # of an accept: the player's share at the accepted price


def decisions(options: dict, teacher: str, games: int, seed: int) -> list[Decision]:
    """Every decision of ``games`` games of ``teacher`` against itself, with a copy of the game before it."""
    found: list[Decision] = []
    for game in range(games):
        env = envs.make("bazaar", **options)
        agents = {player: envs.agent(teacher, game="bazaar") for player in env.roles}
        before: list[tuple[int, envs.SocialEnv]] = []

        def record(turn: envs.Turn, before: list = before) -> None:
            player, state = before.pop()
            kind, offer = turn.info.get("kind", "invalid"), turn.info.get("offer")
            found.append(Decision(turn.role, turn.info.get("message", -1), state, player, kind, offer))

        def snapshot(player: int, env: envs.SocialEnv = env, before: list = before) -> None:
            before.append((player, copy.deepcopy(env)))

        envs.play_episode(env, agents, seed + game, before_step=snapshot, on_turn=record)
    return found


def answer(player: PolicyPlayer, decision: Decision) -> Answer:
    """The policy's answer to the decision's prompt, applied to a copy of the game."""
    env = copy.deepcopy(decision.env)
    env.step(decision.player, player.reply(env.observation(decision.player)))
    turn = env.turns[-1]
    if not turn.valid:
        return Answer("invalid", None, None)
    kind = turn.info["kind"]
    return Answer(kind, turn.info.get("offer"), turn.info["standing_share"] if kind == "accept" else None)


def within_message_rank_correlation(pairs: list[tuple[int, float, float]]) -> float:
    """Spearman's correlation of (x, y) within each message index, pooled: ranks (ties averaged) minus their mean in
    every index's group, then one Pearson correlation of all of them (nan if nothing varies within a group)."""
    groups: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for message, x, y in pairs:
        groups[message].append((x, y))
    centred = []
    for values in groups.values():
        ranks_x, ranks_y = _centred_ranks([v[0] for v in values]), _centred_ranks([v[1] for v in values])
        centred += zip(ranks_x, ranks_y, strict=True)
    sxy = sum(x * y for x, y in centred)
    sxx, syy = sum(x * x for x, _ in centred), sum(y * y for _, y in centred)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else float("nan")


def _centred_ranks(values: list[float]) -> list[float]:
    """Each value's rank among ``values`` (1-based, ties get their mean rank) minus the mean rank."""
    order = sorted(values)
    first = {v: order.index(v) for v in set(values)}
    mean_rank = (len(values) + 1) / 2
    return [first[v] + (order.count(v) + 1) / 2 - mean_rank for v in values]


def summary(found: list[Decision], answers: list[Answer]) -> dict[str, int | float]:
    """The row of one role: agreement with the teacher, and how the two offers relate."""
    pairs = list(zip(found, answers, strict=True))
    both_offer = [(d, a) for d, a in pairs if d.teacher_kind == "offer" and a.kind == "offer"]
    teacher_offers = [a for d, a in pairs if d.teacher_kind == "offer"]
    teacher_accepts = [a for d, a in pairs if d.teacher_kind == "accept"]
    accepts = [a for a in answers if a.kind == "accept"]
    rate = lambda hits, items: sum(hits) / len(items) if items else float("nan")  # noqa: E731
    return {
        "n": len(pairs),
        "same kind": rate([d.teacher_kind == a.kind for d, a in pairs], pairs),
        "invalid": rate([a.kind == "invalid" for a in answers], answers),
        "talk only": rate([a.kind == "talk" for a in answers], answers),
        "walks": rate([a.kind == "walk" for a in answers], answers),
        "accepts for an offer": rate([a.kind == "accept" for a in teacher_offers], teacher_offers),
        "offers for an accept": rate([a.kind == "offer" for a in teacher_accepts], teacher_accepts),
        "offers within $1": rate([abs(a.offer - d.teacher_offer) <= 1 for d, a in both_offer], both_offer),
        "offer rank corr": within_message_rank_correlation(
            [(d.message, d.teacher_offer, a.offer) for d, a in both_offer]
        ),
        "accepts below reservation": rate([a.share < 0 for a in accepts], accepts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of `maro fit` runs on Bazaar")
    parser.add_argument("--teacher", default="linear", help="the scripted agent in both seats (linear)")
    parser.add_argument("--games", type=int, default=100, help="games whose decisions are read (100)")
    parser.add_argument("--seed", type=int, default=10_000, help="seed of the first game (10000)")
    args = parser.parse_args(argv)
    columns = list(summary([], []))
    print(f"{'checkpoint':<48} {'role':<7} " + " ".join(f"{c:>14}" for c in columns))
    for path in args.checkpoints:
        player = PolicyPlayer.from_checkpoint(path)
        found = decisions(player.game_options.get("bazaar", {}), args.teacher, args.games, args.seed)
        by_role: dict[str, list[Decision]] = defaultdict(list)
        for decision in found:
            by_role[decision.role].append(decision)
        for role, items in sorted(by_role.items()):
            row = summary(items, [answer(player, d) for d in items])
            cells = (f"{value:>14d}" if isinstance(value, int) else f"{value:>14.3f}" for value in row.values())
            print(f"{path[-48:]:<48} {role:<7} " + " ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
