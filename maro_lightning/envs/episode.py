"""Play whole games between scripted agents: the loop behind ``maro play``, the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import EnvMisuseError
from maro_lightning.envs.base import Outcome
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.base import Turn

MAX_STEPS = 10_000  # far above any game's length: a bound that turns a rules bug into an error, not a hang


def play_episode(
    env: SocialEnv,
    agents: Mapping[int, ScriptedAgent],
    seed: int,
    *,
    on_turn: Callable[[Turn], None] | None = None,
    before_step: Callable[[int], None] | None = None,
) -> Outcome:
    """Reset ``env`` with ``seed`` and play it to the end with one agent per player.

    Agent ``p`` is reset with a seed derived from ``(seed, p)``, so an episode is a function of its seed.
    ``before_step(player)`` is called before each step (to capture the player's prompt, say) and
    ``on_turn(turn)`` with every :class:`Turn` as it is logged.
    """
    env.reset(seed)
    missing = sorted(set(env.roles) - set(agents))
    if missing:
        raise ValueError(f"{env.name}: no agent for players {missing}")
    for player, agent in agents.items():
        agent.reset(seed * 1009 + player)
    for _ in range(MAX_STEPS):
        if env.done:
            return env.outcome()
        for player in env.to_act():
            if player in env.to_act():  # an earlier vote in this sweep may have closed the phase
                if before_step is not None:
                    before_step(player)
                env.step(player, agents[player].act(env.view(player)))
                if on_turn is not None:
                    on_turn(env.turns[-1])
    raise EnvMisuseError(f"{env.name}: seed {seed} did not end within {MAX_STEPS} steps")
