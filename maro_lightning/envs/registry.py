"""Registries of games and scripted agents: named choices live here, not in if-chains (docs/design.md#conventions)."""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import SocialEnv
from maro_lightning.registry import Registry

GAMES: Registry[type[SocialEnv]] = Registry("game")
# prefix -> builds the class of the game "prefix:ID" from ID (another library's games, e.g. textarena:KuhnPoker-v0)
FAMILIES: Registry[Callable[[str], type[SocialEnv]]] = Registry("game family")
_AGENTS: dict[str, Registry[Callable[..., ScriptedAgent]]] = {}  # game -> its scripted agents
E = TypeVar("E", bound=type[SocialEnv])
A = TypeVar("A", bound=Callable[..., ScriptedAgent])
F = TypeVar("F", bound=Callable[[str], type[SocialEnv]])


def register_game(cls: E) -> E:
    """Class decorator: make ``cls`` available as ``make(cls.name)``."""
    GAMES.add(cls.name, cls)
    return cls


def register_family(prefix: str) -> Callable[[F], F]:
    """Decorator: ``build(ID)`` returns the class of the game named ``prefix:ID``, for every ID of another library
    (``textarena:KuhnPoker-v0``). A family's games are built on first use, and are not listed by :func:`names`."""
    return FAMILIES.decorator(prefix)


def game_class(name: str) -> type[SocialEnv]:
    """The class of game ``name``: a registered game, or a game of a registered family (``prefix:ID``)."""
    prefix, colon, ident = name.partition(":")
    if colon and prefix in FAMILIES:
        return _family_game(prefix, ident)
    return GAMES.get(name)


def is_game(name: str) -> bool:
    """Whether ``name`` is a registered game or names one of a family (checked when it is built)."""
    prefix, colon, _ = name.partition(":")
    return name in GAMES or (bool(colon) and prefix in FAMILIES)


@functools.cache
def _family_game(prefix: str, ident: str) -> type[SocialEnv]:
    return FAMILIES.get(prefix)(ident)


def register_agent(game: str, name: str) -> Callable[[A], A]:
    """Decorator: make a scripted-agent factory available as ``agent(name, game=game)``."""
    return _agents(game).decorator(name)


def names() -> list[str]:
    """Names of the registered games (not the games of families: ``textarena:ID`` is any TextArena id)."""
    return GAMES.names()


def make(name: str, **options: Any) -> SocialEnv:
    """A new env of game ``name``; ``options`` are the game's constructor options (see its docstring)."""
    cls = game_class(name)
    _check_options(cls, name, options)
    _check_values(cls, name, options)
    return cls(**options)


def agent_names(game: str) -> list[str]:
    """Names of the scripted agents of ``game``."""
    game_class(game)
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


MAX_OPTION_INT = 10**9  # larger whole-number options are typos or attacks (prices near 1e308 overflow the maths)


def _check_values(cls: type, name: str, options: dict[str, Any]) -> None:
    """Each option's value against its annotation: whole numbers for ``int`` (not 2.5, not True), finite
    numbers for ``float`` (not inf or nan), element by element in tuples; sizes up to :data:`MAX_OPTION_INT`.

    Raises:
        TypeError: a value of the wrong kind; ValueError: a non-finite or absurdly large one.
    """
    hints = _init_hints(cls)
    for option, value in options.items():
        _check_value(f"{name} option {option}", hints.get(option), value)


@functools.cache
def _init_hints(cls: type) -> dict[str, Any]:
    """The annotations of ``cls.__init__`` and its bases' (envs.make runs for every game of every round)."""
    hints: dict[str, Any] = {}
    for c in reversed(inspect.getmro(cls)):
        if "__init__" in vars(c):
            hints.update(typing.get_type_hints(c.__init__))
    return hints


def _check_value(where: str, hint: Any, value: Any) -> None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (types.UnionType, typing.Union) and value is not None and len(args) == 1:
        hint, args = args[0], list(typing.get_args(args[0]))  # X | None with a value: check it as X
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where} must be a whole number, got {value!r}")
        if abs(value) > MAX_OPTION_INT:
            raise ValueError(f"{where}={value} is absurdly large (at most {MAX_OPTION_INT})")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value) or abs(value) > MAX_OPTION_INT:
            raise ValueError(f"{where} must be a finite number of at most {MAX_OPTION_INT}, got {value!r}")
    elif hint is bool and not isinstance(value, bool):
        raise TypeError(f"{where} must be true or false, got {value!r}")
    elif typing.get_origin(hint) is tuple and args and Ellipsis not in args:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise TypeError(f"{where} must be a list of {len(args)} values, got {value!r}")
        for index, (element_hint, element) in enumerate(zip(args, value, strict=True)):
            _check_value(f"{where}[{index}]", element_hint, element)


@functools.cache
def _keyword_names(target: Callable[..., Any]) -> frozenset[str]:
    """Keyword parameters of ``target`` (for a class: of its __init__, and of its bases' __init__ for as long as
    each passes ``**kwargs`` on); cached, as ``inspect.signature`` took most of ``envs.make``'s time, and every game
    of every round makes an env."""
    funcs = _init_chain(target) if inspect.isclass(target) else [target]
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = {p.name for f in funcs for p in inspect.signature(f).parameters.values() if p.kind in kinds}
    return frozenset(names - {"self"})


def _init_chain(cls: type) -> list[Callable[..., Any]]:
    chain = []
    for c in inspect.getmro(cls):
        if "__init__" in vars(c):
            chain.append(c.__init__)
            kinds = {p.kind for p in inspect.signature(c.__init__).parameters.values()}
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                break
    return chain
