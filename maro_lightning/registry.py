"""One registry type for every named choice (games, scripted agents, advantage and weighting modes):
named choices live in registries, selectable from configs, not in if-chains (docs/design.md#conventions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic
from typing import TypeVar

T = TypeVar("T")
D = TypeVar("D")


class Registry(Generic[T]):
    """Items of one kind by name; lookups of unknown names fail with the list of valid ones.

    Args:
        kind: what the items are, for error messages ("game", "advantage mode", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def decorator(self, name: str, wrap: Callable[[D], T] | None = None) -> Callable[[D], D]:
        """A decorator registering what it decorates (through ``wrap`` when the stored item differs)."""

        def add(obj: D) -> D:
            self.add(name, wrap(obj) if wrap is not None else obj)  # type: ignore[arg-type]
            return obj

        return add

    def remove(self, name: str) -> T:
        """Unregister ``name`` (a test's or a plugin's temporary entry); returns the item."""
        return self._items.pop(name)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names()) or '(none)'}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
