"""Scripted agents: opponents of graded strength that act through the same text interface as a model.

An agent reads only its player's :meth:`SocialEnv.view` (the same information as its observation) and
answers with text, which the env parses like any model output.
"""

from __future__ import annotations

import random
from abc import ABC
from abc import abstractmethod
from typing import Any


class ScriptedAgent(ABC):
    """Base of every scripted agent. Subclasses write :meth:`act`; randomness comes from ``self.rng``."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def reset(self, seed: int) -> None:
        """Start a new game with a private random stream."""
        self.rng = random.Random(seed)

    @abstractmethod
    def act(self, view: dict[str, Any]) -> str:
        """The text this agent sends, given its player's view."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
