"""OutcomeMetric and the Wilson interval: hand-checked values, unseen keys, reset, and merging by summing states."""

import math
import warnings

import pytest
import torch

from maro_lightning.metrics import OutcomeMetric
from maro_lightning.metrics import wilson_interval

KEYS = ["bazaar/linear/buyer", "bazaar/linear/seller", "deal/greedy/first"]


def test_wilson_matches_hand_computed_values():
    # 8/10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.7167380,
    # half-width 1.96·sqrt(0.016 + 0.009604) / 1.38416 = 0.2265811.
    low, high = wilson_interval(torch.tensor(8.0), torch.tensor(10.0))
    assert low.dtype == torch.float64
    assert low.item() == pytest.approx(0.490157, abs=1e-6) and high.item() == pytest.approx(0.943319, abs=1e-6)
    # 10/10: centre 1.19208 / 1.38416 = 0.8612299, half 1.96·0.098 / 1.38416 = 0.1387701.
    low, high = wilson_interval(torch.tensor([0.0, 10.0]), torch.tensor([10.0, 10.0]))
    assert low.tolist() == pytest.approx([0.0, 0.722460], abs=1e-6)
    assert high.tolist() == pytest.approx([0.277540, 1.0], abs=1e-6)


def test_wilson_bounds_solve_the_score_equation():
    """Independent check: the bounds are the p with (k/n - p)^2 = z^2 p (1 - p) / n."""
    k = torch.tensor([0.0, 1.0, 3.0, 7.0, 20.0], dtype=torch.float64)
    n = torch.tensor([5.0, 1.0, 9.0, 40.0, 20.0], dtype=torch.float64)
    low, high = wilson_interval(k, n)
    for bound in (low, high):
        residual = (k / n - bound) ** 2 - 1.96**2 * bound * (1 - bound) / n
        torch.testing.assert_close(residual, torch.zeros_like(residual), atol=1e-9, rtol=0)
    assert bool(((low <= k / n) & (k / n <= high)).all())


def test_wilson_with_no_trials_is_uninformative():
    low, high = wilson_interval(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 4.0]))
    assert low[0].item() == 0.0 and high[0].item() == 1.0
    assert 0.0 < low[1].item() < 0.5 < high[1].item() < 1.0
    assert wilson_interval(0, 0) == (torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


def test_outcome_metric_statistics():
    metric = OutcomeMetric(KEYS)
    metric.update(KEYS[:2], torch.tensor([1.0, 0.5]), torch.tensor([True, True]))
    metric.update([KEYS[0], KEYS[0]], torch.tensor([0.0, -1.0]), torch.tensor([False, False]))
    out = metric.compute()
    buyer = KEYS[0]
    assert out[f"{buyer}/n"].item() == 3 and out[f"{buyer}/success"].item() == pytest.approx(1 / 3)
    low, high = wilson_interval(1, 3)
    assert out[f"{buyer}/success_low"].item() == pytest.approx(low.item())
    assert out[f"{buyer}/success_high"].item() == pytest.approx(high.item())
    # rewards 1, 0, -1: mean 0, sample sd 1, half-width 1.96 / sqrt(3)
    assert out[f"{buyer}/reward"].item() == pytest.approx(0.0, abs=1e-12)
    assert out[f"{buyer}/reward_high"].item() == pytest.approx(1.96 / math.sqrt(3))
    assert out[f"{buyer}/reward_low"].item() == pytest.approx(-1.96 / math.sqrt(3))
    seller = KEYS[1]  # one episode: the reward bounds are the mean
    assert out[f"{seller}/reward"].item() == out[f"{seller}/reward_low"].item() == out[f"{seller}/reward_high"].item()
    assert out[f"{seller}/reward"].item() == 0.5
    assert not any(name.startswith(KEYS[2]) for name in out)  # never seen: absent, not 0
    assert len(out) == 2 * 7


def test_outcome_metric_rejects_bad_input_and_resets():
    with pytest.raises(ValueError, match="at least one key"):
        OutcomeMetric([])
    metric = OutcomeMetric(list(reversed(KEYS)) + [KEYS[0]])
    assert metric.keys == KEYS  # sorted and de-duplicated: every rank indexes the states alike
    with pytest.raises(ValueError, match=r"unknown key 'bazaar/linear/nobody'.*deal/greedy/first"):
        metric.update(["bazaar/linear/nobody"], torch.tensor([1.0]), torch.tensor([True]))
    with pytest.raises(ValueError, match="one reward and one success per key"):
        metric.update(KEYS[:2], torch.tensor([1.0]), torch.tensor([True]))
    metric.update(KEYS[:1], torch.tensor([1.0]), torch.tensor([1]))
    assert metric.compute()[f"{KEYS[0]}/success"].item() == 1.0
    metric.reset()
    assert metric.count.dtype == torch.float64 and metric.count.sum().item() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert metric.compute() == {}


def _data(seed: int, size: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(KEYS), (size,), generator=gen).tolist()
    rewards = torch.randn(size, generator=gen, dtype=torch.float64)
    return [KEYS[i] for i in picks], rewards, torch.rand(size, generator=gen) > 0.5


def test_merging_two_ranks_by_summing_equals_one_metric_with_all_data():
    """What a DDP sum-reduction does, without processes: rank states added elementwise."""
    first, second, whole = OutcomeMetric(KEYS), OutcomeMetric(KEYS), OutcomeMetric(KEYS)
    a, b = _data(0, 13), _data(1, 9)
    first.update(*a)
    second.update(*b)
    whole.update(*a)
    whole.update(*b)
    by_hand = OutcomeMetric(KEYS)
    for name in ("count", "successes", "reward_sum", "reward_sq_sum"):
        setattr(by_hand, name, getattr(first, name) + getattr(second, name))
    by_hand._update_count = 2  # states set by hand: mark the metric as updated
    first.merge_state(second)
    expected = whole.compute()
    for merged in (first.compute(), by_hand.compute()):
        assert merged.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(merged[name], value, rtol=1e-12, atol=1e-12)


def test_explained_variance_of_v_and_q_by_hand_and_per_role():
    from types import SimpleNamespace

    from maro_lightning.callbacks import utility_explained_variance
    from maro_lightning.metrics import explained_variance

    y = torch.tensor([0.0, 1.0, 0.0, 1.0])  # Var(y) = 0.25
    perfect = explained_variance(y.clone(), y.clone(), y)
    assert perfect is not None and perfect.item() == 1.0
    # V says 0.5 everywhere (residuals ±0.5, variance 0.25), Q is exact (residuals 0): pooled variance 0.125
    half = explained_variance(torch.full((4,), 0.5), y.clone(), y)
    assert half is not None and math.isclose(half.item(), 1 - 0.125 / 0.25)
    assert explained_variance(y, y, torch.ones(4)) is None  # no variance to explain
    rows = [("buyer", 1.0, 1.0, 1.0), ("buyer", 0.0, 0.0, 0.0), ("seller", 0.5, 0.5, 1.0), ("seller", 0.5, 0.5, 0.0)]
    samples = [SimpleNamespace(game="bazaar", role=r, value=v, q_value=q, utility_target=t) for r, v, q, t in rows]
    assert utility_explained_variance(samples) == {
        "utility/bazaar/buyer/explained_variance": 1.0,
        "utility/bazaar/seller/explained_variance": 0.0,
    }
