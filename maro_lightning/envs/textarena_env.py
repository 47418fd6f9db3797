"""TextArena's games behind the ``SocialEnv`` contract: ``envs.make("textarena:KuhnPoker-v0")`` (docs/games.md).

TextArena (Guertler et al. 2025, https://github.com/LeonGuertler/TextArena; the optional extra ``textarena``) stays in
charge of its games: it parses the moves, applies its invalid-move rule, decides the rewards and what each player is
shown. The adapter translates: ``<think>`` is stripped first (shared with every game: ``SocialEnv.step``) and only the
public rest reaches TextArena; every call of TextArena's ``set_invalid_move`` becomes the turn's ``invalid_reason``;
each player's observation is the text TextArena renders for that player alone; TextArena's draws from Python's global
``random`` come from a stream private to the game and seeded by its seed, so a game is a function of its seed however
many games are played at once, and the caller's ``random`` is left as it was.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any
from typing import ClassVar
from typing import Literal

from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.parsing import truncate
from maro_lightning.envs.registry import register_family
from maro_lightning.errors import MissingExtraError

PREFIX = "textarena"
PHASE = "play"


def textarena() -> Any:
    """The ``textarena`` module, imported on first use (it takes seconds)."""
    try:
        import textarena as ta
    except ImportError:
        raise MissingExtraError(
            f'the {PREFIX}:ID games need TextArena, the optional extra: pip install "maro-lightning[textarena]"'
        ) from None
    return ta


@register_family(PREFIX)
def textarena_game(env_id: str) -> type[SocialEnv]:
    """The game class of TextArena's ``env_id`` (any id of ``textarena.make``, wrappers variants included)."""
    if env_id not in textarena().envs.registration.ENV_REGISTRY:
        raise ValueError(f"unknown TextArena id {env_id!r} in {PREFIX}:{env_id}; e.g. KuhnPoker-v0, TicTacToe-v0")
    return type(f"TextArena[{env_id}]", (TextArenaEnv,), {"name": f"{PREFIX}:{env_id}", "env_id": env_id})


class TextArenaEnv(SocialEnv):
    """One TextArena game, ``env_id`` (the subclass :func:`textarena_game` builds for each id sets it).

    Args:
        obs_format: ``"full"`` or ``"compact"``: the same text, TextArena's observation of the player (TextArena has
            one format; the options exist so that every game takes them).
        num_players: the players TextArena's ``reset`` is asked for (2 for its two-player games).
        textarena_kwargs: keyword arguments of ``textarena.make``, the game's own options laid over the id's
            (``{"max_rounds": 1}``: one hand of Kuhn Poker).
    """

    env_id: ClassVar[str]
    # TextArena reads and applies the moves itself (``_play``): the hooks of the shared tag protocol do not exist here.
    _parse = _apply = _default_action = _render_action = None  # type: ignore[assignment]

    def __init__(
        self,
        *,
        obs_format: Literal["full", "compact"] = "full",
        num_players: int = 2,
        textarena_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(obs_format=obs_format)
        self.num_players = num_players
        self.textarena_kwargs = dict(textarena_kwargs or {})
        textarena().make(self.env_id, **self.textarena_kwargs)  # unknown options fail now, not at the first reset

    # ------------------------------------------------------------------------------------------ set-up
    def _setup(self, rng: random.Random) -> None:
        self._game = textarena().make(self.env_id, **self.textarena_kwargs)  # new: TextArena's wrappers keep history
        self._random_state = rng.getstate()
        with self._private_random():
            self._game.reset(num_players=self.num_players, seed=self.seed)
        self._invalid: list[str] = []  # the reasons TextArena gave during the current step
        self._record_invalid_moves(self._game.state)
        self._renderer = _renderer(self._game)
        public = self._game.state.role_mapping
        self._roles = {p: str(info["role"]) for p, info in self._game.state.game_info.items()}
        self.hidden_roles = any(role != public.get(p) for p, role in self._roles.items())  # TextArena's secret roles
        self._messages: dict[int, list[tuple[int, str]]] = {p: [] for p in self._roles}
        self._shown: dict[int, str] = {}
        self._result: tuple[dict[int, float], dict[int, dict[str, Any]]] | None = None
        self._collect()

    @contextlib.contextmanager
    def _private_random(self) -> Iterator[None]:
        """This game's stream in the global ``random`` while TextArena runs (TextArena draws from it and reseeds it)."""
        outer = random.getstate()
        random.setstate(self._random_state)
        try:
            yield
        finally:
            self._random_state = random.getstate()
            random.setstate(outer)

    def _record_invalid_moves(self, state: Any) -> None:
        """Log the reason of every invalid move TextArena's rules declare (``state.set_invalid_move``)."""
        declare = state.set_invalid_move

        def record(*args: Any, **kwargs: Any) -> Any:
            self._invalid.append(str(kwargs.get("reason", args[0] if args else "")))
            return declare(*args, **kwargs)

        state.set_invalid_move = record

    # ------------------------------------------------------------------------------------------ rules
    @property
    def roles(self) -> dict[int, str]:
        return self._roles

    def _finished(self) -> bool:
        return bool(self._game.state.done)

    def _to_act(self) -> list[int]:
        return [self._game.state.current_player_id]

    def _phase(self) -> str:
        return PHASE

    def _play(self, player: int, text: str, public: str) -> None:
        """TextArena reads ``public`` by its rules; an invalid move is logged with TextArena's reasons."""
        self._invalid.clear()
        with self._private_random():
            try:
                self._game.step(public)
            except Exception as err:  # TextArena's own code failed on this text (TicTacToe's int() of 5000 digits)
                self._game.state.set_invalid_move(f"TextArena could not read it: {truncate(repr(err), 200)}")
                self._game.state.step()  # what TextArena's games do after an invalid move
        self._collect()
        if not self._invalid:
            self._log(player, text, PHASE, public, public, True, {})
            return
        info: dict[str, Any] = {"invalid_reason": "; ".join(self._invalid)}
        if self._game.state.game_info[player].get("invalid_move"):
            info["forfeit"] = True  # TextArena's rule ended this player's game (the retries were used up)
        self._log(player, text, PHASE, public, None, False, info)

    def _collect(self) -> None:
        """Move TextArena's new messages for every player into their observations (TextArena hands each player its
        messages once, when it is that player's turn; here any player's observation may be read at any time)."""
        pending = self._game.state.observations
        for player in self._roles:
            new, pending[player] = pending[player], []
            self._messages[player].extend((sender, message) for sender, message, _kind in new)
            self._shown[player] = self._renderer.observation(player, new)
        if self._game.state.done and self._result is None:
            self._result = self._game.close()

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        rewards = {p: float(self._result[0][p]) for p in self._roles}
        return rewards, {p: r > 0 for p, r in rewards.items()}

    def _metrics(self) -> dict[str, float]:
        rewards, info = self._result
        return {
            "draw": float(len(set(rewards.values())) == 1),
            "ended_by_invalid": float(any(i.get("invalid_move") for i in info.values())),
        }

    # ------------------------------------------------------------------------------------------ views
    def view(self, player: int) -> dict[str, Any]:
        """The player's TextArena observation and the messages it is made of, ``(sender, text)`` in order; sender
        ``-1`` is the game (``textarena.GAME_ID``), others are players' own words."""
        return {"player": player, "observation": self._shown[player], "messages": list(self._messages[player])}

    def _render_full(self, view: dict[str, Any]) -> str:
        return view["observation"]

    def _render_compact(self, view: dict[str, Any]) -> str:
        return view["observation"]


def _renderer(game: Any) -> Any:
    """The observation wrapper of a TextArena env (it renders a player's messages as that player's prompt); for a
    ``-raw`` id, which has none, TextArena's default one."""
    ta = textarena()
    layer = game
    while isinstance(layer, ta.Wrapper) and not isinstance(layer, ta.ObservationWrapper):
        layer = layer.env
    return layer if isinstance(layer, ta.ObservationWrapper) else ta.wrappers.LLMObservationWrapper(layer)
