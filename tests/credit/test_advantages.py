"""M1 decomposition, M3 utility, the advantage modes and their registry, by hand on the canonical round."""

import statistics

import pytest
import torch

from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig
from maro_lightning.credit import advantage_modes
from maro_lightning.credit import advantages
from maro_lightning.credit import gae
from maro_lightning.credit import normalize_per_role
from maro_lightning.credit import register_advantage
from maro_lightning.credit import returns_to_go
from maro_lightning.credit import td_errors

# Canonical round (conftest), λ = 0.5, γ = 1. Per agent, δ_t = V_{t+1} − V_t and δ_T = z − V_T:
#   E0 p0 mafia    V = .5, .25        z = +1: δ = .25−.5 = −.25, 1−.25 = .75
#   E0 p1 villager V = 0, −.5, −.25   z = −1: δ = −.5−0 = −.5, −.25+.5 = .25, −1+.25 = −.75
#   E0 p2 doctor   V = .5             z = −1: δ = −1−.5 = −1.5
#   E1 p0 mafia    V = .25            z = −1: δ = −1−.25 = −1.25
#   E1 p1 villager V = −.5, .5        z = +1: δ = .5+.5 = 1, 1−.5 = .5
#   E1 p2 doctor   V = 0, .5          z = +1: δ = .5−0 = .5, 1−.5 = .5
DELTAS = [-0.25, 0.75, -0.5, 0.25, -0.75, -1.5, -1.25, 1.0, 0.5, 0.5, 0.5]
# GAE backwards, r_t = δ_t + λ·r_{t+1}:
#   E0 p0: r2 = .75, r1 = −.25 + .5·.75 = .125
#   E0 p1: r3 = −.75, r2 = .25 + .5·(−.75) = −.125, r1 = −.5 + .5·(−.125) = −.5625
#   E1 p1: r2 = .5, r1 = 1 + .5·.5 = 1.25;   E1 p2: r2 = .5, r1 = .5 + .5·.5 = .75
REWARDS = [0.125, 0.75, -0.5625, -0.125, -0.75, -1.5, -1.25, 1.25, 0.5, 0.75, 0.5]
# u = Q − V row by row: .75−.5, .5−.25, −.5−0, −.25+.5, −1+.25, 0−.5, −.25−.25, 0+.5, .75−.5, .5−0, 1−.5
UTILITY = [0.25, 0.25, -0.5, 0.25, -0.75, -0.5, -0.5, 0.5, 0.25, 0.5, 0.5]
# A = .5·r + .5·u, e.g. row 2: .5·(−.5625 − .5) = −.53125; row 7: .5·(1.25 + .5) = .875
RAW_MARO = [0.1875, 0.5, -0.53125, 0.0625, -0.75, -1.0, -0.875, 0.875, 0.375, 0.625, 0.5]
ROLE_ROWS = {"mafia": [0, 1, 6], "villager": [2, 3, 4, 7, 8], "doctor": [5, 9, 10]}


def _batch(episodes, values, q_values, **config):
    return CreditAssigner(CreditConfig(**config)).build_batch(tuple(episodes), values, q_values)


def _advantages(episodes, values=None, q_values=None, **config):
    return [s.advantage for s in CreditAssigner(CreditConfig(**config)).assign(episodes, values, q_values)]


def _standardised(raw):
    """Per-role (x − mean) / pstdev, written out with the statistics module."""
    out = list(raw)
    for rows in ROLE_ROWS.values():
        xs = [raw[i] for i in rows]
        mean, std = statistics.fmean(xs), statistics.pstdev(xs)
        for i in rows:
            out[i] = (raw[i] - mean) / std
    return out


def test_td_errors_and_gae_by_hand(mafia_round):
    batch = _batch(*mafia_round)
    assert td_errors(batch, gamma=1.0).tolist() == DELTAS
    assert gae(batch, lam=0.5, gamma=1.0).tolist() == REWARDS
    assert batch.utility.tolist() == UTILITY


def test_gamma_discounts_next_value_and_trace(mafia_round):
    batch = _batch(*mafia_round)
    # γ = .5 on E1 p2 (rows 9, 10; V = 0, .5; z = 1): δ1 = .5·.5 − 0 = .25, δ2 = 1 − .5 = .5;
    # λ = 1: r1 = .25 + (.5·1)·.5 = .5, r2 = .5. Returns-to-go: G2 = 1, G1 = 0 + .5·1 = .5.
    assert td_errors(batch, gamma=0.5)[9:].tolist() == [0.25, 0.5]
    assert gae(batch, lam=1.0, gamma=0.5)[9:].tolist() == [0.5, 0.5]
    assert returns_to_go(batch, gamma=0.5)[9:].tolist() == [0.5, 1.0]


def _random_round(make_episode, seed):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 6, (6,), generator=g).tolist()
    zs = (torch.rand(6, generator=g) * 2 - 1).tolist()
    e0 = {p: (r, zs[p], zs[p] > 0, counts[p]) for p, r in enumerate(("mafia", "villager", "doctor"))}
    e1 = {p: (r, zs[3 + p], zs[3 + p] > 0, counts[3 + p]) for p, r in enumerate(("mafia", "villager", "doctor"))}
    episodes = [make_episode("mafia", 0, e0), make_episode("mafia", 1, e1)]
    n = sum(counts)
    return episodes, torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(5))
def test_td_errors_sum_to_outcome_minus_first_value(make_episode, seed):
    batch = _batch(*_random_round(make_episode, seed))
    per_agent = batch.agent_sum(td_errors(batch, gamma=1.0))  # [M]
    expected = batch.agent_first(batch.z) - batch.agent_first(batch.values)  # z_i − V_1
    torch.testing.assert_close(per_agent, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_lambda_one_is_outcome_minus_value(make_episode, seed):
    batch = _batch(*_random_round(make_episode, seed))
    torch.testing.assert_close(gae(batch, lam=1.0, gamma=1.0), batch.z - batch.values, rtol=0, atol=1e-12)
    torch.testing.assert_close(gae(batch, lam=0.0, gamma=1.0), td_errors(batch, gamma=1.0), rtol=0, atol=0)


def test_maro_mode_by_hand_unnormalised(mafia_round):
    assert _advantages(*mafia_round, lam=0.5, alpha=0.5, normalize_per_role=False) == RAW_MARO


def test_maro_mode_default_standardises_per_role(mafia_round):
    # mafia rows [.1875, .5, −.875]: mean −.0625, pstdev sqrt(((.25)² + (.5625)² + (−.8125)²)/3) ≈ .5885.
    got = _advantages(*mafia_round, lam=0.5, alpha=0.5)
    assert got == pytest.approx(_standardised(RAW_MARO), abs=1e-12)
    assert got[0] == pytest.approx((0.1875 + 0.0625) / ((0.25**2 + 0.5625**2 + 0.8125**2) / 3) ** 0.5)


def test_alpha_one_with_zero_utility_is_the_decomposition_alone(mafia_round):
    episodes, values, _ = mafia_round
    # Q = V: u = 0, so A = 1·r + 0·u = r; standardised, the same as standardising r.
    assert _advantages(episodes, values, values, lam=0.5, alpha=1.0, normalize_per_role=False) == REWARDS
    assert _advantages(episodes, values, values, lam=0.5, alpha=1.0) == pytest.approx(_standardised(REWARDS))


def test_no_utility_switch_sets_alpha_to_one(mafia_round):
    # −M3: u is ignored whatever α and Q are.
    assert _advantages(*mafia_round, lam=0.5, alpha=0.25, use_utility=False, normalize_per_role=False) == REWARDS


def test_no_decomposition_broadcasts_outcome_minus_first_value(mafia_round):
    # −M1: r_t = z_i − V_{i,1} on every behaviour of agent i (= Σ_t δ_t of the agent):
    #   E0 p0: 1 − .5 = .5 (×2);  E0 p1: −1 − 0 = −1 (×3);  E0 p2: −1 − .5 = −1.5
    #   E1 p0: −1 − .25 = −1.25;  E1 p1: 1 + .5 = 1.5 (×2); E1 p2: 1 − 0 = 1 (×2)
    broadcast = [0.5, 0.5, -1.0, -1.0, -1.0, -1.5, -1.25, 1.5, 1.5, 1.0, 1.0]
    samples = CreditAssigner(CreditConfig(decompose=False, alpha=1.0, normalize_per_role=False)).assign(*mafia_round)
    assert [s.reward for s in samples] == broadcast
    assert [s.advantage for s in samples] == broadcast


def test_outcome_mode_subtracts_the_mean_over_agents_per_game(make_episode, mafia_round):
    episodes, _, _ = mafia_round
    bazaar = make_episode("bazaar", 2, {0: ("seller", 0.75, True, 2), 1: ("buyer", 0.25, False, 1)})
    # Mafia agents z = +1, −1, −1, −1, +1, +1: mean 0, so A = z. (A mean over the 11 behaviours would be
    # (2 − 3 − 1 − 1 + 2 + 2)/11 = 1/11: each agent counts once.) Bazaar: mean (.75 + .25)/2 = .5,
    # seller .75 − .5 = .25 on both behaviours, buyer .25 − .5 = −.25. V and Q play no part.
    expected = [1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.25, -0.25]
    assert _advantages([*episodes, bazaar], mode="outcome") == expected


def test_role_baseline_reads_before_update_across_rounds(mafia_round):
    episodes, _, _ = mafia_round
    assigner = CreditAssigner(CreditConfig(mode="role_baseline", ema_decay=0.5))
    # Round 1 = E0: every role is new, so its baseline starts at its mean return in this round (mafia 1, villager
    # −1, doctor −1), not at 0: A = z − b = 0. The update keeps them (.5·b + .5·b).
    assert [s.advantage for s in assigner.assign(episodes[:1])] == [0.0] * 6
    assert assigner.baselines == {("mafia", "mafia"): 1.0, ("mafia", "villager"): -1.0, ("mafia", "doctor"): -1.0}
    # Round 2 = E1, read before update: mafia −1 − 1 = −2, villager 1 + 1 = 2, doctor 2.
    assert [s.advantage for s in assigner.assign(episodes[1:])] == [-2.0, 2.0, 2.0, 2.0, 2.0]
    # Update: mafia .5·1 + .5·(−1) = 0, villager .5·(−1) + .5·1 = 0, doctor 0.
    assert assigner.baselines == {("mafia", "mafia"): 0.0, ("mafia", "villager"): 0.0, ("mafia", "doctor"): 0.0}
    # Round 3 = E0 + E1: A = z − 0; then mafia's round mean is (1 − 1)/2 = 0: b stays 0.
    expected = [1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert [s.advantage for s in assigner.assign(episodes)] == expected
    assert assigner.baselines[("mafia", "mafia")] == 0.0


def test_role_baseline_default_decay_and_a_new_role_starts_at_its_first_round_mean(make_episode, mafia_round):
    assigner = CreditAssigner(CreditConfig(mode="role_baseline"))
    assert assigner.config.ema_decay == 0.95  # SPIRAL's decay
    assigner.assign(mafia_round[0][:1])
    assert assigner.baselines[("mafia", "mafia")] == pytest.approx(1.0)  # its first mean; .95·1 + .05·1 after
    sellers = [make_episode("bazaar", seed, {0: ("seller", z, True, 1)}) for seed, z in ((2, 0.75), (3, 0.25))]
    # Never seen before: b = the round's mean 0.5 (from 0, both would have been positive: 0.75 and 0.25).
    assert [s.advantage for s in assigner.assign(sellers)] == [0.25, -0.25]
    # The next round reads it: .5 before the update; the update moves it to .95·.5 + .05·.75 = .5125.
    assert [s.advantage for s in assigner.assign(sellers[:1])] == [0.25]
    assert assigner.baselines[("bazaar", "seller")] == pytest.approx(0.5125)


def test_outcome_and_role_baseline_refuse_the_m1_and_m3_switches():
    for mode in ("outcome", "role_baseline"):
        with pytest.raises(ValueError, match="decompose=False .* has no M1 decomposition"):
            CreditConfig(mode=mode, decompose=False)
        with pytest.raises(ValueError, match="use_utility=False .* has no M1 decomposition or M3 utility"):
            CreditConfig(mode=mode, use_utility=False)
    CreditConfig(mode="maro", decompose=False, use_utility=False)  # the ablations of maro itself


def test_normalisation_edge_cases():
    role = torch.tensor([0, 0, 1, 1, 1, 2])
    adv = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 5.0], dtype=torch.float64)
    # role 0: mean 2, pstdev 1 -> −1, 1. role 1: constant -> 0 (not NaN). role 2: one sample -> 0.
    assert normalize_per_role(adv, role, 3, eps=1e-6).tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_registry_lists_and_rejects_names():
    assert {"maro", "outcome", "role_baseline"} <= set(advantage_modes())
    with pytest.raises(ValueError, match="unknown advantage mode 'gpro'.*maro"):
        CreditAssigner(CreditConfig(mode="gpro"))
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("maro")(lambda batch, rewards, config: rewards)


def test_registered_mode_is_selectable(mafia_round):
    @register_advantage("test_utility_only", normalize_per_role=False)
    def utility_only(batch, rewards, config):
        return batch.utility

    try:
        assert _advantages(*mafia_round, mode="test_utility_only") == UTILITY
    finally:
        advantages.MODES.remove("test_utility_only")  # leave the registry as the other tests expect it
