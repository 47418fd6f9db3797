"""Deal: two players split books, hats and balls that they value differently (docs/games.md#deal).

After Deal or No Deal (Lewis et al. 2017, "Deal or No Deal? End-to-End Learning for Negotiation Dialogues",
EMNLP). Each game draws item counts and two private value vectors worth 10 points each; the players take
turns writing messages (player 0 first, role ``"first"``; player 1 role ``"second"``) and may propose a split,
accept the other's latest proposal, or walk away. A proposal names what the proposer KEEPS.

The module also holds the exact checks the metrics use (every allocation is enumerated: at most 4·3·3 = 36
of them when the counts add up to at most 7) and the scripted agents ``random``, ``greedy`` and ``hardliner``.

Compact observation (one line, for small models trained from scratch)::

    D1 c=2,1,3 v=1,4,1 t=3 | P:1,0,2 P:1,1,0 - >

``D1`` (the first mover) or ``D2`` (the second), the item counts and the reader's own values in the order
book, hat, ball, the number of messages so far, then one token per message in order: ``P:a,b,c`` (a proposal;
the speaker keeps a books, b hats, c balls), ``A`` (accept), ``W`` (walk) or ``-`` (talk only); ``>`` marks that
it is the reader's turn. Messages alternate, so the first token is always the first mover's.
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import Action
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import truncate
from maro_lightning.envs.registry import register_agent
from maro_lightning.envs.registry import register_game

ITEMS = ("book", "hat", "ball")
ROLES = {0: "first", 1: "second"}
TOTAL_VALUE = 10  # every player's items together are worth this many points
TOTAL_ITEMS = (5, 7)  # the item counts add up to a number in this range
MAX_COUNT = TOTAL_ITEMS[1] - len(ITEMS) + 1  # each count is >= 1, so none can exceed this
_NAMES = {**{item: k for k, item in enumerate(ITEMS)}, **{item + "s": k for k, item in enumerate(ITEMS)}}
# "book = 2", "Hats:1": a word, "=" or ":", an integer (signed, so that "-1" reads as out of range, not garbage).
_PAIR = re.compile(r"([^\W\d_]+)\s*[=:]\s*(-?\d+)", re.ASCII | re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,;&.]|\band\b", re.IGNORECASE)
_MAX_PROPOSAL_CHARS = 120  # longer arguments are rejected before the regex: no scan of 10 kB of noise
_MARKS = {"accept": "A", "walk": "W", "talk": "-"}

Alloc = tuple[int, ...]  # items one player gets, per type in ITEMS order


# ------------------------------------------------------------------------------------------- exact checks
def allocations(counts: Alloc) -> list[Alloc]:
    """Every way to give a player ``0..c_k`` items of each type, in a fixed (lexicographic) order."""
    return list(itertools.product(*(range(c + 1) for c in counts)))


def points(bundle: Alloc, values: Alloc) -> int:
    """What ``bundle`` is worth to a player with ``values``: ``Σ_k q_k·v_k``."""
    return sum(q * v for q, v in zip(bundle, values, strict=True))


def rest(counts: Alloc, keep: Alloc) -> Alloc:
    """The items the other player gets when one keeps ``keep``."""
    return tuple(c - q for c, q in zip(counts, keep, strict=True))


def _both(keep: Alloc, counts: Alloc, values_a: Alloc, values_b: Alloc) -> tuple[int, int]:
    """Points of (a, b) when a keeps ``keep`` and b gets the rest."""
    return points(keep, values_a), points(rest(counts, keep), values_b)


def is_pareto_optimal(keep: Alloc, counts: Alloc, values_a: Alloc, values_b: Alloc) -> bool:
    """Is the split where a keeps ``keep`` (and b the rest) Pareto-optimal?

    It is unless another allocation gives both players at least as much and one of them more.
    """
    a, b = _both(keep, counts, values_a, values_b)
    for other in allocations(counts):
        x, y = _both(other, counts, values_a, values_b)
        if x >= a and y >= b and (x, y) != (a, b):
            return False
    return True


def max_joint_welfare(counts: Alloc, values_a: Alloc, values_b: Alloc) -> int:
    """The largest sum of both players' points over all allocations."""
    return max(sum(_both(keep, counts, values_a, values_b)) for keep in allocations(counts))


def nash_allocation(counts: Alloc, values_a: Alloc, values_b: Alloc) -> Alloc:
    """The Nash bargaining split (disagreement point 0): what a keeps to maximise the product of points.

    Ties go to the higher joint welfare, then to the first allocation in :func:`allocations` order.
    """

    def key(keep: Alloc) -> tuple[int, int]:
        a, b = _both(keep, counts, values_a, values_b)
        return a * b, a + b

    return max(allocations(counts), key=key)  # max keeps the first of equal keys


# ------------------------------------------------------------------------------------------------ set-up
def value_vectors(counts: Alloc) -> list[Alloc]:
    """Every integer value vector ``v >= 0`` with ``Σ_k c_k·v_k = 10``."""
    ranges = (range(TOTAL_VALUE // c + 1) for c in counts)
    return [v for v in itertools.product(*ranges) if points(counts, v) == TOTAL_VALUE]


def _valid_pair(values_a: Alloc, values_b: Alloc) -> bool:
    """Every type is valued by someone and at least one by both (Lewis et al. 2017): something to trade."""
    pairs = list(zip(values_a, values_b, strict=True))
    return all(a or b for a, b in pairs) and any(a and b for a, b in pairs)


def sample_scenario(rng: random.Random) -> tuple[Alloc, Alloc, Alloc]:
    """Counts and both players' values, by rejection: uniform over valid counts, then over valid value pairs."""
    while True:
        counts = tuple(rng.randint(1, MAX_COUNT) for _ in ITEMS)
        if TOTAL_ITEMS[0] <= sum(counts) <= TOTAL_ITEMS[1]:
            break
    options = value_vectors(counts)  # for every valid counts a valid pair exists (tests check all 24): this ends
    while True:
        values_a, values_b = rng.choice(options), rng.choice(options)
        if _valid_pair(values_a, values_b):
            return counts, values_a, values_b


# ------------------------------------------------------------------------------------------------ parsing
def parse_proposal(arg: str | None, counts: Alloc) -> Alloc:
    """Read ``book=1, hats: 2`` into what the proposer keeps; a type not named is 0.

    Order-free, ``=`` or ``:``, singular or plural, any case; unknown or repeated items, counts outside
    ``0..c_k`` and anything else in the argument make it invalid.
    """
    text = (arg or "").strip()
    if not text:
        raise InvalidAction("a proposal names what you keep, like [Propose: book=1, hat=0, ball=2]")
    if len(text) > _MAX_PROPOSAL_CHARS:
        raise InvalidAction(f"the proposal is too long ({len(text)} characters): write book=a, hat=b, ball=c")
    pairs = _PAIR.findall(text)
    if not pairs or _SEPARATORS.sub("", _PAIR.sub("", text)):
        raise InvalidAction(f"cannot read the proposal {truncate(text, 40)!r}: write [Propose: book=a, hat=b, ball=c]")
    keep = [0] * len(ITEMS)
    named: set[int] = set()
    for name, number in pairs:
        k = _item_index(name, named)
        keep[k] = _count(number, ITEMS[k], counts[k])
        named.add(k)
    return tuple(keep)


def _item_index(name: str, named: set[int]) -> int:
    k = _NAMES.get(name.lower())
    if k is None:
        raise InvalidAction(f"unknown item {truncate(name, 20)!r}: the items are {', '.join(ITEMS)}")
    if k in named:
        raise InvalidAction(f"{ITEMS[k]} is named twice in the proposal")
    return k


def _count(number: str, item: str, available: int) -> int:
    # A long digit string is out of range whatever it says; checking its length first keeps int() cheap.
    value = int(number) if len(number) <= 4 else available + 1
    if not 0 <= value <= available:
        raise InvalidAction(f"you can keep 0 to {available} of {item}s, got {truncate(number, 12)}")
    return value


def proposal_text(keep: Alloc) -> str:
    """The canonical tag of a proposal: ``[Propose: book=1, hat=0, ball=2]``."""
    return "[Propose: " + ", ".join(f"{item}={q}" for item, q in zip(ITEMS, keep, strict=True)) + "]"


# ------------------------------------------------------------------------------------------------- the game
@register_game
class Deal(SocialEnv):
    """Two-player multi-issue bargaining over books, hats and balls with private values (Lewis et al. 2017).

    Args:
        max_messages: T, messages in total (both players, player 0 first) before the game ends with no deal.
            With T even the second mover writes the last message, so the first mover makes the last
            proposal that can still be accepted.
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "deal"
    tags = ("propose", "accept", "walk")
    agreement_metric = "agreement"

    def __init__(self, *, max_messages: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.max_messages = max_messages

    # ------------------------------------------------------------------------------------------ rules
    def _setup(self, rng: random.Random) -> None:
        self.counts, values_a, values_b = sample_scenario(rng)
        self.values = {0: values_a, 1: values_b}
        self.proposals: dict[int, Alloc | None] = {0: None, 1: None}  # standing: what each proposer keeps
        self.history: list[dict[str, Any]] = []  # accepted messages: speaker, public talk, kind, proposal
        self.split: dict[int, Alloc] | None = None  # what each player gets, once a proposal is accepted
        self.walked = False

    @property
    def roles(self) -> dict[int, str]:
        return ROLES

    def _finished(self) -> bool:
        return self.split is not None or self.walked or len(self.history) >= self.max_messages

    def _to_act(self) -> list[int]:
        return [len(self.history) % 2]

    def _phase(self) -> str:
        return "negotiate"

    def _parse(self, player: int, tag_name: str | None, arg: str | None) -> Action:
        if tag_name == "propose":
            return Action("propose", parse_proposal(arg, self.counts))
        if tag_name == "accept" and self.proposals[1 - player] is None:
            raise InvalidAction("there is no proposal from the other player to accept")
        return Action(tag_name or "talk")

    def _apply(self, player: int, action: Action, talk: str) -> dict[str, Any]:
        info = self._features(player, action)
        if action.kind == "propose":
            self.proposals[player] = action.value
        elif action.kind == "accept":
            keep = self.proposals[1 - player]
            self.split = {1 - player: keep, player: rest(self.counts, keep)}
        elif action.kind == "walk":
            self.walked = True
        self.history.append({"speaker": player, "talk": talk, "kind": action.kind, "keep": action.value})
        return info

    def _features(self, player: int, action: Action) -> dict[str, Any]:
        """Per-turn credit features (``bundle``: what the speaker keeps or, on accept, gets).

        ``value_partner`` uses the partner's private values: it stays in the env's logs, never in an observation.
        """
        standing = self.proposals[1 - player]
        info: dict[str, Any] = {"kind": action.kind, "message": len(self.history)}
        info["standing_value"] = None if standing is None else self._worth(player, rest(self.counts, standing))
        if action.kind == "propose":
            info.update(self._split_features(player, action.value))
            previous = self.proposals[player]
            # Positive = gave ground: the points the speaker no longer asks for, relative to its last proposal.
            info["concession"] = None if previous is None else self._worth(player, previous) - info["value_self"]
        elif action.kind == "accept":
            info.update(self._split_features(player, rest(self.counts, standing)))
        return info

    def _split_features(self, player: int, bundle: Alloc) -> dict[str, Any]:
        other = 1 - player
        return {
            "bundle": bundle,
            "value_self": self._worth(player, bundle),
            "value_partner": self._worth(other, rest(self.counts, bundle)),
            "pareto": is_pareto_optimal(bundle, self.counts, self.values[player], self.values[other]),
        }

    def _worth(self, player: int, bundle: Alloc) -> int:
        return points(bundle, self.values[player])

    def _default_action(self, player: int) -> Action:
        return Action("talk")

    def _render_action(self, action: Action) -> str:
        return _action_text(action.kind, action.value)

    # -------------------------------------------------------------------------------------- outcome
    def final_points(self) -> dict[int, int]:
        """Each player's points: the value of what it got on a deal, 0 without one."""
        if self.split is None:
            return {p: 0 for p in ROLES}
        return {p: self._worth(p, self.split[p]) for p in ROLES}

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        got = self.final_points()
        rewards = {p: got[p] / TOTAL_VALUE for p in ROLES}
        success = {p: self.split is not None and got[p] >= got[1 - p] for p in ROLES}
        return rewards, success

    def _metrics(self) -> dict[str, float]:
        got = self.final_points()
        metrics = {
            "agreement": float(self.split is not None),
            "walked": float(self.walked),
            "messages": float(len(self.history)),
            **{f"points_{ROLES[p]}": float(got[p]) for p in ROLES},
            "points_mean": (got[0] + got[1]) / 2,
            "joint_welfare": float(got[0] + got[1]),
        }
        if self.split is not None:  # rates over deals only, like Lewis et al.'s Pareto rate
            best = max_joint_welfare(self.counts, self.values[0], self.values[1])
            metrics["pareto"] = float(is_pareto_optimal(self.split[0], self.counts, self.values[0], self.values[1]))
            metrics["welfare_ratio"] = (got[0] + got[1]) / best
            metrics["points_agreed"] = (got[0] + got[1]) / 2
        return metrics

    # ------------------------------------------------------------------------------- what a player sees
    def view(self, player: int) -> dict[str, Any]:
        self._check_player(player)
        return {
            "game": self.name,
            "player": player,
            "role": ROLES[player],
            "counts": self.counts,
            "values": self.values[player],
            "max_messages": self.max_messages,
            "history": [dict(m) for m in self.history],
            "my_proposal": self.proposals[player],
            "their_proposal": self.proposals[1 - player],
            "my_turn": player in self.to_act(),
            "done": self.done,
        }

    def _render_compact(self, view: dict[str, Any]) -> str:
        marks = [f"P:{_csv(m['keep'])}" if m["kind"] == "propose" else _MARKS[m["kind"]] for m in view["history"]]
        role = 1 if view["role"] == "first" else 2
        head = f"D{role} c={_csv(view['counts'])} v={_csv(view['values'])} t={len(view['history'])}"
        return " ".join([head, "|", *marks, *([">"] if view["my_turn"] else [])])

    def _render_full(self, view: dict[str, Any]) -> str:
        return "\n\n".join([_rules(view), _private(view), _transcript(view), _turn(view)])


# ------------------------------------------------------------------------------------- prompt sections
def values_phrase(values: Alloc) -> str:
    """How the full observation states a player's values: ``a book is worth 1 point, a hat 4 points, ...``."""
    others = ", ".join(f"a {item} {_points(v)}" for item, v in zip(ITEMS[1:], values[1:], strict=True))
    return f"a {ITEMS[0]} is worth {_points(values[0])}, {others}"


def _rules(view: dict[str, Any]) -> str:
    return (
        'You are playing Deal, a two-player negotiation game (after Lewis et al. 2017, "Deal or No Deal?").\n'
        f"On the table: {_items(view['counts'])}. Every item goes to one of the two players. Each player has "
        f"private values for the items; all items together are worth {TOTAL_VALUE} points to each player, but the "
        "two players may value the same item very differently.\n"
        "The players take turns writing messages, the first player first; at most "
        f"{view['max_messages']} messages in total. A message may contain talk and at most one action in square "
        "brackets:\n"
        "  [Propose: book=a, hat=b, ball=c]  propose a split: a, b and c are the books, hats and balls YOU keep; "
        "the other player gets the rest. It replaces your previous proposal\n"
        "  [Accept]  accept the other player's latest proposal: the game ends with that split\n"
        "  [Walk]    leave: the game ends with no deal\n"
        "If the message limit is reached without an accepted proposal, there is no deal. On a deal each player "
        f"scores the points its items are worth to it, divided by {TOTAL_VALUE}; with no deal both score 0. "
        "Text inside <think>...</think> is private and never shown."
    )


def _private(view: dict[str, Any]) -> str:
    return (
        f"You are Player {view['player']}, the {view['role']} to write. Your private values: "
        f"{values_phrase(view['values'])}. The other player's values are unknown to you."
    )


def _transcript(view: dict[str, Any]) -> str:
    lines = [f"  {_speaker(view, m)}: {_shown(m)}" for m in view["history"]]
    mine, theirs = view["my_proposal"], view["their_proposal"]
    standing = ["Standing proposals:"]
    standing.append("  yours: none" if mine is None else f"  yours: you keep {_bundle(view, mine)}")
    if theirs is None:
        standing.append("  theirs: none")
    else:
        you_get = _bundle(view, rest(view["counts"], theirs))
        standing.append(f"  theirs: {_csv_items(theirs)} for them, so you would get {you_get}")
    return "Transcript so far:\n" + ("\n".join(lines) if lines else "  (no messages yet)") + "\n" + "\n".join(standing)


def _turn(view: dict[str, Any]) -> str:
    if view["done"] or not view["my_turn"]:
        return "The game is over." if view["done"] else "Wait for the other player's message."
    t, total = len(view["history"]) + 1, view["max_messages"]
    ranges = ", ".join(f"{letter} from 0 to {c}" for letter, c in zip("abc", view["counts"], strict=True))
    legal = [f"  [Propose: book=a, hat=b, ball=c]  with {ranges} (what you keep)"]
    if view["their_proposal"] is not None:
        you_get = _bundle(view, rest(view["counts"], view["their_proposal"]))
        legal.append(f"  [Accept]  take their proposal: you get {you_get}")
    legal.append("  [Walk]    end the game with no deal")
    last = " (the last one: a new proposal can no longer be accepted)" if t == total else ""
    return (
        f"It is your turn: message {t} of {total}{last}, {total - t + 1} left including this one. "
        "Legal actions now (use at most one; no tag = talk only):\n" + "\n".join(legal)
    )


def _speaker(view: dict[str, Any], message: dict[str, Any]) -> str:
    return "You" if message["speaker"] == view["player"] else "Other player"


def _shown(message: dict[str, Any]) -> str:
    action = _action_text(message["kind"], message["keep"])
    return " ".join(part for part in (message["talk"], action) if part) or "(says nothing)"


def _action_text(kind: str, keep: Alloc | None) -> str:
    if kind == "propose":
        return proposal_text(keep)
    return {"accept": "[Accept]", "walk": "[Walk]"}.get(kind, "")


def _bundle(view: dict[str, Any], bundle: Alloc) -> str:
    return f"{_csv_items(bundle)}, worth {_points(points(bundle, view['values']))} to you"


def _csv_items(bundle: Alloc) -> str:
    return ", ".join(f"{item}={q}" for item, q in zip(ITEMS, bundle, strict=True))


def _items(counts: Alloc) -> str:
    return ", ".join(f"{c} {item}{'s' if c != 1 else ''}" for item, c in zip(ITEMS, counts, strict=True))


def _points(n: int) -> str:
    return f"{n} point{'s' if n != 1 else ''}"


def _csv(numbers: Alloc) -> str:
    return ",".join(map(str, numbers))


# ---------------------------------------------------------------------------------------- scripted agents
def _offer_to_me(view: dict[str, Any]) -> int | None:
    """Points the other's standing proposal would give me (None when there is none)."""
    theirs = view["their_proposal"]
    return None if theirs is None else points(rest(view["counts"], theirs), view["values"])


def _cheapest_bundle(view: dict[str, Any], threshold: float) -> Alloc:
    """Among bundles worth >= ``threshold`` to me, the one keeping the fewest items (ties: more points to me)."""
    values = view["values"]
    worthy = [b for b in allocations(view["counts"]) if points(b, values) >= threshold]
    return min(worthy, key=lambda b: (sum(b), -points(b, values)))  # keeping everything always qualifies


@register_agent("deal", "random")
class RandomValid(ScriptedAgent):
    """A random valid message: mostly uniform random proposals, sometimes accept or talk; walks only late."""

    def act(self, view: dict[str, Any]) -> str:
        roll = self.rng.random()
        if view["their_proposal"] is not None and roll < 0.2:
            return "[Accept]"
        if len(view["history"]) >= view["max_messages"] // 2 and roll < 0.25:
            return "[Walk]"
        if roll < 0.35:
            return "Let me think about it."
        return proposal_text(self.rng.choice(allocations(view["counts"])))


@register_agent("deal", "greedy")
class GreedyThreshold(ScriptedAgent):
    """Greedy threshold: accepts an offer worth >= θ to it, else proposes the cheapest bundle worth >= θ.

    The cheapest bundle keeps the fewest items (ties: more points to me): it cannot know what the partner
    values, so giving away the most items is its best guess. θ falls linearly from ``start`` to ``end`` over
    the global message index t = 0..T−1 of the message being written.

    Args:
        start: the threshold at the first message, in points.
        end: the threshold at the last message, in points.
    """

    def __init__(self, start: float = 8.0, end: float = 5.0) -> None:
        super().__init__()
        self.start, self.end = start, end

    def threshold(self, view: dict[str, Any]) -> float:
        """θ for the message being written."""
        progress = len(view["history"]) / max(view["max_messages"] - 1, 1)
        return self.start + (self.end - self.start) * progress

    def act(self, view: dict[str, Any]) -> str:
        theta, offered = self.threshold(view), _offer_to_me(view)
        if offered is not None and offered >= theta:
            return "That works for me. [Accept]"
        return f"You can have the rest. {proposal_text(_cheapest_bundle(view, theta))}"

    def __repr__(self) -> str:
        return f"GreedyThreshold(start={self.start}, end={self.end})"


@register_agent("deal", "hardliner")
class Hardliner(ScriptedAgent):
    """Never concedes: always proposes the cheapest bundle worth >= ``demand``; accepts only >= ``accept_at``.

    Args:
        demand: the points it asks for.
        accept_at: the least it accepts.
    """

    def __init__(self, demand: int = 9, accept_at: int = 8) -> None:
        super().__init__()
        self.demand, self.accept_at = demand, accept_at

    def act(self, view: dict[str, Any]) -> str:
        offered = _offer_to_me(view)
        if offered is not None and offered >= self.accept_at:
            return "[Accept]"
        return f"This is my final offer. {proposal_text(_cheapest_bundle(view, self.demand))}"

    def __repr__(self) -> str:
        return f"Hardliner(demand={self.demand}, accept_at={self.accept_at})"
