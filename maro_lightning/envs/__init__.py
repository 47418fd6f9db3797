"""The social games (docs/design.md#environments, docs/games.md): the ``SocialEnv`` contract, registry, scripted agents.

env = envs.make("bazaar", obs_format="compact")   # or any TextArena id: envs.make("textarena:KuhnPoker-v0")
env.reset(seed=3)
while not env.done:
    for player in env.to_act():
        env.step(player, model(env.observation(player)))
env.outcome().rewards
"""

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.base import Action
from maro_lightning.envs.base import EnvMisuseError
from maro_lightning.envs.base import Outcome
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.base import Turn
from maro_lightning.envs.episode import play_episode
from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.registry import agent
from maro_lightning.envs.registry import agent_names
from maro_lightning.envs.registry import is_game
from maro_lightning.envs.registry import make
from maro_lightning.envs.registry import names
from maro_lightning.envs.registry import register_agent
from maro_lightning.envs.registry import register_game

__all__ = [
    "Action",
    "EnvMisuseError",
    "InvalidAction",
    "Outcome",
    "ScriptedAgent",
    "SocialEnv",
    "Turn",
    "agent",
    "agent_names",
    "is_game",
    "make",
    "names",
    "play_episode",
    "register_agent",
    "register_game",
]

# Importing a game's modules registers the game and its scripted agents.
from maro_lightning.envs import bazaar  # noqa: F401,E402
from maro_lightning.envs import bazaar_agents  # noqa: F401,E402
from maro_lightning.envs import deal  # noqa: F401,E402  (registers the game)
from maro_lightning.envs import mafia  # noqa: F401,E402  (registers the game)
from maro_lightning.envs import probe_agents  # noqa: F401,E402
from maro_lightning.envs import probes  # noqa: F401,E402  (the mechanism probes: probe_decisive, _skewed, _noisy)
from maro_lightning.envs import textarena_agents  # noqa: F401,E402
from maro_lightning.envs import textarena_env  # noqa: F401,E402  (the family textarena:ID; imports TextArena on use)
