"""M2 role balance: the weighting modes by hand, the clip-with-mean-one solve, the rolling window, the registry."""

import math
from collections import Counter

import pytest
import torch

from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig
from maro_lightning.credit import RollingCounts
from maro_lightning.credit import balance
from maro_lightning.credit import weighting
from maro_lightning.credit import weighting_modes
from maro_lightning.credit.weights import mean_one_scale


def _weights(episodes, **config):
    return [s.weight for s in CreditAssigner(CreditConfig(window=1, **config)).assign(episodes)]


# Canonical round rows by (role, success): mafia wins rows 0, 1; mafia loses row 6; villager loses rows 2-4;
# villager wins rows 7, 8; doctor loses row 5; doctor wins rows 9, 10.


def test_role_weighting_by_hand(mafia_round):
    # Cells (role): mafia 3, villager 5, doctor 3 behaviours; N = 11, K = 3.
    # w = N/(K·N_c): mafia 11/9, villager 11/15, doctor 11/9. Mean (3·11/9 + 5·11/15 + 3·11/9)/11 = 1 already.
    m, v, d = 11 / 9, 11 / 15, 11 / 9
    assert _weights(mafia_round[0], weighting="role") == pytest.approx([m, m, v, v, v, d, m, v, v, d, d], abs=1e-12)


def test_role_success_weighting_by_hand(mafia_round):
    # Six cells; sizes: mafia win 2, mafia loss 1, villager loss 3, villager win 2, doctor loss 1, doctor win 2.
    # w = 11/(6·n): n = 1 -> 11/6, n = 2 -> 11/12, n = 3 -> 11/18; Σ n·w = 6 · 11/6 = 11, mean 1.
    one, two, three = 11 / 6, 11 / 12, 11 / 18
    expected = [two, two, three, three, three, one, one, two, two, two, two]
    assert _weights(mafia_round[0], weighting="role_success") == pytest.approx(expected, abs=1e-12)


def test_clipping_keeps_mean_one_by_hand(mafia_round):
    # role_success with clip [.5, 1.5]: the two n = 1 cells (11/6 ≈ 1.83) bind at 1.5. The scale s solves
    # 2·1.5 + s·(3·2·11/12 + 3·11/18) = 11, i.e. 3 + s·22/3 = 11, s = 12/11. Then n = 2 cells: 12/11·11/12 = 1;
    # the n = 3 cell: 12/11·11/18 = 2/3 (inside the range); n = 1 cells: 12/11·11/6 = 2 > 1.5, clipped.
    # Mean: (2·1.5 + 6·1 + 3·2/3)/11 = 11/11 = 1.
    expected = [1.0, 1.0, 2 / 3, 2 / 3, 2 / 3, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0]
    got = _weights(mafia_round[0], weighting="role_success", weight_clip=(0.5, 1.5))
    assert got == pytest.approx(expected, abs=1e-12)


def test_none_weighting_is_all_ones(mafia_round):
    assert _weights(mafia_round[0], weighting="none") == [1.0] * 11


def _random_cells(seed, n=200):
    g = torch.Generator().manual_seed(seed)
    probs = torch.tensor([0.55, 0.25, 0.12, 0.05, 0.03])  # strong imbalance between five cells
    return [(f"c{i}",) for i in torch.multinomial(probs, n, replacement=True, generator=g).tolist()]


@pytest.mark.parametrize("seed", range(5))
def test_cells_get_equal_totals_when_no_clip_binds(seed):
    cells = _random_cells(seed)
    weights, table = balance(cells, Counter(cells), (0.0, math.inf))
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-12)
    totals = Counter()
    for cell, w in zip(cells, weights.tolist(), strict=True):
        totals[cell] += w
    assert max(totals.values()) == pytest.approx(min(totals.values()), rel=1e-12)  # each N/K
    assert set(table) == set(cells)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("clip", [(0.5, 2.0), (0.2, 5.0), (0.9, 1.1), (1.0, 3.0), (0.0, 1.0)])
def test_weights_have_mean_one_inside_the_clip_range(seed, clip):
    cells = _random_cells(seed)
    window = Counter(cells) + Counter(_random_cells(seed + 100))  # window counts differ from the round's
    weights, _ = balance(cells, window, clip)
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-12)
    assert weights.min().item() >= clip[0] - 1e-12 and weights.max().item() <= clip[1] + 1e-12


def test_mean_one_scale_edge_cases():
    # low = high = 1: every weight is 1 whatever the raw weights.
    assert balance([("a",), ("b",)], {("a",): 1, ("b",): 9}, (1.0, 1.0))[0].tolist() == [1.0, 1.0]
    # Unbounded: s = N / Σ n·w = 5 / (2 + 2) = 1.25.
    assert mean_one_scale([2.0, 0.5], [1, 4], 0.0, math.inf) == 1.25


def test_rolling_window_by_hand(mafia_round):
    e0, e1 = mafia_round[0]
    assigner = CreditAssigner(CreditConfig(weighting="role", window=2))
    # Round A = E0 (mafia 2, villager 3, doctor 1): N = 6, w = 6/(3·n): mafia 1, villager 2/3, doctor 2; mean 1.
    assert [s.weight for s in assigner.assign([e0])] == pytest.approx([1, 1, 2 / 3, 2 / 3, 2 / 3, 2], abs=1e-12)
    # Round B = E1; window A + B: mafia 3, villager 5, doctor 3 -> 11/9, 11/15, 11/9. B's rows (mafia 1,
    # villager 2, doctor 2) have raw mean (11/9 + 22/15 + 22/9)/5 = 77/75, so s = 75/77:
    # mafia 11/9·75/77 = 25/21, villager 11/15·75/77 = 5/7, doctor 25/21.
    expected_b = [25 / 21, 5 / 7, 5 / 7, 25 / 21, 25 / 21]
    assert [s.weight for s in assigner.assign([e1])] == pytest.approx(expected_b, abs=1e-12)
    # Round C = E0; A leaves the window: B + C counts are again 3, 5, 3. C's rows (2, 3, 1) have raw mean
    # (22/9 + 33/15 + 11/9)/6 = 44/45, s = 45/44: mafia 5/4, villager 3/4, doctor 5/4.
    assert [s.weight for s in assigner.assign([e0])] == pytest.approx([1.25, 1.25, 0.75, 0.75, 0.75, 1.25])
    assert {label: n for label, (n, _) in assigner.cell_stats.items()} == {
        "mafia/doctor": 3,
        "mafia/mafia": 3,
        "mafia/villager": 5,
    }
    assert [w for _, w in assigner.cell_stats.values()] == pytest.approx([1.25, 1.25, 0.75])
    assert assigner.metrics()["weight/mafia/villager"] == pytest.approx(0.75)


def test_new_role_gets_a_bounded_weight(make_episode, mafia_round):
    assigner = CreditAssigner(CreditConfig(weighting="role", window=4, weight_clip=(0.2, 5.0)))
    for _ in range(3):
        assigner.assign(mafia_round[0])
    # A role first seen now has 1 behaviour against 33 + 11 of the others in the window: w = N/(K·1)
    # is large, and the clip holds it at 5; its cell is logged like the others.
    newcomer = make_episode("mafia", 9, {0: ("detective", 1.0, True, 1)})
    weights = [s.weight for s in assigner.assign([*mafia_round[0], newcomer])]
    assert weights[-1] == 5.0 and all(math.isfinite(w) for w in weights)
    assert sum(weights) / len(weights) == pytest.approx(1.0)
    assert assigner.cell_stats["mafia/detective"] == (1, 5.0)


def test_rolling_counts_state_round_trip():
    counts = RollingCounts(window=2)
    for n in (1, 2, 3):
        counts.push({("mafia", "doctor", True): n, ("mafia", "mafia", False): 10 * n})
    assert len(counts.rounds) == 2  # the first round fell out
    smaller = RollingCounts(window=1)
    smaller.load_state_dict(counts.state_dict())
    assert smaller.total(weighting("role")) == Counter({("mafia", "doctor"): 3, ("mafia", "mafia"): 30})


def test_weighting_registry_rejects_unknown_names():
    assert weighting_modes() == ["none", "role", "role_success"]
    with pytest.raises(ValueError, match="unknown weighting mode 'roles'.*role_success"):
        CreditAssigner(CreditConfig(weighting="roles"))
