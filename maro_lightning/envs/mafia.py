"""Mafia: hidden roles, night kills and day votes (docs/games.md#mafia).

After the Mafia/Werewolf family of social deduction games. Players are numbered ``0..n-1`` and always named
``Player k``. Every number below is an option of :class:`Mafia`.

Rules as implemented:

- Roles: ``round(n/4)`` Mafia (rounded half up, so 2 of 6) who know each other, one Doctor, one Detective, the
  rest Villagers; everyone who is not Mafia is the village. At least 4 players: with fewer Mafia than half the
  players the village has at least 2, so both specials always fit (at 4: Mafia, Doctor, Detective, Villager;
  random play gives the Mafia about 2 games in 3 there, with or without the Doctor, so it is kept). Roles are
  never shown, not even on death; they are revealed only in :meth:`~maro_lightning.envs.SocialEnv.outcome`.
- The game starts at night 1; night k is followed by day k.
- Night (simultaneous: :meth:`to_act` lists every living night actor): each living Mafia member
  ``[Vote: Player k]`` for a living non-Mafia player; the Doctor ``[Protect: Player k]`` one other living
  player; the Detective ``[Investigate: Player k]`` one other living player and privately learns at once
  whether k is Mafia. The Mafia's plurality target dies unless the Doctor protected it; a tie between targets
  is broken at random (env rng). The Mafia see each other's night votes and night messages; nobody else
  sees any night action or night message.
- Day: the night's death (or "no one died") is announced; ``talk_rounds`` discussion rounds follow, in
  each of which every living player, in a freshly shuffled order, writes one public message (talk only: a tag
  is invalid; the default is an empty message). Then every living player votes at once with
  ``[Vote: Player k]`` for another living player (a tag is required; self-votes are invalid, a Mafia member
  may vote for a teammate). When all have voted, every vote (and the talk written with it) is made public and
  the plurality target is eliminated; a tie is broken at random (``tie="random"``) or eliminates no one
  (``tie="none"``).
- Win, checked after every death: the village wins when no Mafia member lives; the Mafia win when they are at
  least half of the living. A day can pass without a death (a Doctor save and, with ``tie="none"``, a tied
  vote), so the game also ends after day ``max_days``: the Mafia then win, because surviving is their goal and
  a village that has not found them by then has failed. Random play never reached the default cap of 10 days.
- Under random play (``random`` in every seat) the Mafia win about 87% of 6-player games (the exact value of
  these rules, computed as a Markov chain in the tests, is 0.872), not the "about two in three" first estimated
  (docs/games.md#mafia): after a night kill, a random day vote hits a Villager 3 times in 5 and leaves the
  Mafia at half the living.
- Reward: +1 to every member of the winning team and -1 to every member of the other, the dead included.
  Success = own team won.
- A target is written ``Player 3``, ``player3``, ``P3``, ``p 3``, ``#3`` or ``3`` (case-insensitive, with
  spaces around). An unreadable target, a nonexistent, dead or otherwise illegal one (self for everyone, a
  teammate for the Mafia at night), a missing tag where an action is required or the wrong tag (the Doctor
  must ``Protect``) are invalid: re-prompted, then replaced by a random legal target (the default action).

Compact observation (one line, for small models trained from scratch), sections split by ``|``::

    doctor P2 D1 vote | alive 0 1 2 4 5 | prot 4 | D1 killed 3 | 4: I accuse Player 1 | 0: - | > vote 0 1 4 5

own role, ``P`` own number, ``N``/``D`` night or day number and phase (``night``, ``talk``, ``vote``,
``over``); the living; private knowledge (Mafia: ``mates 4=mafia`` and their night votes ``N1 4>1 2>1``;
Detective: ``inv 3=mafia 1=village``; Doctor: ``prot`` then each protected player); then the public record:
``D1 killed 3`` or ``D1 killed none`` at dawn, ``k: text`` for talk (``-`` when empty),
``V1 0>3 1>3 ... out 3`` (or ``out none``) for a day vote (the talk sent with votes and the Mafia's night talk
are left out to stay terse), ``end mafia``/``end village``; last, after ``>``,
what the reader must do: ``talk``, ``vote``/``protect``/``investigate`` followed by the legal targets, or
``wait``, ``dead``, ``over``.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any
from typing import Literal

from maro_lightning.envs import mafia_agents  # noqa: F401  (registers the scripted agents)
from maro_lightning.envs.base import Action
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import truncate
from maro_lightning.envs.registry import register_game

MAFIA, DOCTOR, DETECTIVE, VILLAGER = "mafia", "doctor", "detective", "villager"
NIGHT, TALK, VOTE, OVER = "night", "day-talk", "day-vote", "over"
MIN_PLAYERS = 4
NIGHT_TAG = {MAFIA: "vote", DOCTOR: "protect", DETECTIVE: "investigate"}  # each night role's one action
_TARGET = re.compile(r"(?:player|p)?\s*#?\s*([0-9]+)", re.IGNORECASE)  # ASCII digits only
_MAX_DIGITS = 6  # longer numbers name no player; rejecting them first keeps int() of 10 kB of digits away
_PHASE_CODE = {NIGHT: "night", TALK: "talk", VOTE: "vote", OVER: "over"}
_END_REASON = {
    "no_mafia": "no Mafia member is alive",
    "parity": "the Mafia are at least half of the living players",
    "cap": "the day limit was reached",
}


def reveal(player: int, label: str, *, compact: bool) -> str:
    """The one way an observation ties a role (or a team) to a player: ``Player 3 (Mafia)`` or ``3=mafia``.

    Only the Mafia's own teammates and the Detective's results are ever rendered, always through this function,
    so that tests can build the exact string a leak would take.
    """
    return f"{player}={label.lower()}" if compact else f"Player {player} ({label})"


@register_game
class Mafia(SocialEnv):
    """Mafia for ``n_players`` with hidden roles, simultaneous night actions and public day votes.

    Args:
        n_players: number of players, at least 4.
        num_mafia: Mafia members; default ``round(n/4)`` rounded half up (2 of 6). Must be fewer than half the
            players, or the Mafia would have won before the first night.
        doctor: whether a Doctor is dealt (yes by default, at every size).
        detective: whether a Detective is dealt (yes by default, at every size).
        talk_rounds: D, discussion rounds per day (each living player one message per round); 0 = vote at once.
        tie: a tied day vote eliminates a random one of the tied players (``"random"``) or no one (``"none"``).
        max_days: after this day's vote the game ends and, if no team has won, the Mafia win.
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "mafia"
    tags = ("vote", "protect", "investigate")
    hidden_roles = True

    def __init__(
        self,
        *,
        n_players: int = 6,
        num_mafia: int | None = None,
        doctor: bool = True,
        detective: bool = True,
        talk_rounds: int = 2,
        tie: Literal["random", "none"] = "random",
        max_days: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if n_players < MIN_PLAYERS:
            raise ValueError(f"Mafia needs at least {MIN_PLAYERS} players, got n_players={n_players}")
        mafia = (n_players + 2) // 4 if num_mafia is None else num_mafia  # round(n/4), halves rounded up
        if not 1 <= mafia or 2 * mafia >= n_players:
            raise ValueError(f"num_mafia must be >= 1 and under half of {n_players} players, got {mafia}")
        if talk_rounds < 0 or max_days < 1 or tie not in ("random", "none"):
            raise ValueError(
                f"need talk_rounds >= 0, max_days >= 1, tie random|none; got {talk_rounds}, {max_days}, {tie!r}"
            )
        self.n_players = n_players
        self.deck = [MAFIA] * mafia + [DOCTOR] * int(doctor) + [DETECTIVE] * int(detective)
        self.deck += [VILLAGER] * (n_players - len(self.deck))
        self.dealt = dict(Counter(self.deck))  # public: how many of each role are in the game
        self._roles = dict.fromkeys(range(n_players), "undealt")  # callers learn the player ids before reset
        self.talk_rounds, self.tie, self.max_days = talk_rounds, tie, max_days

    # ------------------------------------------------------------------------------------------ set-up
    def _setup(self, rng: random.Random) -> None:
        deck = list(self.deck)
        rng.shuffle(deck)
        self._roles = dict(enumerate(deck))
        self.mafia = frozenset(p for p, role in self._roles.items() if role == MAFIA)
        self.alive = list(range(self.n_players))  # kept sorted
        self.day = 1  # night k comes before day k
        self.stage = NIGHT
        self.winner: str | None = None
        self.end_reason: str | None = None
        self.events: list[tuple] = []  # the public record, see view()
        self.mafia_log: list[tuple[int, int, int, str]] = []  # (night, voter, target, talk): Mafia eyes only
        self.investigations: list[tuple[int, int, bool]] = []  # (night, target, is Mafia): Detective only
        self.protections: list[tuple[int, int]] = []  # (night, target): Doctor only
        self._waiting: list[int] = []  # who still has to act in a simultaneous phase
        self._order: list[int] = []  # speaking order of the current talk round
        self._round = self._speaker = 0
        self._night: dict[int, int] = {}  # night actor -> target chosen tonight
        self._votes: dict[int, tuple[int, str]] = {}  # day voter -> (target, talk)
        self._notes: dict[int, dict[str, Any]] = {}  # features known only once the phase resolves
        self._stats: Counter[str] = Counter()  # decisions, village votes, village votes on Mafia, days begun
        self._died_on: dict[int, int] = {}  # Mafia member -> the day it was eliminated
        self._start_night()

    @property
    def roles(self) -> dict[int, str]:
        return self._roles

    def _finished(self) -> bool:
        return self.stage == OVER

    def _to_act(self) -> list[int]:
        if self.stage == TALK:
            return [self._order[self._speaker]]
        return list(self._waiting)  # a copy: callers iterate over it while acting

    def _phase(self) -> str:
        return self.stage

    # ----------------------------------------------------------------------------------------- parsing
    def expected_tag(self, player: int) -> str | None:
        """The tag ``player`` must act with now (None: talk only), whether or not it is its turn."""
        if self.stage == VOTE:
            return "vote"
        return NIGHT_TAG.get(self._roles[player]) if self.stage == NIGHT else None

    def legal_targets(self, player: int) -> list[int]:
        """Whom ``player`` may target now: [] outside night and vote phases."""
        if self.stage == NIGHT and self._roles[player] == MAFIA:
            return [p for p in self.alive if p not in self.mafia]
        if self.stage in (NIGHT, VOTE):
            return [p for p in self.alive if p != player]
        return []

    def _parse(self, player: int, tag_name: str | None, arg: str | None) -> Action:
        expected = self.expected_tag(player)
        if expected is None:
            if tag_name is not None:
                raise InvalidAction("the day discussion is talk only: write your message without any [ ] tag")
            return Action("talk")
        form = f"[{expected.capitalize()}: Player k]"
        if tag_name is None:
            raise InvalidAction(f"an action is required now: answer with {form}")
        if tag_name != expected:
            raise InvalidAction(f"[{tag_name.capitalize()}] is not your action now: answer with {form}")
        target = self._read_target(arg)
        if target not in self.legal_targets(player):
            raise InvalidAction(self._illegal(player, target))
        return Action(expected, target)

    def _read_target(self, arg: str | None) -> int:
        match = _TARGET.fullmatch((arg or "").strip())
        if match is None:
            raise InvalidAction(f"write the target as Player k, got {truncate(arg or '', 30)!r}")
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise InvalidAction(f"there is no Player {truncate(digits, 12)}: players are 0 to {self.n_players - 1}")
        return int(digits)

    def _illegal(self, player: int, target: int) -> str:
        if not 0 <= target < self.n_players:
            return f"there is no Player {target}: players are 0 to {self.n_players - 1}"
        if target not in self.alive:
            return f"Player {target} is dead"
        if target == player:
            return "you cannot target yourself"
        return f"Player {target} is your Mafia teammate: the Mafia kill only non-Mafia players"

    def _default_action(self, player: int) -> Action:
        expected = self.expected_tag(player)
        if expected is None:
            return Action("talk")
        return Action(expected, self._rng.choice(self.legal_targets(player)))

    def _render_action(self, action: Action) -> str:
        return "" if action.kind == "talk" else f"[{action.kind.capitalize()}: Player {action.value}]"

    # ----------------------------------------------------------------------------------------- actions
    def _after_step(self) -> None:
        if self._notes:
            self._annotate()

    def _annotate(self) -> None:
        """Add what became known when the phase resolved (kill, save, elimination) to its committed turns.

        The base logs a turn after :meth:`_apply` returns, so the resolving turn is annotated in ``_after_step``.
        """
        phase = self.turns[-1].phase
        for turn in reversed(self.turns):
            if turn.phase != phase:
                break
            if turn.action is not None and turn.player in self._notes:
                turn.info.update(self._notes[turn.player])
        self._notes = {}

    def _apply(self, player: int, action: Action, talk: str) -> dict[str, Any]:
        self._stats["decisions"] += 1
        if action.kind == "talk":
            return self._apply_talk(player, talk)
        target = action.value
        role = self._roles[target]
        info = {"day": self.day, "target": target, "target_role": role, "target_is_mafia": role == MAFIA}
        if self.stage == VOTE:
            self._apply_vote(player, target, talk, info)
        else:
            self._apply_night(player, action, talk)
        self._waiting.remove(player)
        if not self._waiting and self.stage == VOTE:
            self._resolve_vote()
        elif not self._waiting:
            self._resolve_night()
        return info

    def _apply_talk(self, player: int, talk: str) -> dict[str, Any]:
        self.events.append(("talk", self.day, self._round, player, talk))
        info = {"day": self.day, "round": self._round, "chars": len(talk)}
        self._speaker += 1
        if self._speaker == len(self._order):
            self._next_round()
        return info

    def _apply_vote(self, player: int, target: int, talk: str, info: dict[str, Any]) -> None:
        self._votes[player] = (target, talk)
        info["correct"] = info["target_is_mafia"] != (player in self.mafia)  # the vote serves the voter's team
        if player not in self.mafia:
            self._stats["village_votes"] += 1
            self._stats["village_votes_on_mafia"] += info["target_is_mafia"]

    def _apply_night(self, player: int, action: Action, talk: str) -> None:
        self._night[player] = action.value
        if action.kind == "vote":
            self.mafia_log.append((self.day, player, action.value, talk))
        elif action.kind == "investigate":
            self.investigations.append((self.day, action.value, action.value in self.mafia))
        else:
            self.protections.append((self.day, action.value))

    # ---------------------------------------------------------------------------------------- phases
    def _start_night(self) -> None:
        self.stage = NIGHT
        self._night = {}
        self._waiting = [p for p in self.alive if self._roles[p] in NIGHT_TAG]

    def _resolve_night(self) -> None:
        kills = {p: t for p, t in self._night.items() if p in self.mafia}
        victim = self._plurality(list(kills.values()), tie="random")
        saved = any(self._roles[p] == DOCTOR and t == victim for p, t in self._night.items())
        self._notes = {p: {"chosen": t == victim, "killed": t == victim and not saved} for p, t in kills.items()}
        self._notes.update({p: {"saved": saved} for p in self._night if self._roles[p] == DOCTOR})
        self.events.append(("dawn", self.day, None if saved else victim))
        if not saved:
            self._kill(victim)
        if self.stage != OVER:
            self._stats["days"] += 1
            self._round = 0
            self._next_round()

    def _next_round(self) -> None:
        self._round += 1
        if self._round > self.talk_rounds:
            self.stage, self._votes, self._waiting = VOTE, {}, list(self.alive)
            return
        self.stage, self._speaker = TALK, 0
        self._order = list(self.alive)
        self._rng.shuffle(self._order)

    def _resolve_vote(self) -> None:
        votes = tuple((voter, target, talk) for voter, (target, talk) in sorted(self._votes.items()))
        out = self._plurality([target for _, target, _ in votes], tie=self.tie)
        self._notes = {voter: {"eliminated": target == out} for voter, target, _ in votes}
        self.events += [("votes", self.day, votes), ("out", self.day, out)]
        if out is not None:
            self._kill(out)
        if self.stage == OVER:
            return
        if self.day >= self.max_days:
            self._end(MAFIA, "cap")
            return
        self.day += 1
        self._start_night()

    def _plurality(self, targets: list[int], *, tie: str) -> int | None:
        counts = Counter(targets)
        top = max(counts.values())
        leaders = sorted(t for t, c in counts.items() if c == top)
        if len(leaders) == 1:
            return leaders[0]
        return self._rng.choice(leaders) if tie == "random" else None

    def _kill(self, player: int) -> None:
        """Remove ``player`` and check the win rule, as after every death."""
        self.alive.remove(player)
        if player in self.mafia:
            self._died_on[player] = self.day
        mafia_alive = sum(p in self.mafia for p in self.alive)
        if mafia_alive == 0:
            self._end("village", "no_mafia")
        elif 2 * mafia_alive >= len(self.alive):
            self._end(MAFIA, "parity")

    def _end(self, winner: str, reason: str) -> None:
        self.stage, self.winner, self.end_reason = OVER, winner, reason
        self._waiting = []
        self.events.append(("end", winner, reason))

    # ---------------------------------------------------------------------------------------- outcome
    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        success = {p: (role == MAFIA) == (self.winner == MAFIA) for p, role in self._roles.items()}
        return {p: 1.0 if won else -1.0 for p, won in success.items()}, success

    def _metrics(self) -> dict[str, float]:
        days, votes = self._stats["days"], self._stats["village_votes"]
        survival = [self._died_on.get(p, days) for p in self.mafia]  # days begun while alive
        return {
            "mafia_win": float(self.winner == MAFIA),
            "village_vote_accuracy": self._stats["village_votes_on_mafia"] / votes if votes else 0.0,
            "village_votes": float(votes),
            "mafia_survival_days": sum(survival) / len(survival),
            "days": float(days),
            "decisions": float(self._stats["decisions"]),
            "capped": float(self.end_reason == "cap"),
        }

    # ------------------------------------------------------------------------------- what a player sees
    def view(self, player: int) -> dict[str, Any]:
        """Everything ``player`` may know now; private fields are empty for the roles that may not see them.

        ``events``, the public record, holds tuples: ``("dawn", day, victim or None)``,
        ``("talk", day, round, player, text)``, ``("votes", day, ((voter, target, talk), ...))``,
        ``("out", day, eliminated or None)`` and ``("end", winner, reason)``.
        """
        self._check_player(player)
        role = self._roles[player]
        my_turn = player in self.to_act()
        return {
            "game": self.name,
            "player": player,
            "role": role,
            "n_players": self.n_players,
            "dealt": dict(self.dealt),
            "talk_rounds": self.talk_rounds,
            "tie": self.tie,
            "max_days": self.max_days,
            "day": self.day,
            "phase": self.stage,
            "round": self._round,
            "alive": list(self.alive),
            "teammates": sorted(self.mafia - {player}) if role == MAFIA else [],
            "mafia_votes": list(self.mafia_log) if role == MAFIA else [],
            "investigations": list(self.investigations) if role == DETECTIVE else [],
            "protections": list(self.protections) if role == DOCTOR else [],
            "events": list(self.events),
            "my_turn": my_turn,
            "action": (self.expected_tag(player) or "talk") if my_turn else None,
            "targets": self.legal_targets(player) if my_turn else [],
            "done": self.done,
            "winner": self.winner,
        }

    def _render_full(self, view: dict[str, Any]) -> str:
        return "\n\n".join([_rules(view), _private(view), _transcript(view), _now(view)])

    def _render_compact(self, view: dict[str, Any]) -> str:
        parts = [_compact_head(view), " ".join(["alive", *map(str, view["alive"])])]
        parts += [part for part in [_compact_private(view)] if part]
        parts += [_compact_event(event) for event in view["events"]]
        return " | ".join([*parts, "> " + _compact_prompt(view)])


# ------------------------------------------------------------------------------------- prompt sections
_TITLE = {MAFIA: "Mafia", DOCTOR: "Doctor", DETECTIVE: "Detective", VILLAGER: "Villager"}


def _rules(view: dict[str, Any]) -> str:
    n, dealt = view["n_players"], view["dealt"]
    counts = ", ".join(f"{c} {_TITLE[r]}{'s' if c > 1 and r != MAFIA else ''}" for r, c in dealt.items())
    tie = "a tie is broken at random" if view["tie"] == "random" else "on a tie no one is eliminated"
    return (
        f"You are playing Mafia, a social deduction game, with {n} players: Player 0 to Player {n - 1}. "
        f"Secret roles were dealt: {counts}. Everyone who is not Mafia belongs to the village. The Mafia know "
        "each other; nobody else knows anyone's role, and roles stay secret even after death.\n"
        f"Night: {_night_rules(dealt)} Night actions are secret, except that the Mafia see each other's votes "
        "and messages.\n"
        f"Day: the night's victim is announced, then {view['talk_rounds']} discussion round(s): in each, every "
        "living player writes one public message, in a random order (talk only, no action tags). Then every "
        "living player votes at the same time for another living player to eliminate; the votes are revealed "
        f"once everyone has voted, and the player with the most votes is eliminated ({tie}).\n"
        "The village wins when no Mafia member is alive; the Mafia win when they are at least half of the "
        f"living players, or if neither side has won after day {view['max_days']}. Every member of the winning "
        "team scores +1 and every member of the losing team -1, dead players included.\n"
        "Text inside <think>...</think> is private and never shown to anyone."
    )


def _night_rules(dealt: dict[str, int]) -> str:
    rules = ["each living Mafia member votes for a non-Mafia player to kill (most votes wins, ties at random)"]
    if DOCTOR in dealt:
        rules.append("the Doctor protects one other player, who survives if the Mafia attack them")
    if DETECTIVE in dealt:
        rules.append("the Detective investigates one other player and privately learns whether they are Mafia")
    return "; ".join(rules) + "."


def _private(view: dict[str, Any]) -> str:
    role = view["role"]
    lines = [f"You are Player {view['player']}. Your role: {_TITLE[role]}."]
    if role == MAFIA:
        mates = ", ".join(reveal(p, "Mafia", compact=False) for p in view["teammates"]) or "no one else"
        lines.append(f"The Mafia team: you and {mates}. Goal: survive until the Mafia are half of the living.")
        lines += [
            f"  Night {k}: Player {v} voted to kill Player {t}{_said(talk)}" for k, v, t, talk in view["mafia_votes"]
        ]
    elif role == DETECTIVE:
        lines.append("Goal: find and vote out every Mafia member. Your investigations (only you know them):")
        results = [
            (k, reveal(t, "Mafia" if bad else "not Mafia", compact=False)) for k, t, bad in view["investigations"]
        ]
        lines += [f"  Night {k}: {result}" for k, result in results] or ["  none yet"]
    elif role == DOCTOR:
        lines.append("Goal: find and vote out every Mafia member. Players you protected (only you know):")
        lines += [f"  Night {k}: Player {t}" for k, t in view["protections"]] or ["  none yet"]
    else:
        lines.append("Goal: find and vote out every Mafia member. You have no night action.")
    if view["player"] not in view["alive"]:
        lines.append("You are dead: you can no longer act, but your team can still win.")
    return "\n".join(lines)


def _said(talk: str) -> str:
    return f' and said: "{talk}"' if talk else ""


def _transcript(view: dict[str, Any]) -> str:
    lines = [_full_event(event) for event in view["events"]] or ["(nothing yet: the first night is under way)"]
    return "Public record so far:\n" + "\n".join(lines)


def _full_event(event: tuple) -> str:
    kind = event[0]
    if kind == "talk":
        _, day, round_, player, talk = event
        return f"  Day {day}, round {round_}, Player {player}: {talk or '(says nothing)'}"
    if kind == "votes":
        votes = "; ".join(f"Player {v} -> Player {t}{_said(talk)}" for v, t, talk in event[2])
        return f"Day {event[1]} votes: {votes}."
    if kind == "dawn":
        victim = event[2]
        death = "no one died" if victim is None else f"Player {victim} was killed"
        return f"Day {event[1]} dawn: {death} during the night."
    if kind == "out":
        out = event[2]
        return (
            "No one was eliminated: the vote was tied." if out is None else f"Player {out} was eliminated by the vote."
        )
    team = "Mafia" if event[1] == MAFIA else "village"
    return f"The game is over: the {team} won ({_END_REASON[event[2]]})."


_ASK = {
    "night-vote": "choose the Mafia's victim (your teammates see your vote and message)",
    "night-protect": "choose one other player to protect from the Mafia tonight (no one sees your message)",
    "night-investigate": "choose one other player to investigate: you will privately learn whether they are Mafia "
    "(no one sees your message)",
    "day-vote": "vote to eliminate another living player (your vote and message are revealed once all have voted)",
}


def _now(view: dict[str, Any]) -> str:
    if view["done"]:
        return "The game is over."
    if view["player"] not in view["alive"]:
        return "You are dead and can only watch."
    if not view["my_turn"]:
        return "Wait: other players are acting."
    day, action = view["day"], view["action"]
    if action == "talk":
        return (
            f"Now: day {day}, discussion round {view['round']} of {view['talk_rounds']}. It is your turn to speak: "
            "write one public message to everyone. Talk only: do not use any [ ] tag now (you may say nothing)."
        )
    when = f"night {day}" if view["phase"] == NIGHT else f"day {day}"
    ask = _ASK[f"{'night' if view['phase'] == NIGHT else 'day'}-{action}"]
    options = " ".join(f"[{action.capitalize()}: Player {t}]" for t in view["targets"])
    return f"Now: {when}: {ask}. Answer with exactly one of these actions, optionally with a short message: {options}"


def _compact_head(view: dict[str, Any]) -> str:
    when = f"N{view['day']}" if view["phase"] == NIGHT else f"D{view['day']}"
    return f"{view['role']} P{view['player']} {when} {_PHASE_CODE[view['phase']]}"


def _compact_private(view: dict[str, Any]) -> str:
    role = view["role"]
    if role == MAFIA:
        mates = " ".join(reveal(p, MAFIA, compact=True) for p in view["teammates"]) or "none"
        nights: dict[int, list[str]] = {}
        for night, voter, target, _talk in view["mafia_votes"]:  # night talk is left out: compact stays terse
            nights.setdefault(night, []).append(f"{voter}>{target}")
        return " ".join([f"mates {mates}", *(f"N{k} {' '.join(v)}" for k, v in nights.items())])
    if role == DETECTIVE:
        found = [reveal(t, MAFIA if bad else "village", compact=True) for _, t, bad in view["investigations"]]
        return " ".join(["inv", *found]) if found else "inv none"
    if role == DOCTOR:
        return " ".join(["prot", *(str(t) for _, t in view["protections"])]) if view["protections"] else "prot none"
    return ""


def _compact_event(event: tuple) -> str:
    kind = event[0]
    if kind == "talk":
        return f"{event[3]}: {event[4] or '-'}"
    if kind == "votes":
        return " ".join([f"V{event[1]}", *(f"{v}>{t}" for v, t, _ in event[2])])
    if kind == "dawn":
        return f"D{event[1]} killed {_or_none(event[2])}"
    if kind == "out":
        return f"out {_or_none(event[2])}"
    return f"end {event[1]}"


def _or_none(player: int | None) -> str:
    return "none" if player is None else str(player)


def _compact_prompt(view: dict[str, Any]) -> str:
    if view["done"]:
        return "over"
    if view["player"] not in view["alive"]:
        return "dead"
    if not view["my_turn"]:
        return "wait"
    return " ".join([view["action"], *map(str, view["targets"])])
