"""Torch path and the shared chunk driver: no `[N, V]` tensor, loss and all gradients in the forward pass.

The driver (`run_chunks`) walks the tokens in chunks of `c` rows. Per chunk it computes the logits `[c, V]` with one
matmul, hands them to a *row function* that writes the per-token outputs and overwrites the buffer with
dL/dlogits, then turns that into grad_hidden (`[c, V] @ [V, H]`) and accumulates grad_weight (`[V, c] @ [c, H]`)
and grad_bias in the compute dtype (fp32, or fp64 under gradcheck); grad_weight may instead accumulate in the
weight's dtype (`grad_weight_dtype`, docs/kernels.md#accumulating-in-the-weights-dtype). Extra memory is O(c × V)
plus the `[V, H]` grad_weight accumulator. Row functions plug in: `torch_rows` here (the CPU path and fallback),
`maro_kernels.triton_pg.triton_rows` (the CUDA path) and, for scoring, `logprob_rows` (log-probs alone, no entropy).
Backward only scales the stored gradients by grad_output, the same trick as Liger-Kernel's fused linear cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from maro_kernels.reference import compute_dtype

# Logit elements per chunk (c × V). CPU: small enough to stay near the caches' sweet spot, large enough for an
# efficient matmul (tuned by benchmarks/bench_pg_loss.py, see RESULTS.md). CUDA: 2^27 bf16 elements = 256 MiB, which
# keeps the matmuls large (~1k rows at V = 128k) and memory beyond inputs and gradients near the fp32 accumulator.
CPU_CHUNK_ELEMS = 1 << 24
CUDA_CHUNK_ELEMS = 1 << 27


class PGParams(NamedTuple):
    """The scalars of the loss, packed so the autograd.Function takes one argument for them."""

    clip_low: float
    clip_high: float
    beta: float
    temperature: float


class TokenInputs(NamedTuple):
    """Per-token inputs, each `[N]` in the compute dtype and contiguous."""

    advantages: Tensor
    coef: Tensor  # mask_i · w_i / normalizer: 0 at masked positions, so they contribute nothing, gradients included
    old: Tensor | None  # rollout log-probs; None = on-policy (ratio 1)
    ref: Tensor | None  # reference log-probs; None = no KL term


class TokenOutputs(NamedTuple):
    """Per-token outputs, each `[N]` in the compute dtype, written by the row functions."""

    logprobs: Tensor
    entropy: Tensor
    loss: Tensor  # coef_i · (−surr_i + beta·KL_i): the loss is their sum
    binds: Tensor  # 1.0 where the clip binds (zero gradient), else 0.0
    kl: Tensor


# (logits [c, V], targets [c], inputs or None, outputs, params) -> dL/dlogits [c, V] (in the logits buffer) or None.
RowFn = Callable[[Tensor, Tensor, "TokenInputs | None", TokenOutputs, PGParams], "Tensor | None"]


def default_chunk_rows(n: int, vocab: int, device: torch.device) -> int:
    """Rows per chunk so that one chunk's logits hold about `*_CHUNK_ELEMS` elements."""
    elems = CUDA_CHUNK_ELEMS if device.type == "cuda" else CPU_CHUNK_ELEMS
    return max(1, min(n, elems // vocab))


def token_terms(logprobs: Tensor, tokens: TokenInputs, params: PGParams) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-token PPO loss and its derivative in logp (all `[c]`), given the target log-probs.

    Returns:
        `(loss_i, dloss_i/dlogp_i, binds_i, kl_i)`. The clipped surrogate is PPO's (Schulman et al. 2017, eq. 7),
        with zero gradient where the clip binds; KL is the k3 estimator of Schulman's "Approximating KL divergence".
    """
    adv, coef = tokens.advantages, tokens.coef
    ratio = torch.exp(logprobs - (logprobs if tokens.old is None else tokens.old))  # [c]
    binds = ((adv > 0) & (ratio > 1 + params.clip_high)) | ((adv < 0) & (ratio < 1 - params.clip_low))  # [c]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - params.clip_low, 1 + params.clip_high) * adv)  # [c]
    dsurrogate = torch.where(binds, 0, ratio * adv)  # [c]: d(r·A)/dlogp = r·A
    if tokens.ref is None:
        kl = dkl = torch.zeros_like(logprobs)  # [c]
    else:
        diff = tokens.ref - logprobs  # [c]
        kl, dkl = torch.exp(diff) - diff - 1, 1 - torch.exp(diff)  # [c], [c]
    loss = coef * (params.beta * kl - surrogate)  # [c]
    return loss, coef * (params.beta * dkl - dsurrogate), binds, kl


def torch_rows(
    logits: Tensor, targets: Tensor, tokens: TokenInputs | None, outs: TokenOutputs, params: PGParams
) -> Tensor | None:
    """The row function in torch: two `[c, V]` buffers in the compute dtype at the peak."""
    z = logits.to(outs.logprobs.dtype)  # [c, V] in the compute dtype: the same buffer when the input is fp32
    logp_all = torch.log_softmax(z, dim=1)  # [c, V]
    probs = torch.exp(logp_all, out=z)  # [c, V]
    # Row dot products as a batched [1, V] @ [V, 1] matmul: no third [c, V] buffer for probs · logp.
    outs.entropy.copy_(-torch.bmm(probs[:, None, :], logp_all[:, :, None]).view(-1))  # [c]
    outs.logprobs.copy_(logp_all.gather(1, targets[:, None]).squeeze(1))  # [c]
    if tokens is None:
        return None
    del logp_all
    loss, dlogp, binds, kl = token_terms(outs.logprobs, tokens, params)  # [c] each
    outs.loss.copy_(loss)
    outs.binds.copy_(binds)
    outs.kl.copy_(kl)
    # dL/dz = dL/dlogp · (onehot − p); the raw logits are z · temperature, hence the division.
    dlogp = (dlogp / params.temperature)[:, None]  # [c, 1]
    probs.mul_(-dlogp).scatter_add_(1, targets[:, None], dlogp)  # [c, V]
    return logits.copy_(probs)


def logprob_rows(
    logits: Tensor, targets: Tensor, tokens: TokenInputs | None, outs: TokenOutputs, params: PGParams
) -> None:
    """Scoring without the entropy: each target's logit minus its row's logsumexp. One reduction over `[c, V]` and
    no `[c, V]` output, where `torch_rows` writes the log-softmax and the probabilities for the entropy."""
    z = logits.to(outs.logprobs.dtype)  # [c, V]
    outs.logprobs.copy_(z.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(z, dim=1))  # [c]
    return None


def chunk_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, temperature: float) -> Tensor:
    """`(hidden @ weightᵀ + bias) / temperature` `[c, V]` in the input dtype, the scale folded into the matmul."""
    scale = 1.0 / temperature
    bias = hidden.new_zeros(()) if bias is None else bias  # [V] or []; ignored by addmm when beta = 0
    return torch.addmm(bias, hidden, weight.T, beta=scale if bias.dim() else 0.0, alpha=scale)


def _add_mm(acc: Tensor, a: Tensor, b: Tensor) -> None:
    """`acc [V, H] += a [V, c] @ b [c, H]` with `acc` in the compute dtype or in the inputs' dtype.

    Same dtypes: one `addmm_`, whose product accumulates in fp32 and is added to `acc` with one rounding to its
    dtype (the bf16 test checks this on CPU; cuBLAS's fp32-compute GEMM epilogue does the same). Half inputs into
    an fp32 `acc` cannot accumulate in place, so their product goes through temporaries of at most `c × V` elements
    (slices of V), keeping the extra memory of the same order as one chunk of logits.
    """
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
        return
    step = max(1, a.shape[0] * a.shape[1] // b.shape[1])  # rows of V per temporary
    for start in range(0, a.shape[0], step):
        acc[start : start + step] += torch.mm(a[start : start + step], b)


def _slice(items: NamedTuple | None, rows: slice):
    return None if items is None else type(items)(*(t if t is None else t[rows] for t in items))


def run_chunks(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    tokens: TokenInputs | None,
    params: PGParams,
    row_fn: RowFn,
    chunk_rows: int,
    needs_grad: tuple[bool, ...] = (False, False, False),
    grad_weight_dtype: torch.dtype | None = None,
) -> tuple[TokenOutputs, tuple[Tensor | None, Tensor | None, Tensor | None]]:
    """The shared driver: per-token outputs `[N]` and the gradients of (hidden, weight, bias) that `needs_grad` asks.

    With `tokens=None` it only scores (log-probs and entropy) and computes no gradient. grad_weight accumulates in
    `grad_weight_dtype` (default: the compute dtype); grad_bias always in the compute dtype (`[V]`: small).
    """
    n, cdt = hidden.shape[0], compute_dtype(hidden.dtype)
    wdt = grad_weight_dtype or cdt
    outs = TokenOutputs(*torch.zeros(5, n, dtype=cdt, device=hidden.device))  # [N] each
    grad_h = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device) if needs_grad[0] else None  # [N, H]
    grad_w = torch.zeros(weight.shape, dtype=wdt, device=weight.device) if needs_grad[1] else None  # [V, H]
    grad_b = torch.zeros(weight.shape[0], dtype=cdt, device=weight.device) if needs_grad[2] else None  # [V]
    for start in range(0, n, chunk_rows):
        rows = slice(start, start + chunk_rows)
        h = hidden[rows]  # [c, H]
        logits = chunk_logits(h, weight, bias, params.temperature)  # [c, V]
        dlogits = row_fn(logits, targets[rows], _slice(tokens, rows), _slice(outs, rows), params)  # [c, V] or None
        if dlogits is None:
            continue
        if grad_h is not None:
            torch.mm(dlogits, weight, out=grad_h[rows])  # [c, H]
        if grad_w is not None:
            _add_mm(grad_w, dlogits.T, h)  # [V, H]
        if grad_b is not None:
            grad_b += dlogits.sum(0, dtype=cdt)  # [V]
    return outs, (grad_h, grad_w, grad_b)


class PGLossFunction(torch.autograd.Function):
    """The fused loss as an autograd.Function: all gradients in forward, backward scales them by grad_output.

    Tensors: hidden, weight, bias, targets and the `TokenInputs` fields. Scalars: `params` (PGParams), `row_fn`
    (`torch_rows` or `triton_rows`), `chunk_rows`, `grad_weight_dtype` (the accumulator's torch dtype). Returns the
    loss `[]` and the detached per-token log-probs, entropy, clip indicator and KL (`[N]` each).
    """

    @staticmethod
    def forward(
        ctx, hidden, weight, bias, targets, advantages, coef, old, ref, params, row_fn, chunk_rows, grad_weight_dtype
    ):
        tokens = TokenInputs(advantages, coef, old, ref)
        needs = tuple(ctx.needs_input_grad[:3])
        args = (hidden, weight, bias, targets, tokens, params, row_fn, chunk_rows, needs, grad_weight_dtype)
        outs, grads = run_chunks(*args)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(*grads)
        stats = (outs.logprobs, outs.entropy, outs.binds, outs.kl)
        ctx.mark_non_differentiable(*stats)
        return (outs.loss.sum(), *stats)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, *_unused):
        # One new tensor per gradient, in its parameter's dtype; the saved ones stay intact for a retained graph.
        saved = zip(ctx.saved_tensors, ctx.dtypes, strict=True)
        grads = (g if g is None else g.to(dtype, copy=True).mul_(grad_loss) for g, dtype in saved)
        return (*grads, None, None, None, None, None, None, None, None, None)
