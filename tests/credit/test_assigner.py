"""CreditAssigner end to end: the sample rows, targets, bad input, state, determinism and a subclass hook."""

import io
import math

import pytest
import torch

from maro_lightning.credit import BehaviourSample
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig
from maro_lightning.credit import Episode
from maro_lightning.credit import flatten


def test_samples_carry_every_field_in_flattening_order(mafia_round):
    episodes, values, q_values = mafia_round
    samples = CreditAssigner(CreditConfig(lam=0.5)).assign(episodes, values, q_values)
    assert len(samples) == 11 and all(isinstance(s, BehaviourSample) for s in samples)
    assert [(s.episode_id, s.player, s.turn) for s in samples] == [
        (e.episode_id, b.player, b.index) for e, b in flatten(episodes)
    ]
    villager = samples[3]  # E0 p1, second of three behaviours
    assert (villager.game, villager.seed, villager.role) == ("mafia", 0, "villager")
    assert (villager.step, villager.num_steps) == (1, 3)
    assert (villager.z, villager.success, villager.value, villager.q_value) == (-1.0, False, -0.5, -0.25)
    assert villager.utility == 0.25 and villager.reward == -0.125  # u = Q − V; r from the hand GAE
    assert villager.response == "p1 t1" and villager.valid and villager.prompt is None
    assert villager.prompt_ids is None and villager.response_ids is None and villager.old_logprobs is None


def test_scorer_fills_token_fields(mafia_round):
    sample = CreditAssigner().assign(*mafia_round)[0]
    sample.prompt_ids = torch.tensor([5, 6, 7])  # [P] int64
    sample.response_ids = torch.tensor([8, 9])  # [R] int64
    sample.old_logprobs = torch.tensor([-0.5, -1.5])  # [R] float32
    assert sample.response_ids.shape == sample.old_logprobs.shape


def test_utility_targets(mafia_round):
    episodes, values, q_values = mafia_round
    outcome = CreditAssigner(CreditConfig(lam=0.5)).assign(episodes, values, q_values)
    assert [s.utility_target for s in outcome] == [s.z for s in outcome]  # default: z (γ = 1, no shaping)
    lambda_return = CreditAssigner(CreditConfig(lam=0.5, utility_target="lambda_return"))
    # V_t + r_t with the hand GAE of test_advantages: .5 + .125, .25 + .75, 0 − .5625, −.5 − .125, ...
    expected = [0.625, 1.0, -0.5625, -0.625, -1.0, -1.0, -1.0, 0.75, 1.0, 0.75, 1.0]
    assert [s.utility_target for s in lambda_return.assign(episodes, values, q_values)] == expected


def test_missing_estimates_are_zero(mafia_round):
    episodes, _, _ = mafia_round
    samples = CreditAssigner(CreditConfig(lam=0.5, normalize_per_role=False)).assign(episodes)
    # V = Q = 0: u = 0, δ = z only on the last behaviour, r_t = λ^{T−t} z; A = .5·r.
    assert [s.reward for s in samples[:5]] == [0.5, 1.0, -0.25, -0.5, -1.0]
    assert [s.advantage for s in samples[:2]] == [0.25, 0.5]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_utilities_are_refused_with_the_behaviour_named(mafia_round, bad):
    episodes, values, q_values = mafia_round
    q_values[7] = bad
    with pytest.raises(ValueError, match=r"q_values\[7\] is (nan|inf) \(episode mafia/1, player 1, turn 1\)"):
        CreditAssigner().assign(episodes, values, q_values)


def test_estimates_of_the_wrong_shape_are_refused(mafia_round):
    episodes, values, q_values = mafia_round
    with pytest.raises(ValueError, match=r"values has shape \(10,\), expected \(11,\).*flatten"):
        CreditAssigner().assign(episodes, values[:10], q_values)
    with pytest.raises(ValueError, match=r"shape \(11, 1\)"):
        CreditAssigner().assign(episodes, values, q_values[:, None])


def test_empty_round_returns_nothing_and_keeps_the_state(mafia_round, make_episode):
    assigner = CreditAssigner(CreditConfig(mode="role_baseline"))
    assigner.assign(mafia_round[0])
    before = assigner.state_dict()
    assert assigner.assign([]) == []
    assert assigner.assign([make_episode("mafia", 5, {0: ("mafia", 1.0, True, 0)})]) == []  # no behaviour
    assert assigner.state_dict() == before
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(0,\)"):
        assigner.assign([], torch.zeros(2))


def test_config_is_validated():
    for bad in ({"lam": 1.5}, {"gamma": 0.0}, {"alpha": -0.1}, {"window": 0}, {"ema_decay": 1.0}):
        with pytest.raises(ValueError, match="CreditConfig"):
            CreditConfig(**bad)
    with pytest.raises(ValueError, match="w_min <= 1 <= w_max"):
        CreditConfig(weight_clip=(1.5, 3.0))
    with pytest.raises(ValueError, match="utility_target"):
        CreditConfig(utility_target="z")


def test_determinism(mafia_round):
    config = CreditConfig(weighting="role_success", window=2)
    runs = []
    for _ in range(2):
        assigner = CreditAssigner(config)
        runs.append([assigner.assign(*mafia_round), assigner.assign(*mafia_round), assigner.state_dict()])
    assert runs[0] == runs[1]


def test_state_round_trips_through_a_checkpoint(mafia_round):
    episodes, values, q_values = mafia_round
    config = CreditConfig(mode="role_baseline", weighting="role", window=3, ema_decay=0.5)
    original = CreditAssigner(config)
    original.assign(episodes[:1], values[:6], q_values[:6])
    original.assign(episodes[1:], values[6:], q_values[6:])
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = CreditAssigner(config)
    restored.load_state_dict(torch.load(buffer, weights_only=True))  # plain lists: no pickled classes
    assert restored.baselines == original.baselines
    assert restored.assign(episodes, values, q_values) == original.assign(episodes, values, q_values)
    assert restored.state_dict() == original.state_dict()


def test_state_of_another_version_is_refused():
    with pytest.raises(ValueError, match="state version"):
        CreditAssigner().load_state_dict({"version": 99, "baselines": [], "counts": []})


def test_metrics_name_cells_and_baselines(mafia_round):
    assigner = CreditAssigner(CreditConfig(weighting="role_success", window=1))
    assigner.assign(*mafia_round)
    metrics = assigner.metrics()
    assert metrics["count/mafia/villager/failure"] == 3.0
    assert metrics["weight/mafia/villager/failure"] == pytest.approx(11 / 18)
    assert metrics["baseline/mafia/mafia"] == pytest.approx(0.0)  # .95·0 + .05·mean(+1, −1)
    assert all(isinstance(v, float) for v in metrics.values())


class InvalidPenalty(CreditAssigner):
    """Shapes the rewards from each turn's info: −0.25 for every invalid attempt."""

    def behaviour_rewards(self, episode: Episode, player: int) -> torch.Tensor:
        rewards = super().behaviour_rewards(episode, player)  # [T]: z on the last behaviour
        invalid = [float("invalid_reason" in b.info) for b in episode.behaviours[player]]
        return rewards - 0.25 * torch.tensor(invalid, dtype=torch.float64)


def test_a_subclass_hook_shapes_the_samples(make_episode):
    # E0 of the canonical round, but the villager's second behaviour is an invalid attempt.
    agents = {0: ("mafia", 1.0, True, 2), 1: ("villager", -1.0, False, 3), 2: ("doctor", -1.0, False, 1)}
    episode = make_episode("mafia", 0, agents, infos={(1, 1): {"invalid_reason": "no such player"}})
    config = CreditConfig(lam=1.0, alpha=1.0, normalize_per_role=False)
    plain = CreditAssigner(config).assign([episode])
    shaped = InvalidPenalty(config).assign([episode])
    # V = 0, λ = γ = 1: r_t is the return-to-go. Villager ρ = (0, −.25, −1): r = (−1.25, −1.25, −1) instead of
    # (−1, −1, −1); nobody else changes.
    assert [s.reward for s in plain] == [1.0, 1.0, -1.0, -1.0, -1.0, -1.0]
    assert [s.reward for s in shaped] == [1.0, 1.0, -1.25, -1.25, -1.0, -1.0]
    assert [s.advantage for s in shaped] == [s.reward for s in shaped]
    # The baselines see R_i = Σ ρ = −1.25 too: an outcome-mode assigner with the same hook agrees.
    outcome = InvalidPenalty(CreditConfig(mode="outcome")).assign([episode])
    # Agents' R: 1, −1.25, −1; mean −.41666…; villager −1.25 + 1.25/3 = −5/6.
    assert outcome[2].advantage == pytest.approx(-1.25 - (1.0 - 1.25 - 1.0) / 3)


def test_a_hook_returning_the_wrong_shape_is_named(mafia_round):
    class Broken(CreditAssigner):
        def behaviour_rewards(self, episode, player):
            return torch.zeros(1, dtype=torch.float64)

    with pytest.raises(ValueError, match=r"behaviour_rewards\(episode mafia/0, player 0\) returned \(1,\)"):
        Broken().assign(*mafia_round)
