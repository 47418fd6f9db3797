"""maro_kernels: the fused policy-gradient loss of maro_lightning (docs/kernels.md).

Depends on torch (and triton when present) only; never imports maro_lightning.

`fused_pg_loss` computes lm_head matmul → log-softmax → log-prob of the taken token → PPO ratio and clip →
× per-token advantage × per-token weight (+ k3 KL) → reduction, forward and backward, without ever holding the
`[N, V]` logits: `"chunked"` (torch) and `"triton"` (CUDA) walk the tokens in chunks and compute all gradients in
the forward pass. `"reference"` is the plain-torch spec. `selective_logprobs` scores tokens with the same machinery.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maro_kernels.chunked import PGLossFunction
from maro_kernels.chunked import PGParams
from maro_kernels.chunked import TokenInputs
from maro_kernels.chunked import default_chunk_rows
from maro_kernels.chunked import logprob_rows
from maro_kernels.chunked import run_chunks
from maro_kernels.chunked import torch_rows
from maro_kernels.reference import compute_dtype
from maro_kernels.reference import pg_loss_reference
from maro_kernels.reference import selective_logprobs_reference
from maro_kernels.reference import token_stats

try:
    from maro_kernels.triton_pg import triton_available_for
    from maro_kernels.triton_pg import triton_rows
except ImportError:  # no triton (macOS, some CPU images): the chunked torch path serves every call
    triton_available_for = triton_rows = None

__all__ = [
    "GRAD_WEIGHT_DTYPES",
    "HAS_TRITON",
    "IMPLS",
    "PGLossFunction",
    "fused_pg_loss",
    "pg_loss_reference",
    "selective_logprobs",
]

HAS_TRITON = triton_rows is not None
IMPLS = ("auto", "triton", "chunked", "reference")
# The fused paths' grad_weight accumulator: "float32" (the compute dtype; fp64 under gradcheck) or the weight's dtype.
GRAD_WEIGHT_DTYPES = ("float32", "weight")
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)  # fp64: for gradcheck only


def _resolve_impl(impl: str, hidden: Tensor) -> str:
    """`"auto"` = triton for CUDA tensors when triton imports, else chunked; checks that an explicit choice can run."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if HAS_TRITON and hidden.is_cuda else "chunked"
    if impl == "triton":
        if not HAS_TRITON:
            raise RuntimeError("impl='triton' needs the triton package, which is not importable here")
        if not triton_available_for(hidden.device):
            raise RuntimeError(
                "impl='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is first imported"
            )
        if hidden.dtype == torch.float64:
            raise TypeError("impl='triton' supports float32, bfloat16 and float16 inputs, not float64")
    return impl


def _check_matrices(hidden: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden must be [N, H] and weight [V, H], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if hidden.dtype not in _FLOAT_DTYPES or weight.dtype != hidden.dtype:
        raise TypeError(f"hidden and weight must share a float dtype, got {hidden.dtype} and {weight.dtype}")
    if weight.device != hidden.device:
        raise ValueError(f"weight is on {weight.device} but hidden on {hidden.device}")
    if bias is not None and (
        bias.shape != weight.shape[:1] or bias.dtype != weight.dtype or bias.device != weight.device
    ):
        raise ValueError(f"bias must be [V]={weight.shape[0]} of weight's dtype and device, got {tuple(bias.shape)}")


def _check_vectors(hidden: Tensor, vectors: dict[str, Tensor | None]) -> None:
    """Every per-token tensor is `[N]` on hidden's device; targets integer, mask bool, the others floating."""
    n = hidden.shape[0]
    for name, t in vectors.items():
        if t is None:
            continue
        if t.shape != (n,) or t.device != hidden.device:
            raise ValueError(f"{name} must be [N]=[{n}] on {hidden.device}, got {tuple(t.shape)} on {t.device}")
        kind = {"targets": "int", "mask": "bool"}.get(name, "float")
        ok = {"int": not t.is_floating_point() and t.dtype != torch.bool, "bool": t.dtype == torch.bool}
        if not ok.get(kind, t.is_floating_point()):
            raise TypeError(f"{name} must be a {kind} tensor, got {t.dtype}")


def _check_scalars(clip_low: float, clip_high: float, beta: float, temperature: float, has_ref: bool) -> None:
    if not (0 <= clip_low < 1 and clip_high >= 0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    if temperature <= 0 or beta < 0:
        raise ValueError(f"need temperature > 0 and beta >= 0, got {temperature}, {beta}")
    if beta > 0 and not has_ref:
        raise ValueError("beta > 0 needs ref_logprobs: the KL term compares against the reference policy")


def _grad_weight_dtype(choice: str, weight: Tensor) -> torch.dtype:
    """The torch dtype of the grad_weight accumulator that `choice` (one of `GRAD_WEIGHT_DTYPES`) names."""
    if choice not in GRAD_WEIGHT_DTYPES:
        raise ValueError(f"grad_weight_dtype must be one of {GRAD_WEIGHT_DTYPES}, got {choice!r}")
    return compute_dtype(weight.dtype) if choice == "float32" else weight.dtype


def _check_targets(targets: Tensor, mask: Tensor | None, vocab: int) -> Tensor:
    """int64 targets with masked positions set to 0 (they may hold padding ids); the unmasked ones must be in [0, V)."""
    targets = targets.long() if mask is None else torch.where(mask, targets.long(), 0)
    if targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < vocab):  # an id ≥ V would read OOB
        raise ValueError(f"targets must lie in [0, {vocab}) at unmasked positions")
    return targets.contiguous()


def fused_pg_loss(
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
    impl: str = "auto",
    grad_weight_dtype: str = "float32",
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-clip policy-gradient loss with per-token advantages and weights, fused with the lm_head (docs/kernels.md).

    Per position i, with `z_i = (hidden_i · weightᵀ + bias) / temperature` and `logp_i = log_softmax(z_i)[targets_i]`:
    `loss = Σ_i mask_i · w_i · (−min(r_i·A_i, clip(r_i, 1−clip_low, 1+clip_high)·A_i) + beta·KL_i) / normalizer`,
    `r_i = exp(logp_i − old_i)`, `KL_i = exp(ref_i − logp_i) − (ref_i − logp_i) − 1` (k3).

    Args:
        hidden: `[N, H]` float32/bf16/fp16 trunk outputs at the N predicting positions.
        weight: `[V, H]` lm_head weight, same dtype and device as `hidden`.
        targets: `[N]` integer: the token generated after each position (ignored where `mask` is False).
        advantages: `[N]` float: per-token advantage.
        bias: optional `[V]` lm_head bias.
        sample_weights: `[N]` float >= 0, default 1 (role balance, length normalisation).
        old_logprobs: `[N]` rollout-policy log-probs; None = on-policy (`old = logp.detach()`, ratio 1).
        ref_logprobs: `[N]` reference-policy log-probs; required when `beta > 0`.
        mask: `[N]` bool; False positions contribute nothing, gradients included.
        clip_low: lower clip `ε_low`, ratio clipped below at `1 − clip_low`.
        clip_high: upper clip `ε_high`, ratio clipped above at `1 + clip_high`.
        beta: KL coefficient.
        temperature: divides the logits before the softmax.
        normalizer: divides the masked sum; default the number of True mask positions (at least 1).
        impl: `"auto"` (triton on CUDA when importable, else chunked), `"triton"`, `"chunked"` or `"reference"`.
        grad_weight_dtype: the dtype the fused paths (chunked, triton) accumulate grad_weight `[V, H]` in over the
            chunks, from the forward until the backward: `"float32"` (the compute dtype) or `"weight"` (the
            weight's dtype: half the bytes for bf16/fp16 weights, for one rounding of the running sum per chunk;
            over K chunks in bf16 the error is at most (K + 2) · 2^-8 of the summed |chunk contributions|, about
            √K · 1e-3 of the gradient in practice). Same result for fp32 weights. `reference` ignores it: autograd
            computes grad_weight in one matmul in the weight's dtype. See
            docs/kernels.md#accumulating-in-the-weights-dtype.

    Returns:
        `(loss, stats)`: the scalar loss (fp32) and detached stats `logprobs [N]`, `entropy [N]` (fp32),
        `clip_fraction` and `kl_mean` (masked means).

    Raises:
        ValueError: mismatched shapes or devices, bad scalars, `beta > 0` without `ref_logprobs`, unknown impl or
            grad_weight_dtype.
        TypeError: unsupported or mismatched dtypes.
        RuntimeError: `impl="triton"` where it cannot run.
    """
    vectors = {"targets": targets, "advantages": advantages, "sample_weights": sample_weights}
    vectors |= {"old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs, "mask": mask}
    _check_matrices(hidden, weight, bias)
    _check_vectors(hidden, vectors)
    _check_scalars(clip_low, clip_high, beta, temperature, ref_logprobs is not None)
    impl, targets = _resolve_impl(impl, hidden), _check_targets(targets, mask, weight.shape[0])
    accumulator = _grad_weight_dtype(grad_weight_dtype, weight)
    kwargs = {"sample_weights": sample_weights, "old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs}
    kwargs |= {"mask": mask, "clip_low": clip_low, "clip_high": clip_high, "beta": beta}
    kwargs |= {"temperature": temperature, "normalizer": normalizer}
    if impl == "reference":
        return pg_loss_reference(hidden, weight, targets, advantages, bias=bias, **kwargs)
    return _fused(hidden, weight, targets, advantages, bias=bias, impl=impl, grad_weight_dtype=accumulator, **kwargs)


def _fused(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    advantages: Tensor,
    *,
    bias: Tensor | None,
    sample_weights: Tensor | None,
    old_logprobs: Tensor | None,
    ref_logprobs: Tensor | None,
    mask: Tensor | None,
    clip_low: float,
    clip_high: float,
    beta: float,
    temperature: float,
    normalizer: float | None,
    impl: str,
    grad_weight_dtype: torch.dtype,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The chunked/triton call behind `fused_pg_loss`, inputs already checked."""
    n, cdt = hidden.shape[0], compute_dtype(hidden.dtype)
    mask = torch.ones(n, dtype=torch.bool, device=hidden.device) if mask is None else mask  # [N]
    weights = torch.ones(n, dtype=cdt, device=hidden.device) if sample_weights is None else sample_weights  # [N]
    normalizer = mask.sum().clamp(min=1) if normalizer is None else normalizer  # []
    coef = torch.where(mask, weights.to(cdt), 0) / normalizer  # [N]: masked positions get exactly 0
    per_token = (advantages, coef, old_logprobs, ref_logprobs)
    tokens = TokenInputs(*(t if t is None else t.to(cdt).contiguous() for t in per_token))  # [N] each
    rows = default_chunk_rows(n, weight.shape[0], hidden.device)
    params = PGParams(clip_low, clip_high, beta, temperature)
    row_fn = triton_rows if impl == "triton" else torch_rows
    outputs = PGLossFunction.apply(hidden, weight, bias, targets, *tokens, params, row_fn, rows, grad_weight_dtype)
    loss, logprobs, entropy, binds, kl = outputs
    return loss, token_stats(logprobs, entropy, binds, kl, mask)


@torch.no_grad()
def selective_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    impl: str = "auto",
    entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Log-prob of each target token and entropy of the full softmax, without materializing `[N, V]` logits.

    For the rollout scorer (old log-probs); no gradient. Same dispatch as `fused_pg_loss`.

    Args:
        hidden: `[N, H]` float32/bf16/fp16.
        weight: `[V, H]` lm_head weight.
        targets: `[N]` integer token ids in `[0, V)`.
        bias: optional `[V]`.
        temperature: divides the logits before the softmax.
        impl: `"auto"`, `"triton"`, `"chunked"` or `"reference"`.
        entropy: False skips the entropy (None is returned for it): the chunked path then takes each log-prob as the
            target's logit minus a logsumexp, about half its time on CPU.

    Returns:
        `(logprobs [N], entropy [N] or None)`, fp32.
    """
    _check_matrices(hidden, weight, bias)
    _check_vectors(hidden, {"targets": targets})
    _check_scalars(0.0, 0.0, 0.0, temperature, False)
    impl, targets = _resolve_impl(impl, hidden), _check_targets(targets, None, weight.shape[0])
    if impl == "reference":
        logprobs, entropies = selective_logprobs_reference(hidden, weight, targets, bias=bias, temperature=temperature)
        return logprobs.float(), entropies.float() if entropy else None
    rows = default_chunk_rows(hidden.shape[0], weight.shape[0], hidden.device)
    row_fn = triton_rows if impl == "triton" else torch_rows if entropy else logprob_rows
    outs, _ = run_chunks(hidden, weight, bias, targets, None, PGParams(0.0, 0.0, 0.0, temperature), row_fn, rows)
    return outs.logprobs.float(), outs.entropy.float() if entropy else None
