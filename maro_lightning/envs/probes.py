"""Mechanism probes: three small, controlled games, one per MARO mechanism (docs/games.md#mechanism-probes).

Small real games may not separate MARO's mechanisms, so each probe builds in, by its rules, the one difficulty a
mechanism is for, and nothing else:

- ``probe_decisive`` (M1, outcome decomposition): two lookouts keep ``watches`` watches each; on one watch per lookout,
  drawn per game, a ship shows a flag that must be answered. That one answer is the lookout's whole reward; every
  other watch is a valid move that changes nothing.
- ``probe_skewed`` (M2, role balance): hide and seek. The hider acts once per game, the seeker up to ``tries``
  times, and under the scripted teachers the seeker wins about five games in six: one role is both rare in the data
  and rarely successful.
- ``probe_noisy`` (M3, behaviour utility): two collectors each take one of their own appraised lots; with
  probability ``noise`` (drawn at set-up from the game's seed) the appraisal was backwards and the score's sign
  is reversed. The clean score is in ``outcome().metrics`` and is what ``noise=0`` gives.

The rewards of the two players never depend on each other's moves: the co-player is a scripted partner, so that
the one source of difficulty in each probe is the one its mechanism addresses.

Every probe follows the shared text protocol (docs/games.md#shared-protocol): one action tag with a number,
``[Flag: 2]``, ``[Hide: 4]``, ``[Open: 4]``, ``[Take: 1]``; no tag is talk, always legal, and talk is the default
action after too many invalid attempts. The compact observations are documented in each class.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from typing import Any
from typing import ClassVar

from maro_lightning.envs.base import Action
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import parse_int
from maro_lightning.envs.registry import register_game

MAX_CHOICES = 100  # numbered options (flags, doors) a probe may offer; larger values are typos
TWO = {0: "first", 1: "second"}  # the roles of the symmetric probes, by move order


def parse_choice(arg: str | None, high: int, what: str) -> int:
    """A whole number from 1 to ``high`` (written like any number of the protocol: ``2``, ``$2``, ``2.0``)."""
    value = parse_int(arg, what)
    if not 1 <= value <= high:
        raise InvalidAction(f"{what} must be a whole number from 1 to {high}, got {value}")
    return value


def check_int(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{option} must be a whole number from {low} to {high}, got {value}")


class ProbeGame(SocialEnv):
    """What the probes share: two players, one numbered action tag per player, talk (no tag) always legal and the
    default action, and a message history in which a probe may keep an action secret from the other player.

    A subclass sets ``name``, ``tags``, ``players`` and writes the rules: ``_setup``, ``_finished``, ``_to_act``,
    ``_tag`` and ``_choices`` (what a player may write now), ``_act`` (what an action does), the rewards, the metrics
    and the renderers.
    """

    players: ClassVar[dict[int, str]] = TWO
    secret: ClassVar[frozenset[str]] = frozenset()  # action kinds the other player never sees

    @property
    def roles(self) -> dict[int, str]:
        return self.players

    def _phase(self) -> str:
        return "play"

    def _tag(self, player: int) -> str:
        """The one action tag ``player`` may write now."""
        return self.tags[0]

    @abstractmethod
    def _choices(self, player: int) -> int:
        """The highest number ``player`` may write in its tag now."""

    @abstractmethod
    def _act(self, player: int, action: Action) -> dict[str, Any]:
        """Apply a numbered action or talk to the state; return the turn's ``info`` features."""

    def _parse(self, player: int, tag_name: str | None, arg: str | None) -> Action:
        if tag_name is None:
            return Action("talk")
        expected = self._tag(player)
        if tag_name != expected:
            raise InvalidAction(f"[{tag_name.capitalize()}] is not your action: write [{expected.capitalize()}: k]")
        return Action(tag_name, parse_choice(arg, self._choices(player), f"the {tag_name}"))

    def _apply(self, player: int, action: Action, talk: str) -> dict[str, Any]:
        info = self._act(player, action)
        self.history.append({"speaker": player, "talk": talk, "kind": action.kind, "value": action.value})
        return info

    def _default_action(self, player: int) -> Action:
        return Action("talk")

    def _render_action(self, action: Action) -> str:
        return action_text(action.kind, action.value)

    def sent(self, player: int) -> int:
        """Messages ``player`` has sent (valid or defaulted: retries are not messages)."""
        return sum(m["speaker"] == player for m in self.history)

    def base_view(self, player: int) -> dict[str, Any]:
        """The part of every probe's view: who the reader is, the tag it writes and the highest number it may write
        in it (scripted agents read these), and the history as the reader may see it."""
        self._check_player(player)
        return {
            "game": self.name,
            "player": player,
            "role": self.roles[player],
            "action": self._tag(player),
            "choices": self._choices(player),
            "history": [self._seen(m, player) for m in self.history],
            "my_turn": player in self.to_act(),
            "done": self.done,
        }

    def _seen(self, message: dict[str, Any], reader: int) -> dict[str, Any]:
        """A message as ``reader`` sees it: a secret action of the other player shows as its talk alone."""
        if message["speaker"] != reader and message["kind"] in self.secret:
            return {**message, "kind": "talk", "value": None}
        return dict(message)

    def _render_full(self, view: dict[str, Any]) -> str:
        return "\n\n".join([self._rules(view), self._private(view), transcript(view), self._now(view)])

    @abstractmethod
    def _rules(self, view: dict[str, Any]) -> str:
        """The rules section of the full format."""

    @abstractmethod
    def _private(self, view: dict[str, Any]) -> str:
        """The reader's own situation in the full format."""

    def _now(self, view: dict[str, Any]) -> str:
        """What the reader must do now, in the full format."""
        if view["done"] or not view["my_turn"]:
            return "The game is over." if view["done"] else "Wait for the other player's message."
        return (
            f"It is your turn. Write [{view['action'].capitalize()}: k] with k a whole number from 1 to "
            f"{view['choices']}, or talk (no tag)."
        )


def action_text(kind: str, value: int | None) -> str:
    return "" if kind == "talk" else f"[{kind.capitalize()}: {value}]"


def transcript(view: dict[str, Any]) -> str:
    lines = []
    for m in view["history"]:
        speaker = "You" if m["speaker"] == view["player"] else "Other player"
        shown = " ".join(part for part in (m["talk"], action_text(m["kind"], m["value"])) if part)
        lines.append(f"  {speaker}: {shown or '(says nothing)'}")
    return "Transcript so far:\n" + ("\n".join(lines) if lines else "  (no messages yet)")


# ================================================================================= M1: one decisive turn
@register_game
class DecisiveWatch(ProbeGame):
    """M1 probe: a long game in which one turn per player decides its whole outcome.

    Two lookouts keep watch in turns, player 0 first, ``watches`` watches each. On every watch a lookout raises a
    flag, ``[Flag: k]`` with k from 1 to ``choices``, or talks (no tag: no flag). On one watch of each lookout,
    drawn per game (uniform over 1..watches), a ship appears to that lookout alone and shows a flag c (uniform over
    1..choices): the lookout scores 1 if it raises flag c on that same watch, 0 otherwise; the ship answers back at
    once (the lookout sees whether it hit), but the score comes at the end of the game. Nothing else it does counts,
    and the other lookout's moves never change its score. Success: a score of 1.

    Why it isolates M1: ``watches`` behaviours per player share one outcome, and exactly one of them (its index
    visible in the observation by the ship) made it. An undivided outcome credits every watch alike; a value that
    learns when the ship was answered puts the credit on that one watch (docs/design.md#formulation).

    Compact observation::

        W1 t=4/10 ship=2 >
        W1 t=6/10 ship=2 ans=3 miss >

    ``W1``/``W2`` (first or second lookout), the reader's watch (the next one while it waits), ``ship=c`` from the
    watch of its ship on, then once it answered ``ans=k`` (``ans=-`` for no flag) and ``hit`` or ``miss``, and
    ``>`` when it is the reader's turn. The flags raised so far change nothing and are left out (the full format's
    transcript has them): a tiny model cloned on 40 rounds with them in the prompt answered the ship at chance.
    ``hit``/``miss`` is what lets the tiny model's value head learn when the outcome was made: from ``ship=2
    ans=2`` alone (an equality of two tokens) its explained variance stayed at 0.

    Args:
        watches: watches per lookout (the game has 2·watches messages).
        choices: flags to choose from.
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "probe_decisive"
    tags = ("flag",)

    def __init__(self, *, watches: int = 10, choices: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("watches", watches, 1, MAX_CHOICES)
        check_int("choices", choices, 2, MAX_CHOICES)
        self.watches, self.choices = watches, choices

    def _setup(self, rng: random.Random) -> None:
        self.decisive = {p: rng.randint(1, self.watches) for p in self.players}  # the watch of each lookout's ship
        self.ship = {p: rng.randint(1, self.choices) for p in self.players}  # the flag its ship shows
        self.answer: dict[int, int | None] = {p: None for p in self.players}  # the flag raised on that watch
        self.history: list[dict[str, Any]] = []

    def _finished(self) -> bool:
        return len(self.history) >= 2 * self.watches

    def _to_act(self) -> list[int]:
        return [len(self.history) % 2]

    def _choices(self, player: int) -> int:
        return self.choices

    def watch(self, player: int) -> int:
        """The watch ``player`` is on (or waits for): its next message's number, at most ``watches``."""
        return min(self.sent(player) + 1, self.watches)

    def _act(self, player: int, action: Action) -> dict[str, Any]:
        watch, decisive = self.sent(player) + 1, self.sent(player) + 1 == self.decisive[player]
        info: dict[str, Any] = {"watch": watch, "decisive": decisive, "flag": action.value}
        if decisive:
            self.answer[player] = action.value
            info.update(ship=self.ship[player], hit=action.value == self.ship[player])
        return info

    def hit(self, player: int) -> bool:
        return self.answer[player] == self.ship[player]

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        return {p: float(self.hit(p)) for p in self.players}, {p: self.hit(p) for p in self.players}

    def _metrics(self) -> dict[str, float]:
        return {f"hit_{role}": float(self.hit(p)) for p, role in self.players.items()}

    def view(self, player: int) -> dict[str, Any]:
        view = self.base_view(player)
        seen = self.sent(player) + (player in self.to_act()) >= self.decisive[player]  # its ship has appeared
        answered = self.sent(player) >= self.decisive[player]
        view.update(
            watches=self.watches,
            watch=self.watch(player),
            ship=self.ship[player] if seen else None,
            ship_watch=self.decisive[player] if seen else None,
            answered=answered,
            answer=self.answer[player] if answered else None,
            hit=self.hit(player) if answered else None,
        )
        return view

    def _render_compact(self, view: dict[str, Any]) -> str:
        head = [f"W{view['player'] + 1}", f"t={view['watch']}/{view['watches']}"]
        if view["ship"] is not None:
            head.append(f"ship={view['ship']}")
        if view["answered"]:
            head += [f"ans={'-' if view['answer'] is None else view['answer']}", "hit" if view["hit"] else "miss"]
        return " ".join([*head, *([">"] if view["my_turn"] else [])])

    def _rules(self, view: dict[str, Any]) -> str:
        return (
            "You are playing Watch, a game for two lookouts. The lookouts keep watch in turns, the first lookout "
            f"first, {view['watches']} watches each. On every watch you raise a flag, [Flag: k] with k from 1 to "
            f"{view['choices']}, or just talk (no tag). On one of your watches, drawn at random, a ship appears to you "
            "and shows a flag: you score 1 if you raise that same flag on that same watch, 0 otherwise, at the end of "
            "the game (the ship answers back at once). Nothing else you do counts, and the other lookout's flags never "
            "change your score. Text inside <think>...</think> is private and never shown."
        )

    def _private(self, view: dict[str, Any]) -> str:
        who = f"You are the {view['role']} lookout, on watch {view['watch']} of {view['watches']}."
        if view["ship"] is None:
            return f"{who} No ship has appeared to you yet."
        if not view["answered"]:
            return f"{who} A ship is showing you flag {view['ship']} now, on this watch."
        answer = "no flag" if view["answer"] is None else f"flag {view['answer']}"
        result = "it answered back: a hit" if view["hit"] else "it sailed on: a miss"
        return (
            f"{who} On watch {view['ship_watch']} a ship showed you flag {view['ship']}; you answered {answer}, and "
            f"{result}."
        )


# ================================================================================= M2: skewed roles
HIDER, SEEKER = 0, 1


@register_game
class HideAndSeek(ProbeGame):
    """M2 probe: hide and seek, a rare and weak role against a frequent and strong one.

    Behind one of ``doors`` doors lies a prize, dealt at random; the seeker enters by door s, also drawn at random
    and shown to both. The hider (player 0) writes once, first: ``[Hide: k]`` moves the prize behind door k, no
    tag (talk) leaves it where it was dealt. Neither the door nor whether it moved is shown to the seeker, only
    the hider's talk. Then the seeker (player 1) writes up to ``tries`` messages, each ``[Open: k]`` (opening a
    door already open is legal and wastes the try) or talk (also a try). The seeker wins when it opens the
    prize's door; the hider wins when the tries run out. Reward +1 to the winner, −1 to the loser (zero-sum, as in
    Mafia); success: winning.

    Why it isolates M2: the hider writes one message per game, the seeker about three; and with the default
    6 doors and 5 tries, against the scripted ``predictable`` seeker (who sweeps the doors from s) the ``naive``
    hider wins 1 game in 6, while the ``naive`` seeker finds the ``predictable`` hider's prize 5 games in 6
    (tests/envs/test_probes.py measures both). Both roles can learn to win every game: the hider by hiding behind
    door s − 1 (the last one swept), the seeker by opening s and s + 1 first (where the habit hides).

    Compact observations::

        H n=6 s=3 at=5 >                    the hider: doors, the seeker's door, where the prize is now
        S n=6 s=3 k=2/5 | closed 1 2 5 6 >  the seeker: doors, its door, messages sent of tries, the doors still closed

    After its message the hider also sees the seeker's opens (``| opened 3 4``). The seeker is shown the doors still
    closed rather than those it opened (the same information): copying one of the listed numbers is what the tiny
    model learns (docs/games.md#hide-and-seek-m2).

    Args:
        doors: doors in the hall.
        tries: the seeker's messages (at most ``doors``: with as many tries as doors a careful seeker always wins).
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "probe_skewed"
    tags = ("hide", "open")
    players = {HIDER: "hider", SEEKER: "seeker"}
    secret = frozenset({"hide"})

    def __init__(self, *, doors: int = 6, tries: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("doors", doors, 2, MAX_CHOICES)
        check_int("tries", tries, 1, doors)
        self.doors, self.tries = doors, tries

    def _setup(self, rng: random.Random) -> None:
        self.prize = rng.randint(1, self.doors)
        self.start = rng.randint(1, self.doors)
        self.dealt = self.prize
        self.opened: list[int] = []
        self.found = False
        self.history: list[dict[str, Any]] = []

    def _finished(self) -> bool:
        return self.found or self.sent(SEEKER) >= self.tries

    def _to_act(self) -> list[int]:
        return [HIDER if not self.history else SEEKER]

    def _tag(self, player: int) -> str:
        return "hide" if player == HIDER else "open"

    def _choices(self, player: int) -> int:
        return self.doors

    def _act(self, player: int, action: Action) -> dict[str, Any]:
        if player == HIDER:
            if action.kind == "hide":
                self.prize = action.value
            return {"door": self.prize, "moved": self.prize != self.dealt, "start": self.start}
        repeat = action.value in self.opened
        if action.kind == "open":
            self.opened.append(action.value)
            self.found = action.value == self.prize
        return {"door": action.value, "found": self.found, "repeat": repeat, "try": self.sent(SEEKER) + 1}

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        winner = SEEKER if self.found else HIDER
        return {p: 1.0 if p == winner else -1.0 for p in self.players}, {p: p == winner for p in self.players}

    def _metrics(self) -> dict[str, float]:
        return {
            "found": float(self.found),
            "tries_used": float(self.sent(SEEKER)),
            "hider_moved": float(self.prize != self.dealt),
            "repeats": float(len(self.opened) - len(set(self.opened))),
        }

    def view(self, player: int) -> dict[str, Any]:
        view = self.base_view(player)
        view.update(doors=self.doors, tries=self.tries, start=self.start, opened=list(self.opened))
        view["closed"] = [k for k in range(1, self.doors + 1) if k not in self.opened]
        view["sent"] = self.sent(SEEKER)
        if player == HIDER:
            view["prize"] = self.prize
        return view

    def _render_compact(self, view: dict[str, Any]) -> str:
        head = ["H" if view["role"] == "hider" else "S", f"n={view['doors']}", f"s={view['start']}"]
        if view["role"] == "hider":
            head.append(f"at={view['prize']}")
            tail = ["|", "opened", *map(str, view["opened"])] if view["opened"] else []
        else:
            head.append(f"k={view['sent']}/{view['tries']}")
            tail = ["|", "closed", *map(str, view["closed"])]
        return " ".join([*head, *tail, *([">"] if view["my_turn"] else [])])

    def _rules(self, view: dict[str, Any]) -> str:
        return (
            f"You are playing Hide and Seek, a game for a hider and a seeker. Behind one of {view['doors']} doors, "
            "numbered from 1, lies a prize, dealt at random; the seeker enters the hall by door "
            f"{view['start']}. The hider writes once, first: [Hide: k] moves the prize behind door k, and a message "
            "without a tag leaves it where it was dealt. The seeker never learns where it is or whether it moved, "
            f"only what the hider says. Then the seeker writes up to {view['tries']} messages, each [Open: k] to "
            "open door k (opening a door already open wastes the message) or talk. The seeker wins if it opens the "
            "prize's door; otherwise the hider wins. The winner scores +1, the loser -1. Text inside "
            "<think>...</think> is private and never shown."
        )

    def _private(self, view: dict[str, Any]) -> str:
        if view["role"] == "hider":
            return f"You are the HIDER. The prize is behind door {view['prize']}."
        opened = ", ".join(map(str, view["opened"])) or "none"
        closed = ", ".join(map(str, view["closed"]))
        return (
            f"You are the SEEKER. Messages sent: {view['sent']} of {view['tries']}. Doors opened so far: {opened}; "
            f"still closed: {closed}."
        )


# ================================================================================= M3: a noisy outcome
@register_game
class NoisyAppraisal(ProbeGame):
    """M3 probe: one clean decision per player, scored through injected noise.

    Two collectors, player 0 first, each own ``lots`` sealed lots with distinct appraised values from 1 to 9 (drawn
    per game, shown to their owner only) and write one message: ``[Take: k]`` takes lot k, talk (no tag) takes
    none. The clean score ranks the lot taken among the collector's lots: +1 for the most valuable, −1 for the
    least, evenly spaced between (with 3 lots: +1, 0, −1); no lot scores 0. Luck: with probability ``noise``, drawn
    per collector at set-up from the game's seed, the appraisal was backwards and the reward is the clean score
    reversed (−clean). Success: a reward above 0. The other collector never changes one's reward.

    Why it isolates M3: the outcome a collector sees is its decision's clean value with its sign flipped in a
    ``noise`` share of games, so one game's reward is a noisy label of the decision, E[reward] = (1 − 2·noise)·clean.
    A learned utility of the behaviour averages the flips over many games; an outcome-only advantage carries each
    one. The clean quality of a policy is recoverable two ways: ``outcome().metrics`` holds each role's clean score
    (``clean_reward_first``, ``clean_reward_second``), and playing with ``noise=0`` gives it as the reward (the
    flips are drawn whatever ``noise`` is, so the same seed deals the same lots at every noise level):
    ``maro evaluate --held-out-option noise=0``, or ``held_out_options: {probe_noisy: {noise: 0}}`` in a config's
    ``EvaluationReport``.

    Compact observation::

        C1 lots 4 7 2 >

    ``C1``/``C2`` (first or second collector), the appraised values of its lots 1, 2, 3, ``>`` when it is the
    reader's turn; once it took a lot, ``| took 2`` (or ``took -`` for none).

    Args:
        lots: lots per collector (2 to 9: the values are distinct digits).
        noise: the probability that a collector's reward is reversed, in [0, 0.5] (0.5: the outcome says nothing).
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "probe_noisy"
    tags = ("take",)

    def __init__(self, *, lots: int = 3, noise: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("lots", lots, 2, 9)
        if not 0.0 <= noise <= 0.5:
            raise ValueError(f"noise must be a probability from 0 to 0.5, got {noise}")
        self.lots, self.noise = lots, noise

    def _setup(self, rng: random.Random) -> None:
        self.values = {p: rng.sample(range(1, 10), self.lots) for p in self.players}
        # One uniform per collector whatever the noise: the same seed deals the same lots at every noise level.
        self.flipped = {p: rng.random() < self.noise for p in self.players}
        self.taken: dict[int, int | None] = {p: None for p in self.players}
        self.history: list[dict[str, Any]] = []

    def _finished(self) -> bool:
        return len(self.history) >= len(self.players)

    def _to_act(self) -> list[int]:
        return [len(self.history)]

    def _choices(self, player: int) -> int:
        return self.lots

    def _act(self, player: int, action: Action) -> dict[str, Any]:
        self.taken[player] = action.value
        info: dict[str, Any] = {"lot": action.value, "clean_reward": self.clean_reward(player)}
        if action.value is not None:
            info["value"] = self.values[player][action.value - 1]
        return info

    def clean_reward(self, player: int) -> float:
        """The rank score of the lot taken, without the noise: +1 best, −1 worst, 0 for no lot."""
        lot = self.taken[player]
        if lot is None:
            return 0.0
        values = self.values[player]
        rank = sorted(values).index(values[lot - 1])  # 0 = the least valuable
        return 2 * rank / (self.lots - 1) - 1

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        rewards = {p: -self.clean_reward(p) if self.flipped[p] else self.clean_reward(p) for p in self.players}
        return {p: r + 0.0 for p, r in rewards.items()}, {p: r > 0 for p, r in rewards.items()}  # + 0.0: no -0.0

    def _metrics(self) -> dict[str, float]:
        metrics = {}
        for p, role in self.players.items():
            metrics[f"clean_reward_{role}"] = self.clean_reward(p)
            metrics[f"flipped_{role}"] = float(self.flipped[p])
        return metrics

    def view(self, player: int) -> dict[str, Any]:
        view = self.base_view(player)
        view.update(lots=self.lots, values=list(self.values[player]), noise=self.noise)
        view["taken"] = self.taken[player]
        view["took"] = self.sent(player) > 0
        return view

    def _render_compact(self, view: dict[str, Any]) -> str:
        head = [f"C{view['player'] + 1}", "lots", *map(str, view["values"])]
        if view["took"]:
            head += ["|", "took", "-" if view["taken"] is None else str(view["taken"])]
        return " ".join([*head, *([">"] if view["my_turn"] else [])])

    def _rules(self, view: dict[str, Any]) -> str:
        return (
            f"You are playing Appraisal, a game for two collectors. Each collector owns {view['lots']} sealed lots, "
            "numbered from 1, with distinct appraised values from 1 to 9 that only their owner sees, and writes one "
            "message, the first collector first: [Take: k] takes lot k, a message without a tag takes none. You "
            "score by the rank of the lot you take among your lots: +1 for the most valuable, -1 for the least, "
            "evenly spaced between; no lot scores 0. But appraisals can be backwards: with probability "
            f"{view['noise']:g} yours was, and your score is reversed (+1 becomes -1). The other collector never "
            "changes your score. Text inside <think>...</think> is private and never shown."
        )

    def _private(self, view: dict[str, Any]) -> str:
        values = ", ".join(f"lot {k} is worth {v}" for k, v in enumerate(view["values"], start=1))
        took = ""
        if view["took"]:
            took = " You took no lot." if view["taken"] is None else f" You took lot {view['taken']}."
        return f"You are the {view['role']} collector. Your lots' appraised values: {values}.{took}"
