"""CUDA path: the chunk's logits from a cuBLAS matmul, then one Triton kernel per block of rows.

`maro_kernels.chunked.run_chunks` computes each chunk's logits `[c, V]` (cuBLAS, input dtype) and calls
`triton_rows`, which launches `_pg_loss_fwd_kernel` once. Per block of `BLOCK_M` rows the kernel makes two passes
over V in tiles of `BLOCK_V`: first an online log-sum-exp that also accumulates the entropy, then (after the
target log-prob, the PPO ratio, clip and KL and the per-token loss) it overwrites the logits with dL/dlogits in
place. grad_hidden and the fp32 grad_weight then come from two more matmuls in the driver. Memory traffic of the
kernel: two reads and one write of `c × V` elements per chunk. Math is fp32 after every load; offsets are int64
because c × V exceeds 2^31 at large vocabularies. The backward pass needs no kernel: it only scales the gradients
computed here by grad_output (see `PGLossFunction`).

The online log-sum-exp follows Milakov & Gimelshein, "Online normalizer calculation for softmax" (2018), in the
spirit of Liger-Kernel's cross-entropy and GRPO kernels.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from maro_kernels.chunked import PGParams
from maro_kernels.chunked import TokenInputs
from maro_kernels.chunked import TokenOutputs

# Interpreted only when triton itself was first imported under TRITON_INTERPRET=1: its standard library (tl.sum,
# tl.zeros_like, ...) is jit-decorated at import, and a compiled one cannot run inside an interpreted kernel.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1" and isinstance(tl.zeros_like, InterpretedFunction)
# The interpreter runs every tile as numpy arrays: wide tiles amortize its per-op overhead. On a GPU, one row per
# program and 4096-wide tiles (8 KiB of bf16) keep each program's registers small and the grid large.
BLOCK_M, BLOCK_V, NUM_WARPS = (16, 1024, 1) if INTERPRET else (1, 4096, 8)


@triton.jit
def _logsumexp_entropy(logits_ptr, rows, row_ok, n_cols, stride, BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr):
    """Online log-sum-exp and entropy of `BLOCK_M` rows, one pass over V: `(lse [BM], entropy [BM])`."""
    m = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running max
    s = tl.zeros([BLOCK_M], tl.float32)  # Σ exp(z − m)
    u = tl.zeros([BLOCK_M], tl.float32)  # Σ exp(z − m)·(z − m): entropy = log s − u/s, no cancellation at large z
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)  # [BV]
        ok = row_ok[:, None] & (cols[None, :] < n_cols)  # [BM, BV]
        z = tl.load(logits_ptr + rows[:, None] * stride + cols[None, :], mask=ok, other=float("-inf"))
        z = z.to(tl.float32)  # [BM, BV]
        m_new = tl.maximum(m, tl.max(z, 1))  # [BM]
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # guards exp(-inf - -inf) on rows with no column yet
        shift = tl.where(s > 0, m - m_safe, 0.0)  # [BM] ≤ 0: rescales the old sums to the new max
        d = tl.where(ok, z - m_safe[:, None], 0.0)  # [BM, BV]
        e = tl.where(ok, tl.exp(d), 0.0)  # [BM, BV]
        u = tl.exp(shift) * (u + shift * s) + tl.sum(e * d, 1)
        s = tl.exp(shift) * s + tl.sum(e, 1)
        m = m_new
    s_safe = tl.where(s > 0, s, 1.0)  # rows past the end have s = 0
    lse = tl.where(s > 0, m, 0.0) + tl.log(s_safe)
    return lse, tl.log(s_safe) - u / s_safe


@triton.jit
def _ppo_token_terms(logp, adv, coef, old, ref, clip_low, clip_high, beta, HAS_REF: tl.constexpr):
    """PPO clipped surrogate (Schulman et al. 2017) + beta·k3 KL (Schulman, "Approximating KL divergence").

    Returns `(loss_i, dloss_i/dlogp_i, binds_i, kl_i)`, each `[BM]`; mirrors `chunked.token_terms`.
    """
    ratio = tl.exp(logp - old)
    binds = ((adv > 0) & (ratio > 1 + clip_high)) | ((adv < 0) & (ratio < 1 - clip_low))
    clipped = tl.minimum(tl.maximum(ratio, 1 - clip_low), 1 + clip_high)
    surrogate = tl.minimum(ratio * adv, clipped * adv)
    dsurrogate = tl.where(binds, 0.0, ratio * adv)  # zero gradient where the clip binds
    if HAS_REF:
        diff = ref - logp
        kl = tl.exp(diff) - diff - 1
        dkl = 1 - tl.exp(diff)
    else:
        kl = tl.zeros_like(logp)
        dkl = tl.zeros_like(logp)
    return coef * (beta * kl - surrogate), coef * (beta * dkl - dsurrogate), binds, kl


@triton.jit
def _store_dlogits(logits_ptr, rows, row_ok, target, lse, dz, n_cols, stride, BLOCK_V: tl.constexpr):
    """Overwrite the rows' logits with dz · (onehot(target) − softmax), in the logits' dtype."""
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)  # [BV]
        ok = row_ok[:, None] & (cols[None, :] < n_cols)  # [BM, BV]
        ptrs = logits_ptr + rows[:, None] * stride + cols[None, :]  # [BM, BV]
        z = tl.load(ptrs, mask=ok, other=0.0).to(tl.float32)
        onehot = tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
        grad = dz[:, None] * (onehot - tl.exp(z - lse[:, None]))
        tl.store(ptrs, grad.to(logits_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _pg_loss_fwd_kernel(
    logits_ptr,  # [n, V] fp32/bf16/fp16, row stride `stride`: the chunk's logits in, dL/dlogits out (WITH_GRAD)
    targets_ptr,  # [n] int64: the token generated at each row
    adv_ptr,  # [n] fp32: per-token advantage A_i (read when WITH_GRAD)
    coef_ptr,  # [n] fp32: mask_i · w_i / normalizer (read when WITH_GRAD)
    old_ptr,  # [n] fp32: rollout log-probs (read when HAS_OLD)
    ref_ptr,  # [n] fp32: reference-policy log-probs (read when HAS_REF)
    logp_ptr,  # [n] fp32 out: log-prob of the target
    ent_ptr,  # [n] fp32 out: entropy of the full softmax
    loss_ptr,  # [n] fp32 out: coef_i · (−surr_i + beta·KL_i) (WITH_GRAD)
    binds_ptr,  # [n] fp32 out: 1 where the clip binds (WITH_GRAD)
    kl_ptr,  # [n] fp32 out: k3 KL_i (WITH_GRAD)
    n_rows,
    n_cols,
    stride,
    clip_low,
    clip_high,
    beta,
    inv_temp,
    HAS_OLD: tl.constexpr,
    HAS_REF: tl.constexpr,
    WITH_GRAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    rows = tl.program_id(0).cast(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM] int64
    row_ok = rows < n_rows
    lse, entropy = _logsumexp_entropy(logits_ptr, rows, row_ok, n_cols, stride, BLOCK_M, BLOCK_V)
    target = tl.load(targets_ptr + rows, mask=row_ok, other=0)  # [BM] int64
    logp = tl.load(logits_ptr + rows * stride + target, mask=row_ok, other=0.0).to(tl.float32) - lse
    tl.store(logp_ptr + rows, logp, mask=row_ok)
    tl.store(ent_ptr + rows, entropy, mask=row_ok)
    if WITH_GRAD:
        adv = tl.load(adv_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        coef = tl.load(coef_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        old = logp  # on-policy: ratio 1
        if HAS_OLD:
            old = tl.load(old_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        ref = logp  # unused without HAS_REF
        if HAS_REF:
            ref = tl.load(ref_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        loss, dlogp, binds, kl = _ppo_token_terms(logp, adv, coef, old, ref, clip_low, clip_high, beta, HAS_REF)
        tl.store(loss_ptr + rows, loss, mask=row_ok)
        tl.store(binds_ptr + rows, binds.to(tl.float32), mask=row_ok)
        tl.store(kl_ptr + rows, kl, mask=row_ok)
        # The raw logits are z · temperature: dL/draw = dL/dz · inv_temp.
        _store_dlogits(logits_ptr, rows, row_ok, target, lse, dlogp * inv_temp, n_cols, stride, BLOCK_V)


def triton_rows(
    logits: Tensor, targets: Tensor, tokens: TokenInputs | None, outs: TokenOutputs, params: PGParams
) -> Tensor | None:
    """The row function on Triton (see `chunked.RowFn`): one launch per chunk, dL/dlogits in the logits buffer."""
    n, vocab = logits.shape
    spare = outs.loss  # stands in for the pointers a variant does not read (their loads are compiled out)
    adv, coef, old, ref = (spare, spare, None, None) if tokens is None else tokens
    _pg_loss_fwd_kernel[(triton.cdiv(n, BLOCK_M),)](
        logits,
        targets,
        adv,
        coef,
        spare if old is None else old,
        spare if ref is None else ref,
        outs.logprobs,
        outs.entropy,
        outs.loss,
        outs.binds,
        outs.kl,
        n,
        vocab,
        logits.stride(0),
        params.clip_low,
        params.clip_high,
        params.beta,
        1.0 / params.temperature,
        HAS_OLD=old is not None,
        HAS_REF=ref is not None,
        WITH_GRAD=tokens is not None,
        BLOCK_M=BLOCK_M,
        BLOCK_V=BLOCK_V,
        num_warps=NUM_WARPS,
    )
    return None if tokens is None else logits


def triton_available_for(device: torch.device) -> bool:
    """True where this module can launch: CUDA tensors, or any tensors when running interpreted."""
    return device.type == "cuda" or INTERPRET
