"""MARO credit assignment (docs/design.md#formulation): finished games -> per-behaviour rewards, weights and advantages.

Plain torch, no Lightning: the module's scorer calls it once per rollout round.

    assigner = CreditAssigner(CreditConfig())                  # full MARO: M1 + M2 + M3
    episodes = [Episode.from_env(env, policy_players={0}, prompts=prompts) for env in envs]
    for episode, behaviour in flatten(episodes):               # the order of V, Q and the samples
        ...                                                    # tokenise prompt + raw, score V_t and Q_t
    samples = assigner.assign(episodes, values, q_values)      # list[BehaviourSample]

Importing the package registers the advantage modes ("maro", "outcome", "role_baseline") and the
weighting modes ("none", "role", "role_success").
"""

from maro_lightning.credit.advantages import AdvantageMode
from maro_lightning.credit.advantages import advantage_mode
from maro_lightning.credit.advantages import advantage_modes
from maro_lightning.credit.advantages import decomposed_rewards
from maro_lightning.credit.advantages import gae
from maro_lightning.credit.advantages import normalize_per_role
from maro_lightning.credit.advantages import register_advantage
from maro_lightning.credit.advantages import returns_to_go
from maro_lightning.credit.advantages import td_errors
from maro_lightning.credit.assigner import CreditAssigner
from maro_lightning.credit.assigner import CreditHooks
from maro_lightning.credit.config import CreditConfig
from maro_lightning.credit.episode import BehaviorSample
from maro_lightning.credit.episode import Behaviour
from maro_lightning.credit.episode import BehaviourSample
from maro_lightning.credit.episode import CreditBatch
from maro_lightning.credit.episode import Episode
from maro_lightning.credit.episode import flatten
from maro_lightning.credit.weights import RollingCounts
from maro_lightning.credit.weights import balance
from maro_lightning.credit.weights import register_weighting
from maro_lightning.credit.weights import weighting
from maro_lightning.credit.weights import weighting_modes

__all__ = [
    "AdvantageMode",
    "Behaviour",
    "BehaviourSample",
    "BehaviorSample",
    "CreditAssigner",
    "CreditHooks",
    "CreditBatch",
    "CreditConfig",
    "Episode",
    "RollingCounts",
    "advantage_mode",
    "advantage_modes",
    "balance",
    "decomposed_rewards",
    "flatten",
    "gae",
    "normalize_per_role",
    "register_advantage",
    "register_weighting",
    "returns_to_go",
    "td_errors",
    "weighting",
    "weighting_modes",
]
