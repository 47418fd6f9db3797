"""Evaluation metrics: per-key success and reward with confidence intervals, DDP-safe.

Every state is a sum, so ranks (or separate metric objects) merge by adding their states, and the
intervals are computed only once, from the merged sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchmetrics
from torch import Tensor

Z_95 = 1.96  # two-sided 95% normal quantile


def wilson_interval(successes: Tensor | float, trials: Tensor | float, z: float = Z_95) -> tuple[Tensor, Tensor]:
    """The Wilson score interval of a binomial proportion, elementwise, as float64 ``(low, high)``.

    Unlike the normal (Wald) interval it stays inside [0, 1] and does not collapse to a point at 0 or n
    successes, which matters for the small, often lopsided counts of a ladder. ``trials == 0`` gives the
    uninformative ``(0, 1)``.
    """
    k = torch.as_tensor(successes, dtype=torch.float64)
    n = torch.as_tensor(trials, dtype=torch.float64)
    empty = n <= 0
    n_safe = torch.where(empty, torch.ones_like(n), n)  # avoids 0/0 where the result is replaced anyway
    p = k / n_safe
    z2 = z * z
    # Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA 22:209-212:
    # centre (p + z²/2n) / (1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
    denom = 1.0 + z2 / n_safe
    centre = (p + z2 / (2.0 * n_safe)) / denom
    half = z * torch.sqrt((p * (1.0 - p) / n_safe + z2 / (4.0 * n_safe * n_safe)).clamp_min(0.0)) / denom
    # At 0 or n successes one bound is exactly 0 or 1 in exact arithmetic; the clamp removes rounding residue.
    low = torch.where(empty, torch.zeros_like(p), (centre - half).clamp(0.0, 1.0))
    high = torch.where(empty, torch.ones_like(p), (centre + half).clamp(0.0, 1.0))
    return low, high


def explained_variance(values: Tensor, q_values: Tensor, targets: Tensor) -> Tensor | None:
    """How much of the targets' variance the utility head's V and Q (both predict them) explain:
    ``1 − Var([V − y, Q − y]) / Var(y)``, a 0-d tensor; None when the targets do not vary (undefined)."""
    targets = targets.to(values.dtype)
    if targets.numel() < 2 or targets.var(correction=0) == 0:
        return None
    residual = torch.cat([values - targets, q_values - targets]).detach()
    return 1.0 - residual.var(correction=0) / targets.var(correction=0)


def mean_interval(total: Tensor, sq_total: Tensor, count: Tensor, z: float = Z_95) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and normal-approximation interval ``mean ± z·s/√n`` (``s`` the sample sd) from running sums.

    With one observation the sample sd is undefined; the bounds then equal the mean.
    """
    n = count.clamp_min(1.0)
    mean = total / n
    # Sum-of-squares form, needed because only sums survive a DDP reduction; clamped against cancellation.
    variance = ((sq_total - n * mean * mean) / (n - 1.0).clamp_min(1.0)).clamp_min(0.0)
    half = torch.where(count > 1, z * torch.sqrt(variance / n), torch.zeros_like(mean))
    return mean, mean - half, mean + half


class OutcomeMetric(torchmetrics.Metric):
    """Success rate and mean reward per key (e.g. ``"bazaar/linear/seller"``) with 95% intervals.

    ``compute()`` returns, for every key seen at least once, ``{key}/success``, ``{key}/success_low``,
    ``{key}/success_high`` (Wilson), ``{key}/reward``, ``{key}/reward_low``, ``{key}/reward_high``
    (mean ± 1.96·sd/√n) and ``{key}/n``. Keys never updated are absent rather than reported as 0.

    Args:
        keys: every key that may be updated; fixed up front so that all ranks hold states of one shape
            (stored sorted and de-duplicated, so every rank indexes them the same way).
    """

    full_state_update = False
    higher_is_better = None
    is_differentiable = False

    count: Tensor
    successes: Tensor
    reward_sum: Tensor
    reward_sq_sum: Tensor

    def __init__(self, keys: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(keys, str):
            raise ValueError(f"keys must be a sequence of strings, got the string {keys!r}")
        self.keys = sorted(set(keys))
        if not self.keys:
            raise ValueError("OutcomeMetric needs at least one key")
        self._index = {key: i for i, key in enumerate(self.keys)}
        size = len(self.keys)
        for name in ("count", "successes", "reward_sum", "reward_sq_sum"):
            self.add_state(name, default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, keys: Sequence[str], rewards: Tensor, success: Tensor) -> None:
        """Add one entry per episode-player: its key, reward and success (bool or 0/1)."""
        rewards, success = rewards.reshape(-1), success.reshape(-1)
        if not len(keys) == rewards.numel() == success.numel():
            raise ValueError(
                f"need one reward and one success per key, got {len(keys)} keys, "
                f"{rewards.numel()} rewards, {success.numel()} successes"
            )
        index = torch.tensor([self._lookup(key) for key in keys], dtype=torch.long, device=self.count.device)
        dtype = self.count.dtype  # the states' dtype, float64 unless the module was cast explicitly
        rewards = rewards.detach().to(self.count.device, dtype)
        self.count.index_add_(0, index, torch.ones_like(rewards))
        self.successes.index_add_(0, index, success.detach().to(self.count.device, dtype))
        self.reward_sum.index_add_(0, index, rewards)
        self.reward_sq_sum.index_add_(0, index, rewards * rewards)

    def compute(self) -> dict[str, Tensor]:
        """The statistics of every key seen at least once (see the class docstring)."""
        success_low, success_high = wilson_interval(self.successes, self.count)
        rate = self.successes / self.count.clamp_min(1.0)
        reward, reward_low, reward_high = mean_interval(self.reward_sum, self.reward_sq_sum, self.count)
        stats = {
            "success": rate,
            "success_low": success_low,
            "success_high": success_high,
            "reward": reward,
            "reward_low": reward_low,
            "reward_high": reward_high,
            "n": self.count,
        }
        seen = (self.count > 0).tolist()
        return {
            f"{key}/{name}": values[i] for i, key in enumerate(self.keys) if seen[i] for name, values in stats.items()
        }

    def _lookup(self, key: str) -> int:
        if key not in self._index:
            raise ValueError(f"unknown key {key!r}; known keys: {', '.join(self.keys)}")
        return self._index[key]
