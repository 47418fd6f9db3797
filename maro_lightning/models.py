"""Models: the behaviour-utility head (DESIGN §5, M3). Loading the policy LM comes with the training issue."""

from __future__ import annotations

import torch
from torch import Tensor
from torch import nn


class UtilityHead(nn.Module):
    """The behaviour-utility head U: a small MLP from a policy hidden state to one scalar (expected outcome).

    ``V_t = U(h at the last prompt token)`` estimates the outcome before behaviour t, ``Q_t = U(h at the
    last response token)`` after it; ``u_t = Q_t − V_t`` is what the behaviour changed (M3), and the
    ``V_t`` chain feeds the turn-level decomposition (M1).

    Layout: LayerNorm (hidden sizes and scales differ between models), then ``depth`` blocks
    Linear -> GELU of ``width`` units, then Linear -> 1. The output layer starts at zero, so an untrained
    head says V = Q = 0: no utility term, and M1 starts as the plain outcome on the last behaviour.

    Args:
        hidden_size: H, the policy's hidden size.
        width: units of each hidden layer.
        depth: hidden layers (0: a linear probe on the normalised hidden state).
        detach_trunk: stop gradients from the utility loss into the policy trunk (on by default: the
            regression then cannot pull the policy's features towards predicting its own outcome).
    """

    def __init__(self, hidden_size: int, width: int = 256, depth: int = 1, detach_trunk: bool = True) -> None:
        super().__init__()
        if hidden_size < 1 or width < 1 or depth < 0:
            raise ValueError(f"need hidden_size >= 1, width >= 1, depth >= 0; got {hidden_size}, {width}, {depth}")
        self.detach_trunk = detach_trunk
        layers: list[nn.Module] = [nn.LayerNorm(hidden_size)]
        size = hidden_size
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.GELU()]
            size = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        """Utility at every position: ``[..., H]`` (any float dtype) -> ``[...]`` in the head's dtype."""
        if self.detach_trunk:
            hidden = hidden.detach()
        return self.out(self.body(hidden.to(self.out.weight.dtype))).squeeze(-1)

    def behaviour_values(
        self, hidden: Tensor, prompt_last: Tensor, response_last: Tensor, rows: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """V and Q of M behaviours read from a batch of sequences.

        Args:
            hidden: ``[B, L, H]`` trunk outputs.
            prompt_last: ``[M]`` int64, position of each behaviour's last prompt token.
            response_last: ``[M]`` int64, position of its last response token.
            rows: ``[M]`` int64, the row of ``hidden`` holding each behaviour (packed sequences may hold
                several); None means behaviour m is row m (M = B).

        Returns:
            ``(V [M], Q [M])``.
        """
        rows = torch.arange(hidden.shape[0], device=hidden.device) if rows is None else rows
        picked = torch.stack([hidden[rows, prompt_last], hidden[rows, response_last]])  # [2, M, H]: only 2M states
        values, q_values = self(picked)  # [2, M] -> two [M]
        return values, q_values

    @staticmethod
    def loss(values: Tensor, q_values: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
        """Regression of V and Q onto the targets (z_i or λ-returns), a scalar.

        ``L = Σ_m w_m · ((V_m − y_m)² + (Q_m − y_m)²) / (2 · Σ_m w_m)``, with all w = 1 by default (a plain
        mean of the two squared errors). With M = 0 it is 0, still attached to the graph of ``values``.

        Args:
            values: ``[M]`` V estimates.
            q_values: ``[M]`` Q estimates.
            targets: ``[M]`` regression targets (``BehaviorSample.utility_target``).
            weights: ``[M]`` non-negative sample weights (e.g. the M2 weights), or None.
        """
        targets = targets.to(values.dtype)
        weights = torch.ones_like(targets) if weights is None else weights.to(values.dtype)
        errors = (values - targets) ** 2 + (q_values - targets) ** 2  # [M]
        return (weights * errors).sum() / (2.0 * weights.sum()).clamp_min(torch.finfo(values.dtype).tiny)
