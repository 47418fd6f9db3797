"""Agents shared by the env tests (imported as `players`: pytest puts this folder on sys.path)."""

from maro_lightning.envs import ScriptedAgent


class Thinker(ScriptedAgent):
    """Wraps an agent and prefixes every message with private reasoning that names its author:
    ``<think>SECRET-<player> my plan</think>``. No other player may ever see it."""

    def __init__(self, inner: ScriptedAgent, player: int) -> None:
        super().__init__()
        self.inner, self.player = inner, player

    def reset(self, seed: int) -> None:
        self.inner.reset(seed)

    def act(self, view):
        return f"<think>SECRET-{self.player} my plan</think>{self.inner.act(view)}"
