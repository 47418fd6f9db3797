"""fused_pg_loss and selective_logprobs: every impl against the reference (docs/kernels.md).

On CPU the Triton kernel runs under TRITON_INTERPRET=1 (set in conftest), fp32 and small shapes (bf16 only for the
grad_weight accumulator's test): the interpreter is ~100× slower than torch. bf16/fp16 run on CPU for the chunked
path; the Triton kernel's bf16/fp16 checks against torch need a GPU and are marked `gpu`.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import maro_kernels
from maro_kernels import fused_pg_loss
from maro_kernels import selective_logprobs
from maro_kernels.chunked import PGParams
from maro_kernels.chunked import TokenInputs
from maro_kernels.chunked import token_terms
from maro_kernels.reference import selective_logprobs_reference

FUSED = ["chunked", "triton"]
CUDA = torch.cuda.is_available()
# Ratios r = exp(logp − old) cycled over the rows: outside the clip range [0.8, 1.2] on both sides, inside, at 1.
RATIOS = (0.5, 0.7, 0.95, 1.0, 1.1, 1.3, 1.6)


@dataclass(frozen=True)
class Case:
    n: int
    h: int
    v: int
    bias: bool = True
    mask: str = "partial"  # "none" | "partial" | "all_false"
    zero_weights: bool = False
    old: bool = True
    beta: float = 0.0
    temperature: float = 1.0


CASES = {
    "n1": Case(1, 8, 33, beta=0.1),
    "odd": Case(37, 24, 1000, zero_weights=True, beta=0.1, temperature=0.7),
    "odd_plain": Case(37, 24, 1000, bias=False, mask="none", old=False),
    "all_masked": Case(9, 8, 100, mask="all_false", beta=0.05, temperature=1.5),
    "vocab_151936": Case(3, 8, 151936, beta=0.1, temperature=1.3),
}


def make_inputs(case: Case, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0) -> dict:
    """Tensors and keyword arguments of one fused_pg_loss call; ratios spread across the clip range."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(case.n, case.h, generator=g)  # [N, H]
    weight = torch.randn(case.v, case.h, generator=g) / math.sqrt(case.h)  # [V, H]
    bias = torch.randn(case.v, generator=g) * 0.1 if case.bias else None  # [V]
    targets = torch.randint(0, case.v, (case.n,), generator=g)  # [N]
    mask = {"none": None, "partial": torch.rand(case.n, generator=g) > 0.3, "all_false": torch.zeros(case.n) > 0}
    mask = mask[case.mask]
    if mask is not None:
        targets = torch.where(mask, targets, -100)  # padding ids at masked positions must never be looked up
    advantages = torch.randn(case.n, generator=g) * torch.tensor([1.0, -1.0]).repeat(case.n)[: case.n]  # both signs
    weights = torch.rand(case.n, generator=g) + 0.5
    if case.zero_weights:
        weights[::4] = 0
    tensors = {"hidden": hidden, "weight": weight, "bias": bias, "sample_weights": weights}
    tensors = {
        k: v if v is None else v.to(device, dtype if k != "sample_weights" else torch.float32)
        for k, v in tensors.items()
    }
    safe = torch.where(targets >= 0, targets, 0).to(device)
    logp, _ = selective_logprobs_reference(
        tensors["hidden"], tensors["weight"], safe, bias=tensors["bias"], temperature=case.temperature
    )
    log_r = torch.tensor(RATIOS).log().repeat(case.n)[: case.n].to(device, logp.dtype)
    ref = logp + 0.3 * torch.randn(case.n, generator=g).to(device, logp.dtype)
    return {
        **tensors,
        "targets": targets.to(device),
        "advantages": advantages.to(device, logp.dtype),
        "old_logprobs": logp - log_r if case.old else None,
        "ref_logprobs": ref if case.beta > 0 else None,
        "mask": None if mask is None else mask.to(device),
        "beta": case.beta,
        "temperature": case.temperature,
    }


def run(impl: str, inputs: dict, **overrides) -> tuple[torch.Tensor, dict, dict]:
    """One forward + backward; returns the loss, the stats and the grads of hidden, weight and bias."""
    kwargs = {**inputs, **overrides}
    leaves = {k: kwargs.pop(k) for k in ("hidden", "weight", "bias")}
    leaves = {k: v.detach().clone().requires_grad_() for k, v in leaves.items() if v is not None}
    targets, advantages = kwargs.pop("targets"), kwargs.pop("advantages")
    loss, stats = fused_pg_loss(
        leaves["hidden"], leaves["weight"], targets, advantages, bias=leaves.get("bias"), impl=impl, **kwargs
    )
    loss.backward()
    return loss.detach(), stats, {k: v.grad for k, v in leaves.items()}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """rtol 1e-4 and atol 1e-5 scaled to the magnitude of the expected tensor."""
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


def assert_same_results(actual: tuple, expected: tuple) -> None:
    (loss, stats, grads), (ref_loss, ref_stats, ref_grads) = actual, expected
    assert_close(loss, ref_loss, "loss")
    for key in ("logprobs", "entropy", "clip_fraction", "kl_mean"):
        assert stats[key].dtype == torch.float32, key
        assert_close(stats[key], ref_stats[key], key)
    assert grads.keys() == ref_grads.keys()
    for key, grad in grads.items():
        assert grad.dtype == ref_grads[key].dtype, key
        assert_close(grad, ref_grads[key], f"grad {key}")


@pytest.fixture
def chunk_thirds(monkeypatch):
    """Makes the CPU chunks about a third of N rows, so every case crosses chunk boundaries (and a ragged tail)."""

    def use(case: Case) -> None:
        monkeypatch.setattr(maro_kernels.chunked, "CPU_CHUNK_ELEMS", case.v * max(1, case.n // 3))

    return use


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("impl", FUSED)
def test_matches_reference(impl, case, chunk_thirds):
    chunk_thirds(case)
    inputs = make_inputs(case)
    assert_same_results(run(impl, inputs), run("reference", inputs))


def test_cases_clip_on_both_sides():
    # The ratios of make_inputs must exercise both clip bounds with both advantage signs, or the tests above are weak.
    inputs = make_inputs(CASES["odd"])
    _, stats, _ = run("reference", inputs)
    ratio = torch.exp(stats["logprobs"] - inputs["old_logprobs"])
    adv = inputs["advantages"]
    assert ((ratio > 1.2) & (adv > 0)).any() and ((ratio < 0.8) & (adv < 0)).any()
    assert ((ratio > 1.2) & (adv < 0)).any() and ((ratio < 0.8) & (adv > 0)).any()
    assert 0 < stats["clip_fraction"] < 1


@pytest.mark.parametrize("impl", ["reference", *FUSED])
def test_analytic_loss(impl):
    # hidden = 0 gives logits [0, 0]: p = (1/2, 1/2), logp = log 1/2 for target 0, dlogp/dz = (1/2, −1/2), and with
    # weight = [[1], [−1]] dz/dh = (1, −1), so dlogp/dh = 1/2 + 1/2 = 1. Clip range [0.8, 1.2]; normalizer 1.
    #   row 0: A=+1, r=1.5: −min(1.5, 1.2) = −1.2, the clip binds → gradient 0
    #   row 1: A=−1, r=1.5: −min(−1.5, −1.2) = 1.5, unclipped → dL/dlogp = −A·r = 1.5
    #   row 2: A=+1, r=0.5: −min(0.5, 0.8) = −0.5, unclipped → dL/dlogp = −0.5
    #   row 3: A=−1, r=0.5: −min(−0.5, −0.8) = 0.8, the clip binds → gradient 0
    #   row 4: A=0, ref − logp = ln 2: beta·KL = 0.5·(2 − ln 2 − 1); dL/dlogp = beta·(1 − e^{ln 2}) = −0.5
    logp = math.log(0.5)
    old = torch.tensor([logp - math.log(1.5)] * 2 + [logp - math.log(0.5)] * 2 + [logp])
    ref = torch.tensor([logp] * 4 + [logp + math.log(2)])
    inputs = {
        "hidden": torch.zeros(5, 1),
        "weight": torch.tensor([[1.0], [-1.0]]),
        "bias": None,
        "targets": torch.zeros(5, dtype=torch.long),
        "advantages": torch.tensor([1.0, -1.0, 1.0, -1.0, 0.0]),
        "old_logprobs": old,
        "ref_logprobs": ref,
        "beta": 0.5,
        "normalizer": 1.0,
    }
    loss, stats, grads = run(impl, inputs)
    kl = 1 - math.log(2)
    assert loss.item() == pytest.approx(-1.2 + 1.5 - 0.5 + 0.8 + 0.5 * kl, abs=1e-6)
    torch.testing.assert_close(grads["hidden"], torch.tensor([[0.0], [1.5], [-0.5], [0.0], [-0.5]]))
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)
    assert stats["kl_mean"].item() == pytest.approx(kl / 5, abs=1e-6)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_gradcheck_float64(impl, chunk_thirds):
    case = Case(7, 5, 11, beta=0.1, temperature=0.8, zero_weights=True)
    chunk_thirds(case)
    inputs = make_inputs(case, dtype=torch.float64)
    kwargs = {k: v for k, v in inputs.items() if k not in ("hidden", "weight", "bias", "targets", "advantages")}

    def loss(hidden, weight, bias):
        return fused_pg_loss(hidden, weight, inputs["targets"], inputs["advantages"], bias=bias, impl=impl, **kwargs)[0]

    leaves = tuple(inputs[k].clone().requires_grad_() for k in ("hidden", "weight", "bias"))
    assert torch.autograd.gradcheck(loss, leaves)


@pytest.mark.parametrize("impl", ["reference", *FUSED])
def test_microbatch_invariance(impl, chunk_thirds):
    # Two halves, each normalised by the whole batch's mask count, accumulate to the whole batch: loss and grads.
    case = CASES["odd"]
    chunk_thirds(case)
    inputs = make_inputs(case)
    count = float(inputs["mask"].sum())
    whole_loss, _, whole_grads = run(impl, inputs, normalizer=count)
    leaves = {k: inputs[k].clone().requires_grad_() for k in ("hidden", "weight", "bias")}
    total = 0.0
    for rows in (slice(0, 18), slice(18, None)):
        part = {k: v[rows] if isinstance(v, torch.Tensor) and v.shape[0] == case.n else v for k, v in inputs.items()}
        part |= {"hidden": leaves["hidden"][rows], "weight": leaves["weight"], "bias": leaves["bias"]}
        loss, _ = fused_pg_loss(
            part.pop("hidden"), part.pop("weight"), part.pop("targets"), part.pop("advantages"), impl=impl,
            normalizer=count, **part,
        )  # fmt: skip
        loss.backward()
        total += loss.item()
    assert total == pytest.approx(whole_loss.item(), rel=1e-5, abs=1e-6)
    for key, grad in whole_grads.items():
        assert_close(leaves[key].grad, grad, f"grad {key}")


@pytest.mark.parametrize("case", [CASES["odd"], CASES["vocab_151936"]], ids=["odd", "vocab_151936"])
@pytest.mark.parametrize("impl", FUSED)
def test_selective_logprobs(impl, case, chunk_thirds):
    chunk_thirds(case)
    inputs = make_inputs(case)
    targets = torch.where(inputs["targets"] >= 0, inputs["targets"], 0)
    args = (inputs["hidden"], inputs["weight"], targets)
    expected = selective_logprobs(*args, bias=inputs["bias"], temperature=case.temperature, impl="reference")
    actual = selective_logprobs(*args, bias=inputs["bias"], temperature=case.temperature, impl=impl)
    for name, a, e in zip(("logprobs", "entropy"), actual, expected, strict=True):
        assert a.dtype == torch.float32 and not a.requires_grad
        assert_close(a, e, name)


@pytest.mark.parametrize("case", [CASES["odd"], CASES["vocab_151936"]], ids=["odd", "vocab_151936"])
@pytest.mark.parametrize("impl", ["chunked", "reference"])
def test_selective_logprobs_without_entropy(impl, case, chunk_thirds):
    """entropy=False: the same log-probs (chunked: a logit minus a logsumexp, not the log-softmax) and no entropy."""
    chunk_thirds(case)
    inputs = make_inputs(case)
    args = (inputs["hidden"], inputs["weight"], torch.where(inputs["targets"] >= 0, inputs["targets"], 0))
    expected, _ = selective_logprobs(*args, bias=inputs["bias"], temperature=case.temperature, impl="reference")
    actual, entropy = selective_logprobs(
        *args, bias=inputs["bias"], temperature=case.temperature, impl=impl, entropy=False
    )
    assert entropy is None and actual.dtype == torch.float32
    assert_close(actual, expected, "logprobs")


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op returns, in bytes: a probe for materialized [N, V] logits.

    Bytes, not elements: the Triton interpreter round-trips each argument's storage as a uint8 tensor.
    """

    largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() * t.element_size() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        return out


@pytest.mark.parametrize("impl", FUSED)
def test_no_tokens_by_vocab_tensor(impl, monkeypatch):
    case = Case(64, 8, 1000)  # fp32 N × V = 256 kB; a 16-row chunk is 64 kB, grad_weight V × H 32 kB
    monkeypatch.setattr(maro_kernels.chunked, "CPU_CHUNK_ELEMS", 16 * case.v)
    inputs = make_inputs(case)
    with LargestTensor() as probe:
        run(impl, inputs)
    with LargestTensor() as reference_probe:
        run("reference", inputs)
    assert probe.largest <= 16 * case.v * 4 < case.n * case.v * 4 <= reference_probe.largest


def gamma(n: int, unit_roundoff: float) -> float:
    """γ_n = n·u / (1 − n·u): the relative error bound of n roundings (Higham, Accuracy and Stability of Numerical
    Algorithms, 2nd ed., Lemma 3.1); defined for n·u < 1 (bf16: n < 256)."""
    assert n * unit_roundoff < 1, n
    return n * unit_roundoff / (1 - n * unit_roundoff)


BF16_U, FP32_U = 2.0**-8, 2.0**-24  # unit roundoffs: 8 and 24 significant bits, round to nearest


@pytest.fixture
def recorded_dlogits(monkeypatch):
    """Every chunk's dL/dlogits `[c, V]` as the row function hands it to the driver's matmuls, in call order."""
    chunks = []

    def recording(row_fn):
        def rows(logits, targets, tokens, outs, params):
            dlogits = row_fn(logits, targets, tokens, outs, params)
            chunks.append(dlogits.clone())
            return dlogits

        return rows

    for name in ("torch_rows", "triton_rows"):
        monkeypatch.setattr(maro_kernels, name, recording(getattr(maro_kernels, name)))
    return chunks


def _weight_grad(impl: str, inputs: dict, grad_weight_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The accumulator the forward saved for backward and the weight's gradient after backward."""
    weight = inputs["weight"].detach().clone().requires_grad_()
    kwargs = {k: v for k, v in inputs.items() if k not in ("hidden", "weight", "targets", "advantages")}
    loss, _ = fused_pg_loss(
        inputs["hidden"], weight, inputs["targets"], inputs["advantages"], impl=impl,
        grad_weight_dtype=grad_weight_dtype, **kwargs,
    )  # fmt: skip
    accumulator = loss.grad_fn.saved_tensors[1]  # (grad_hidden, grad_weight, grad_bias); None where not needed
    loss.backward()
    return accumulator, weight.grad


def _bf16_running_sum(dz: list[torch.Tensor], hidden: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """What a bf16 accumulator should hold: each chunk's product in fp32, added to the bf16 sum with one rounding."""
    acc = torch.zeros(dz[0].shape[1], hidden[0].shape[1], dtype=torch.bfloat16)  # [V, H]
    for d, h in zip(dz, hidden, strict=True):
        acc = (acc.float() + d.float().T @ h.float()).bfloat16()
    return acc


@pytest.mark.parametrize("impl", FUSED)
def test_grad_weight_in_bf16_stays_within_the_summation_bound(impl, monkeypatch, recorded_dlogits):
    """`grad_weight_dtype="weight"` with bf16 weights: a bf16 accumulator (half the bytes) that rounds the running
    sum once per chunk, and a gradient that differs from the fp32 accumulator's by at most the bound derived in
    docs/kernels.md#accumulating-in-the-weights-dtype, per element:

        |g_weight − g_float32| ≤ γ_{K+2}(2^-8) · Σ_k |x_k|  +  2·γ_{c+K}(2^-24) · Σ_i |dz_i|·|h_i|

    x_k = dz_kᵀ h_k is chunk k's exact contribution (K chunks of c rows), dz the dL/dlogits the kernel computed.
    The first term is bf16's: K roundings of the running sum (Higham §4.2), one of each chunk product in the fp32
    mode and its final cast; the second covers fp32's in the products and the fp32 sum. The worst case is loose
    (a 1 % bias would pass it), so the accumulator is also checked against a bf16 running sum computed here.
    """
    case, rows = Case(64, 16, 300, beta=0.05), 8  # K = 8 chunks of c = 8 rows
    monkeypatch.setattr(maro_kernels.chunked, "CPU_CHUNK_ELEMS", rows * case.v)
    inputs = make_inputs(case, dtype=torch.bfloat16)
    acc32, grad32 = _weight_grad(impl, inputs, "float32")
    dz = recorded_dlogits[:]
    acc16, grad16 = _weight_grad(impl, inputs, "weight")
    assert len(dz) == 8 and all(torch.equal(a, b) for a, b in zip(dz, recorded_dlogits[8:], strict=True))
    assert (acc32.dtype, acc16.dtype) == (torch.float32, torch.bfloat16) and grad16.dtype == torch.bfloat16
    assert acc16.numel() * acc16.element_size() == case.v * case.h * 2 == acc32.numel() * acc32.element_size() // 2
    h = inputs["hidden"].split(rows)  # [c, H] per chunk
    # Bit for bit but for fp32 summation-order ties: at most one bf16 ulp, on under 1 % of the elements.
    ulps = (grad16.view(torch.int16).int() - _bf16_running_sum(dz, h).view(torch.int16).int()).abs()
    assert ulps.max() <= 1 and (ulps > 0).float().mean() < 0.01, (ulps.max(), (ulps > 0).float().mean())
    contributions = torch.stack([d.double().T @ hk.double() for d, hk in zip(dz, h, strict=True)])  # [K, V, H]
    abs_products = sum(d.double().abs().T @ hk.double().abs() for d, hk in zip(dz, h, strict=True))  # [V, H]
    bound = gamma(len(dz) + 2, BF16_U) * contributions.abs().sum(0) + 2 * gamma(rows + len(dz), FP32_U) * abs_products
    error = (grad16.double() - grad32.double()).abs()  # [V, H]
    assert (error <= bound).all(), (error - bound).max()
    assert error.max() > 0  # the bf16 accumulator did round: the option is not a no-op


def test_auto_is_chunked_on_cpu():
    inputs = make_inputs(CASES["odd"])
    assert_same_results(run("auto", inputs), run("chunked", inputs))


def _bad(**changes):
    inputs = make_inputs(CASES["odd"])
    return {**inputs, **changes}


BAD_CALLS = {
    "hidden_1d": (_bad(hidden=torch.randn(37)), ValueError, "hidden must be"),
    "h_mismatch": (_bad(weight=torch.randn(1000, 23)), ValueError, "hidden must be"),
    "dtype_mismatch": (_bad(weight=torch.randn(1000, 24, dtype=torch.float64)), TypeError, "share a float dtype"),
    "int_hidden": (_bad(hidden=torch.ones(37, 24, dtype=torch.long)), TypeError, "share a float dtype"),
    "bias_shape": (_bad(bias=torch.randn(999)), ValueError, "bias must be"),
    "targets_len": (_bad(targets=torch.zeros(36, dtype=torch.long)), ValueError, "targets must be"),
    "targets_float": (_bad(targets=torch.zeros(37)), TypeError, "targets must be a int"),
    "targets_range": (_bad(targets=torch.full((37,), 1000), mask=None), ValueError, r"targets must lie in \[0, 1000\)"),
    "mask_float": (_bad(mask=torch.ones(37)), TypeError, "mask must be a bool"),
    "adv_device": (_bad(advantages=torch.zeros(37, device="meta")), ValueError, "advantages must be"),
    "weight_device": (_bad(weight=torch.zeros(1000, 24, device="meta"), bias=None), ValueError, "weight is on meta"),
    "beta_no_ref": (_bad(beta=0.1, ref_logprobs=None), ValueError, "beta > 0 needs ref_logprobs"),
    "temperature": (_bad(temperature=0.0), ValueError, "temperature > 0"),
    "clip": (_bad(clip_low=1.0), ValueError, "clip_low"),
    "impl": (_bad(impl="cuda"), ValueError, "impl must be one of"),
    "grad_weight_dtype": (_bad(grad_weight_dtype="bf16"), ValueError, "grad_weight_dtype must be one of"),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_clear_errors(name):
    kwargs, error, match = BAD_CALLS[name]
    kwargs = {"impl": "chunked", **kwargs}
    args = [kwargs.pop(k) for k in ("hidden", "weight", "targets", "advantages")]
    with pytest.raises(error, match=match):
        fused_pg_loss(*args, **kwargs)


def test_import_and_fallback_without_triton():
    # The GPU-less image may lack triton: `import maro_kernels` must work and fall back to chunked.
    kernels_dir = Path(maro_kernels.__file__).resolve().parent
    code = f"""
import importlib.util, sys
sys.modules["triton"] = None  # makes `import triton` raise ImportError
spec = importlib.util.spec_from_file_location("maro_kernels", {str(kernels_dir / "__init__.py")!r},
                                              submodule_search_locations=[{str(kernels_dir)!r}])
mk = importlib.util.module_from_spec(spec); sys.modules["maro_kernels"] = mk; spec.loader.exec_module(mk)
import torch
assert not mk.HAS_TRITON
loss, stats = mk.fused_pg_loss(torch.randn(4, 3), torch.randn(7, 3), torch.arange(4), torch.randn(4))
try:
    mk.fused_pg_loss(torch.randn(4, 3), torch.randn(7, 3), torch.arange(4), torch.randn(4), impl="triton")
except RuntimeError as e:
    assert "triton" in str(e)
else:
    raise AssertionError("impl='triton' without triton must raise")
print("ok", float(loss))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def _max_errors(result: tuple, expected: tuple) -> dict[str, float]:
    (loss, stats, grads), (ref_loss, ref_stats, ref_grads) = result, expected
    pairs = {"loss": (loss, ref_loss), "logprobs": (stats["logprobs"], ref_stats["logprobs"])}
    pairs |= {"entropy": (stats["entropy"], ref_stats["entropy"])}
    pairs |= {f"grad {k}": (grads[k], ref_grads[k]) for k in grads}
    return {k: (a.float() - e.float()).abs().max().item() for k, (a, e) in pairs.items()}


def check_half_precision(impl: str, dtype: torch.dtype, device: str, case: Case) -> None:
    """Error vs the fp32 reference on the same (half-rounded) inputs is at most 2× torch's in `dtype` [fa].

    The loss is one sum of per-token terms, so the ratio of two such errors is noise around 1 (0.9 to 6 on CPU):
    its bound is 2× the torch log-prob error propagated to first order, Σ_i |dL/dlogp_i| · max_i |δlogp_i|.
    """
    inputs = make_inputs(case, dtype=dtype, device=device)
    upcast = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inputs.items()}
    expected = run("reference", upcast)
    kernel_err = _max_errors(run(impl, inputs), expected)
    torch_err = _max_errors(run("reference", inputs), expected)
    coef = torch.where(upcast["mask"], upcast["sample_weights"], 0) / upcast["mask"].sum()
    tokens = TokenInputs(upcast["advantages"], coef, upcast["old_logprobs"], upcast["ref_logprobs"])
    params = PGParams(0.2, 0.2, case.beta, case.temperature)
    dlogp = token_terms(expected[1]["logprobs"], tokens, params)[1]  # [N]
    torch_err["loss"] = max(torch_err["loss"], dlogp.abs().sum().item() * torch_err["logprobs"])
    for key, err in kernel_err.items():
        assert err <= 2 * torch_err[key], (key, err, torch_err[key])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_chunked_on_cpu(dtype):
    # The half-precision path of the shared driver (half logits and dlogits, fp32 grad_weight) runs on CPU too.
    check_half_precision("chunked", dtype, "cpu", Case(256, 64, 4001, beta=0.05, temperature=0.9))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", FUSED)
def test_half_precision_error_within_twice_torch(impl, dtype):
    check_half_precision(impl, dtype, "cuda", Case(1024, 256, 32003, beta=0.05, temperature=0.9))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", [CASES["odd"], Case(300, 64, 151936, beta=0.1)], ids=["odd", "vocab_151936"])
def test_triton_fp32_on_cuda_matches_reference(case):
    inputs = make_inputs(case, device="cuda")
    assert_same_results(run("triton", inputs), run("reference", inputs))
    assert_same_results(run("auto", inputs), run("reference", inputs))
