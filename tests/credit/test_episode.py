"""The data model: Episode.from_env on real Bazaar games, the flattening order, and what Episode refuses."""

import math
from dataclasses import asdict

import pytest

from maro_lightning import envs
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import Episode
from maro_lightning.credit import flatten
from maro_lightning.envs import Outcome
from maro_lightning.envs import ScriptedAgent
from maro_lightning.envs.bazaar import BUYER
from maro_lightning.envs.bazaar import SELLER


class Stumbler(ScriptedAgent):
    """Sends one unparseable offer, then plays like the linear agent."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = envs.agent("linear", game="bazaar")
        self.stumbled = False

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self.inner.reset(seed)
        self.stumbled = False

    def act(self, view):
        if not self.stumbled:
            self.stumbled = True
            return "<think>hmm</think>[Offer: $lots]"
        return self.inner.act(view)


def _played(seed=3):
    """A finished Bazaar game (buyer stumbles once) and the prompt of every turn, keyed by turn index."""
    env = envs.make("bazaar", obs_format="compact")
    prompts: dict[int, str] = {}

    def record(player):  # the next logged turn gets index len(env.turns)
        prompts[len(env.turns)] = env.observation(player)

    agents = {SELLER: envs.agent("linear", game="bazaar"), BUYER: Stumbler()}
    envs.play_episode(env, agents, seed, before_step=record)
    return env, prompts


def test_from_env_reads_roles_outcome_turns_and_prompts():
    env, prompts = _played()
    episode = Episode.from_env(env, prompts=prompts)
    assert (episode.game, episode.seed, episode.episode_id) == ("bazaar", 3, "bazaar/3")
    assert episode.roles == {SELLER: "seller", BUYER: "buyer"} and episode.outcome == env.outcome()
    by_player = [t.index for p in (SELLER, BUYER) for t in env.turns if t.player == p]
    assert [b.index for b in episode.flat()] == by_player
    assert episode.num_behaviours == len(env.turns)
    for b in episode.flat():
        turn = env.turns[b.index]
        assert {name: getattr(b, name) for name in asdict(turn)} == asdict(turn)  # every field of the turn
        assert b.prompt == prompts[b.index]


def test_invalid_attempts_are_behaviours_with_credit():
    env, prompts = _played()
    episode = Episode.from_env(env, policy_players={BUYER}, prompts=prompts)
    assert list(episode.behaviours) == [BUYER]  # only the policy player's behaviours become samples
    first = episode.behaviours[BUYER][0]
    assert not first.valid and "invalid_reason" in first.info and first.raw.startswith("<think>")
    assert "previous message was invalid" in episode.behaviours[BUYER][1].prompt  # the re-prompt
    samples = CreditAssigner().assign([episode])
    assert len(samples) == episode.num_behaviours and not samples[0].valid
    assert samples[0].response == first.raw and samples[0].z == env.outcome().rewards[BUYER]


def test_from_env_copies_info():
    env, _ = _played()
    episode = Episode.from_env(env)
    env.turns[0].info["offer"] = -1
    assert episode.flat()[0].info["offer"] != -1


def test_from_env_refuses_an_unfinished_game_and_unknown_players():
    env = envs.make("bazaar")
    env.reset(0)
    env.step(SELLER, "[Offer: $100]")
    with pytest.raises(ValueError, match="not finished"):
        Episode.from_env(env)
    env, _ = _played()
    with pytest.raises(ValueError, match=r"policy_players \[7\]"):
        Episode.from_env(env, policy_players={1, 7})


def test_flattening_order_is_episode_then_player_then_play(make_episode):
    # Players given out of order; their behaviours interleave in play (round-robin indices).
    episode = make_episode("mafia", 0, {2: ("doctor", 1.0, True, 2), 0: ("mafia", -1.0, False, 2)})
    other = make_episode("mafia", 1, {1: ("villager", 1.0, True, 1)})
    order = [(e.seed, b.player, b.index) for e, b in flatten([episode, other])]
    assert order == [(0, 0, 1), (0, 0, 3), (0, 2, 0), (0, 2, 2), (1, 1, 0)]


def test_players_without_behaviours_are_left_out(make_episode):
    env, _ = _played()
    episode = Episode.from_env(env, policy_players=set())
    assert episode.behaviours == {} and episode.num_behaviours == 0


def _outcome(rewards, success=None):
    success = {p: True for p in rewards} if success is None else success
    return Outcome(rewards=rewards, success=success, roles={}, metrics={})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roles": {0: "buyer"}}, "disagrees with roles"),
        ({"roles": {1: "seller"}}, "not in roles"),
        ({"outcome": _outcome({})}, "finite reward"),
        ({"outcome": _outcome({0: math.nan})}, "finite reward"),
        ({"outcome": _outcome({0: 1.0}, success={})}, "success flag"),
        ({"reverse": True}, "play order"),
    ],
)
def test_episode_rejects_inconsistent_input(make_episode, change, message):
    good = make_episode("bazaar", 0, {0: ("seller", 1.0, True, 2)})
    behaviours = list(good.behaviours[0])
    if change.pop("reverse", False):
        behaviours.reverse()
    fields = {"roles": good.roles, "outcome": good.outcome, **change}
    with pytest.raises(ValueError, match=message):
        Episode("bazaar", 0, fields["roles"], fields["outcome"], {0: behaviours})


@pytest.mark.parametrize("game", envs.names())
def test_every_game_gives_one_sample_per_policy_turn(game):
    env = envs.make(game, obs_format="compact")
    episodes = []
    for seed in range(4):
        env.reset(seed)  # to learn the player ids; play_episode resets again with the same seed
        envs.play_episode(env, {p: envs.agent("random", game=game) for p in env.roles}, seed)
        episodes.append(Episode.from_env(env, policy_players={0}))
        assert episodes[-1].num_behaviours == sum(t.player == 0 for t in env.turns)
    samples = CreditAssigner().assign(episodes)
    assert len(samples) == sum(e.num_behaviours for e in episodes)
    assert [s.z for s in samples] == [e.outcome.rewards[0] for e in episodes for _ in range(e.num_behaviours)]
    assert sum(s.weight for s in samples) / len(samples) == pytest.approx(1.0)
