"""The ``SocialEnv`` contract (docs/design.md#environments) and the machinery every game shares.

A game subclasses :class:`SocialEnv` and writes only its rules: set-up, whose turn it is, how a tag
becomes an :class:`Action`, what an action does, the rewards, and what each player may see
(:meth:`SocialEnv.view`). The base class owns the text protocol, the invalid-action policy of docs/games.md,
the turn log, and API-misuse checks, so that no game can get them subtly different.
"""

from __future__ import annotations

import random
from abc import ABC
from abc import abstractmethod
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import ClassVar
from typing import Literal

from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import clean_text
from maro_lightning.envs.parsing import find_tags
from maro_lightning.envs.parsing import public_text
from maro_lightning.envs.parsing import remove_spans
from maro_lightning.envs.parsing import select_tag
from maro_lightning.envs.parsing import strip_think
from maro_lightning.envs.parsing import truncate

# SPIRAL-style shaping for a forfeit (Liu et al. 2025, arXiv 2506.24119): the offender gets −1.5, the others +0.5.
FORFEIT_PENALTY = -1.5
FORFEIT_BONUS = 0.5


class EnvMisuseError(RuntimeError):
    """The caller broke the env's API (acting out of turn, after the end, before reset): a bug, not a bad move."""


@dataclass(frozen=True)
class Action:
    """A parsed action: ``kind`` is the tag name (or ``"talk"``), ``value`` its argument, already validated."""

    kind: str
    value: Any = None


@dataclass(frozen=True)
class Turn:
    """One behaviour: a single call of :meth:`SocialEnv.step`, valid or not (a logged record: frozen).

    ``raw`` is the model's text verbatim (private: it keeps ``<think>``); ``public`` is what the other
    players allowed to see it were shown ("" for an invalid attempt); ``action`` is the canonical
    form of what was applied (a default action after too many invalid attempts, ``None`` if nothing).
    ``info`` holds the game's features of the behaviour (offer value, vote correctness, ...), plus
    ``invalid_reason`` for invalid attempts and ``defaulted`` when the game chose the action.
    """

    index: int
    player: int
    role: str
    phase: str
    raw: str
    public: str
    action: str | None
    valid: bool
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The end of a game: per-player reward and success, the roles, and the game's metrics (floats)."""

    rewards: dict[int, float]
    success: dict[int, bool]
    roles: dict[int, str]
    metrics: dict[str, float]


class SocialEnv(ABC):
    """A multi-agent text game. Subclasses set ``name``, ``tags`` and ``talk_phases`` and write the rules.

    Args:
        obs_format: ``"full"`` (a complete natural-language prompt) or ``"compact"`` (a terse line for
            small models trained from scratch; same information).
        max_retries: how many times a player who sent an invalid action is re-prompted before the
            invalid-action policy applies.
        on_invalid: ``"default"`` (the game's default action: talk / pass / random legal target) or
            ``"forfeit"`` (the offender loses: −1.5, every other player +0.5, SPIRAL-style).
        strict: with several action tags in one message, ``True`` makes it invalid, ``False`` takes the last.
        max_public_chars: talk shown to others is cut to this many characters.
    """

    name: ClassVar[str]
    tags: ClassVar[tuple[str, ...]]  # the action tag names this game reads
    hidden_roles: ClassVar[bool] = False  # True when players do not know each other's roles (Mafia)
    agreement_metric: ClassVar[str | None] = None  # the outcome metric that is 1 when the players agreed

    def __init__(
        self,
        *,
        obs_format: Literal["full", "compact"] = "full",
        max_retries: int = 1,
        on_invalid: Literal["default", "forfeit"] = "default",
        strict: bool = True,
        max_public_chars: int = 300,
    ) -> None:
        _check_choice("obs_format", obs_format, ("full", "compact"))
        _check_choice("on_invalid", on_invalid, ("default", "forfeit"))
        if max_retries < 0 or max_public_chars < 0:
            raise ValueError(f"max_retries and max_public_chars must be >= 0, got {max_retries}, {max_public_chars}")
        self.obs_format = obs_format
        self.max_retries = max_retries
        self.on_invalid = on_invalid
        self.strict = strict
        self.max_public_chars = max_public_chars
        self._rng: random.Random | None = None

    # ----------------------------------------------------------------------------------------- public API
    def reset(self, seed: int) -> None:
        """Start a new game. All randomness comes from a private ``random.Random(seed)``."""
        self.seed = seed
        self._rng = random.Random(seed)
        self.turns: list[Turn] = []
        self._retries: dict[int, tuple[int, str]] = {}  # player -> (invalid attempts this turn, last reason)
        self._forfeited: int | None = None
        self._setup(self._rng)

    @property
    @abstractmethod
    def roles(self) -> dict[int, str]:
        """Player id -> role, fixed at reset."""

    @property
    def done(self) -> bool:
        self._require_reset()
        return self._forfeited is not None or self._finished()

    def to_act(self) -> list[int]:
        """Players who must act now: [] when done; several during simultaneous votes."""
        return [] if self.done else self._to_act()

    def observation(self, player: int) -> str:
        """The prompt for ``player``: everything it may know and nothing more, with the legal actions."""
        self._check_player(player)
        view = self.view(player)
        text = self._render_compact(view) if self.obs_format == "compact" else self._render_full(view)
        if player in self._retries:
            text += f"\nYour previous message was invalid ({self._retries[player][1]}). Try again."
        return text

    def step(self, player: int, text: str) -> None:
        """Apply ``player``'s raw text. Invalid actions are handled by the game's policy, never raised."""
        self._check_can_act(player, text)
        text = clean_text(text)  # no lone surrogate reaches a prompt, a tokenizer or a saved round
        public, _private = strip_think(text)
        self._play(player, text, public)
        self._after_step()

    def outcome(self) -> Outcome:
        """Rewards, success, roles and metrics. Valid only when the game is done."""
        if not self.done:
            raise EnvMisuseError(f"{self.name}: outcome() called before the game is done")
        if self._forfeited is not None:
            rewards = {p: FORFEIT_PENALTY if p == self._forfeited else FORFEIT_BONUS for p in self.roles}
            success = {p: p != self._forfeited for p in self.roles}
        else:
            rewards, success = self._rewards()
        metrics = {**self._metrics(), **self._invalid_metrics()}
        return Outcome(rewards=rewards, success=success, roles=dict(self.roles), metrics=metrics)

    # --------------------------------------------------------------------------- what a game implements
    @abstractmethod
    def _setup(self, rng: random.Random) -> None:
        """Deal roles and private information for a new game."""

    @abstractmethod
    def _finished(self) -> bool: ...

    @abstractmethod
    def _to_act(self) -> list[int]: ...

    @abstractmethod
    def _phase(self) -> str:
        """Name of the current phase (e.g. "bargain", "night", "day-talk", "day-vote")."""

    @abstractmethod
    def _parse(self, player: int, tag_name: str | None, arg: str | None) -> Action:
        """Turn the selected tag (None = no tag: talk) into a legal Action, or raise InvalidAction."""

    @abstractmethod
    def _apply(self, player: int, action: Action, talk: str) -> dict[str, Any]:
        """Change the state; return the turn's ``info`` features."""

    @abstractmethod
    def _default_action(self, player: int) -> Action: ...

    @abstractmethod
    def _render_action(self, action: Action) -> str:
        """Canonical public text of an action ("" for talk)."""

    @abstractmethod
    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]: ...

    @abstractmethod
    def _metrics(self) -> dict[str, float]: ...

    @abstractmethod
    def view(self, player: int) -> dict[str, Any]:
        """Everything ``player`` may know now, as plain data. Observations and scripted agents read only this."""

    @abstractmethod
    def _render_full(self, view: dict[str, Any]) -> str: ...

    @abstractmethod
    def _render_compact(self, view: dict[str, Any]) -> str: ...

    def _after_step(self) -> None:
        """Called after every step, once the turn is logged: a game whose phase resolves on a step can add what
        became known (a kill, a save) to the turns of that phase here. Nothing by default."""
        return None

    # ------------------------------------------------------------------------------------------ internals
    def _play(self, player: int, text: str, public: str) -> None:
        """Apply one turn and log it: ``text`` is the cleaned raw text, ``public`` the part outside ``<think>``.
        The shared tag protocol: read the action tag, apply it, or apply the invalid-action policy. An adapter of
        another library's games (envs/textarena_env.py) overrides this to let that library read the text."""
        phase = self._phase()
        try:
            action, talk = self._read(player, public)
        except InvalidAction as err:
            self._handle_invalid(player, text, phase, str(err))
        else:
            self._retries.pop(player, None)
            self._commit(player, text, phase, action, talk, valid=True)

    def _read(self, player: int, public: str) -> tuple[Action, str]:
        tags = find_tags(public, self.tags)
        tag = select_tag(tags, strict=self.strict)
        talk = truncate(public_text(remove_spans(public, [t.span for t in tags])), self.max_public_chars)
        action = self._parse(player, tag.name if tag else None, tag.arg if tag else None)
        return action, talk

    def _handle_invalid(self, player: int, text: str, phase: str, reason: str) -> None:
        attempts = self._retries.get(player, (0, ""))[0] + 1
        if attempts <= self.max_retries:
            self._retries[player] = (attempts, reason)
            self._log(player, text, phase, "", None, valid=False, info={"invalid_reason": reason})
            return
        self._retries.pop(player, None)
        if self.on_invalid == "forfeit":
            self._forfeited = player
            self._log(player, text, phase, "", None, valid=False, info={"invalid_reason": reason, "forfeit": True})
            return
        extra = {"invalid_reason": reason, "defaulted": True}
        self._commit(player, text, phase, self._default_action(player), "", valid=False, extra=extra)

    def _commit(self, player, text, phase, action, talk, *, valid, extra=None) -> None:
        info = self._apply(player, action, talk)
        public = " ".join(part for part in (talk, self._render_action(action)) if part)
        self._log(player, text, phase, public, self._render_action(action) or None, valid, {**info, **(extra or {})})

    def _log(self, player, raw, phase, public, action, valid, info) -> None:
        turn = Turn(len(self.turns), player, self.roles[player], phase, raw, public, action, valid, info)
        self.turns.append(turn)

    def _invalid_metrics(self) -> dict[str, float]:
        attempts = len(self.turns)
        invalid = sum(not t.valid for t in self.turns)
        return {"invalid_rate": invalid / attempts if attempts else 0.0, "turns": float(attempts)}

    def _require_reset(self) -> None:
        if self._rng is None:
            raise EnvMisuseError(f"{self.name}: call reset(seed) first")

    def _check_player(self, player: int) -> None:
        self._require_reset()
        if player not in self.roles:
            raise EnvMisuseError(f"{self.name}: no player {player!r}; players are {sorted(self.roles)}")

    def _check_can_act(self, player: int, text: str) -> None:
        self._check_player(player)
        if self.done:
            raise EnvMisuseError(f"{self.name}: player {player} acted after the game ended")
        if player not in self._to_act():
            raise EnvMisuseError(f"{self.name}: it is not player {player}'s turn (to act: {self._to_act()})")
        if not isinstance(text, str):
            raise TypeError(f"{self.name}: step() takes the model's text as str, got {type(text).__name__}")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option}={value!r} is not one of {', '.join(choices)}")
