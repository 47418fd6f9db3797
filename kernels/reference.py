"""The spec of the fused policy-gradient loss, in plain torch (docs/kernels.md).

This is the readable version that the fast paths (`chunked`, `triton_pg`) must agree with. It materializes the
`[N, V]` logits in fp32 and, through autograd, their log-softmax, its exp and their gradients: about five
`N × V × 4` byte tensors live at the peak (4 GiB each at N = 8192, V = 128k). That memory, not the model, is what
runs large-vocabulary RL out of memory, and is what the fused paths avoid.

Math, per position i (z_i = (hidden_i · weightᵀ + bias) / temperature):

    logp_i = log_softmax(z_i)[targets_i]
    r_i    = exp(logp_i − old_i)                     old_i = logp_i.detach() when old_logprobs is None
    surr_i = min(r_i·A_i, clip(r_i, 1 − clip_low, 1 + clip_high)·A_i)     PPO (Schulman et al. 2017, eq. 7)
    KL_i   = exp(ref_i − logp_i) − (ref_i − logp_i) − 1     k3 estimator (Schulman, "Approximating KL divergence")
    loss   = Σ_i mask_i · w_i · (−surr_i + beta·KL_i) / normalizer
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32/bf16/fp16 inputs; fp64 stays fp64 so that gradcheck can run in double precision."""
    return torch.promote_types(dtype, torch.float32)


def selective_logprobs_reference(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, bias: Tensor | None = None, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Log-prob of each target token and entropy of the full softmax, from materialized logits.

    Returns:
        `(logprobs [N], entropy [N])` in the compute dtype (fp32 unless the inputs are fp64).
    """
    logits = F.linear(hidden, weight, bias).to(compute_dtype(hidden.dtype)) / temperature  # [N, V]
    logprobs_all = torch.log_softmax(logits, dim=-1)  # [N, V]
    logprobs = logprobs_all.gather(1, targets[:, None]).squeeze(1)  # [N]
    entropy = -(logprobs_all.exp() * logprobs_all).sum(-1)  # [N]
    return logprobs, entropy


def pg_loss_reference(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    advantages: Tensor,
    *,
    bias: Tensor | None = None,
    sample_weights: Tensor | None = None,
    old_logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
    mask: Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    beta: float = 0.0,
    temperature: float = 1.0,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The clipped policy-gradient loss with per-token advantages and weights, by materializing logits.

    Arguments and returns are those of `maro_kernels.fused_pg_loss` (docs/kernels.md); gradients come from autograd.
    """
    n = hidden.shape[0]
    mask = torch.ones(n, dtype=torch.bool, device=hidden.device) if mask is None else mask  # [N] bool
    weights = torch.ones_like(advantages) if sample_weights is None else sample_weights  # [N]
    targets = torch.where(mask, targets, 0)  # [N]: padding ids at masked positions are never looked up
    logprobs, entropy = selective_logprobs_reference(hidden, weight, targets, bias=bias, temperature=temperature)
    old = logprobs.detach() if old_logprobs is None else old_logprobs  # [N]
    ratio = torch.exp(logprobs - old)  # [N]
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)  # [N]
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)  # [N]
    diff = (ref_logprobs - logprobs) if ref_logprobs is not None else torch.zeros_like(logprobs)  # [N]
    kl = torch.exp(diff) - diff - 1  # [N], k3
    per_token = weights * (-surrogate + beta * kl)  # [N]
    normalizer = mask.sum().clamp(min=1) if normalizer is None else normalizer  # []: default, the True count
    loss = torch.where(mask, per_token, 0).sum() / normalizer  # []
    # Clipping binds where min() picked the clipped branch: there the gradient is zero.
    binds = ((advantages > 0) & (ratio > 1 + clip_high)) | ((advantages < 0) & (ratio < 1 - clip_low))  # [N]
    return loss, token_stats(logprobs, entropy, binds, kl, mask)


def token_stats(logprobs: Tensor, entropy: Tensor, binds: Tensor, kl: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The detached stats of docs/kernels.md: per-token log-probs and entropy, masked means of clipping and KL."""
    count = mask.sum().clamp(min=1)  # []
    return {
        "logprobs": logprobs.detach().float(),  # [N]
        "entropy": entropy.detach().float(),  # [N]
        "clip_fraction": (binds.bool() & mask).sum().float() / count,  # []
        "kl_mean": torch.where(mask, kl.detach(), 0).sum().float() / count,  # []
    }
