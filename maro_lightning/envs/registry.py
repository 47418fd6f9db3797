"""Registries of games and scripted agents: named choices live here, not in if-chains (DESIGN §6)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import SocialEnv
from maro_lightning.registry import Registry

GAMES: Registry[type[SocialEnv]] = Registry("game")
_AGENTS: dict[str, Registry[Callable[..., ScriptedAgent]]] = {}  # game -> its scripted agents
E = TypeVar("E", bound=type[SocialEnv])
A = TypeVar("A", bound=Callable[..., ScriptedAgent])


def register_game(cls: E) -> E:
    """Class decorator: make ``cls`` available as ``make(cls.name)``."""
    GAMES.add(cls.name, cls)
    return cls


def register_agent(game: str, name: str) -> Callable[[A], A]:
    """Decorator: make a scripted-agent factory available as ``agent(name, game=game)``."""
    return _agents(game).decorator(name)


def names() -> list[str]:
    """Names of the registered games."""
    return GAMES.names()


def make(name: str, **options: Any) -> SocialEnv:
    """A new env of game ``name``; ``options`` are the game's constructor options (see its docstring)."""
    cls = GAMES.get(name)
    _check_options(cls, name, options)
    return cls(**options)


def agent_names(game: str) -> list[str]:
    """Names of the scripted agents of ``game``."""
    GAMES.get(game)
    return _agents(game).names()


def agent(name: str, *, game: str, **options: Any) -> ScriptedAgent:
    """A new scripted agent ``name`` for ``game``."""
    factory = _agents(game).get(name)
    _check_options(factory, name, options)
    return factory(**options)


def _agents(game: str) -> Registry[Callable[..., ScriptedAgent]]:
    return _AGENTS.setdefault(game, Registry(f"{game} agent"))


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
