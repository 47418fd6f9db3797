"""Registries of games and scripted agents: named choices live here, not in if-chains (DESIGN §6)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import SocialEnv

_GAMES: dict[str, type[SocialEnv]] = {}
_AGENTS: dict[str, dict[str, Callable[..., ScriptedAgent]]] = {}
E = TypeVar("E", bound=type[SocialEnv])
A = TypeVar("A", bound=Callable[..., ScriptedAgent])


def register_game(cls: E) -> E:
    """Class decorator: make ``cls`` available as ``make(cls.name)``."""
    if cls.name in _GAMES:
        raise ValueError(f"game {cls.name!r} is already registered")
    _GAMES[cls.name] = cls
    return cls


def register_agent(game: str, name: str) -> Callable[[A], A]:
    """Decorator: make a scripted-agent factory available as ``agent(name, game=game)``."""

    def add(factory: A) -> A:
        table = _AGENTS.setdefault(game, {})
        if name in table:
            raise ValueError(f"agent {name!r} is already registered for {game!r}")
        table[name] = factory
        return factory

    return add


def names() -> list[str]:
    """Names of the registered games."""
    return sorted(_GAMES)


def make(name: str, **options: Any) -> SocialEnv:
    """A new env of game ``name``; ``options`` are the game's constructor options (see its docstring)."""
    cls = _lookup(_GAMES, name, "game")
    _check_options(cls, name, options)
    return cls(**options)


def agent_names(game: str) -> list[str]:
    """Names of the scripted agents of ``game``."""
    _lookup(_GAMES, game, "game")
    return sorted(_AGENTS.get(game, {}))


def agent(name: str, *, game: str, **options: Any) -> ScriptedAgent:
    """A new scripted agent ``name`` for ``game``."""
    factory = _lookup(_AGENTS.get(game, {}), name, f"{game} agent")
    _check_options(factory, name, options)
    return factory(**options)


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table)) or '(none)'}")
    return table[name]


def _check_options(target: Callable[..., Any], name: str, options: dict[str, Any]) -> None:
    accepted = _keyword_names(target)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{name!r} has no option {', '.join(unknown)}; its options are: {', '.join(sorted(accepted))}")


def _keyword_names(target: Callable[..., Any]) -> set[str]:
    """Keyword parameters of ``target`` (for a class, of its __init__ and its bases' __init__)."""
    if inspect.isclass(target):
        funcs = [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)]
    else:
        funcs = [target]
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name for f in funcs for p in inspect.signature(f).parameters.values() if p.kind in kinds} - {"self"}
