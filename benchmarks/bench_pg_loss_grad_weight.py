"""The error of the fused loss's grad_weight accumulator in the weight's dtype (bf16) against the fp32 one.

The inputs are those of `test_grad_weight_in_bf16_stays_within_the_summation_bound` (tests/kernels/test_pg_loss.py:
bf16, H = 16, V = 300, chunks of 8 rows) at N = 8·K for each K of `--chunks`. Per impl and K it reports the largest
|g_weight − g_float32| as a share of the bound of docs/kernels.md#accumulating-in-the-weights-dtype (n/a from
K = 254 on, where the bound is void), the relative Frobenius distance of the two gradients, that of each from the
fp64 reference on the same bf16 inputs, and the share of elements that differ. Reports; asserts nothing.

    OMP_NUM_THREADS=1 TRITON_INTERPRET=1 python benchmarks/bench_pg_loss_grad_weight.py --chunks 8 64 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernels"))
from bench_pg_loss import import_maro_kernels  # noqa: E402  (maro_kernels from kernels/ in a bare checkout)

mk = import_maro_kernels()
from test_pg_loss import BF16_U  # noqa: E402  (the test's inputs and constants, so the setting is the test's)
from test_pg_loss import FP32_U  # noqa: E402
from test_pg_loss import Case  # noqa: E402
from test_pg_loss import gamma  # noqa: E402
from test_pg_loss import make_inputs  # noqa: E402

ROWS, H, V = 8, 16, 300


def _recording(row_fn, chunks: list[torch.Tensor]):
    """`row_fn`, keeping a copy of each chunk's dL/dlogits in `chunks`."""

    def rows(*args):
        dlogits = row_fn(*args)
        chunks.append(dlogits.clone())
        return dlogits

    return rows


def _grad(impl: str, inputs: dict, mode: str, chunks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The weight's gradient (fp64 copy); `chunks` collects each chunk's dL/dlogits when given."""
    row_fns = {name: getattr(mk, name) for name in ("torch_rows", "triton_rows")}
    for name, row_fn in row_fns.items():
        setattr(mk, name, row_fn if chunks is None else _recording(row_fn, chunks))
    try:
        weight = inputs["weight"].detach().clone().requires_grad_()
        kwargs = {k: v for k, v in inputs.items() if k not in ("hidden", "weight", "targets", "advantages")}
        loss, _ = mk.fused_pg_loss(
            inputs["hidden"], weight, inputs["targets"], inputs["advantages"], impl=impl, grad_weight_dtype=mode,
            **kwargs,
        )  # fmt: skip
        loss.backward()
    finally:
        for name, row_fn in row_fns.items():
            setattr(mk, name, row_fn)
    return weight.grad.double()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def measure(impl: str, k: int) -> dict[str, float]:
    """The numbers of one row: K chunks of `ROWS` rows."""
    inputs = make_inputs(Case(ROWS * k, H, V, beta=0.05), dtype=torch.bfloat16)
    double = {n: t.double() if torch.is_tensor(t) and t.is_floating_point() else t for n, t in inputs.items()}
    exact, dz, default_elems = _grad("reference", double, "float32"), [], mk.chunked.CPU_CHUNK_ELEMS
    mk.chunked.CPU_CHUNK_ELEMS = ROWS * V
    try:
        g32, g16 = _grad(impl, inputs, "float32", dz), _grad(impl, inputs, "weight")
    finally:
        mk.chunked.CPU_CHUNK_ELEMS = default_elems
    h = inputs["hidden"].double().split(ROWS)
    error = (g16 - g32).abs()
    share = float("nan")
    if (k + 2) * BF16_U < 1:
        spread = sum((d.double().T @ hk).abs() for d, hk in zip(dz, h, strict=True))  # Σ_k |x_k|
        abs_products = sum(d.double().abs().T @ hk.abs() for d, hk in zip(dz, h, strict=True))
        bound = gamma(k + 2, BF16_U) * spread + 2 * gamma(ROWS + k, FP32_U) * abs_products
        share = (error / bound).nan_to_num().max().item()
    return {
        "share": share,
        "g16_g32": _relative(g16, g32),
        "g32_fp64": _relative(g32, exact),
        "g16_fp64": _relative(g16, exact),
        "differ": (error > 0).double().mean().item(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 64, 512], help="numbers of chunks K")
    parser.add_argument("--impls", nargs="+", default=["chunked", "triton"], choices=["chunked", "triton"])
    args = parser.parse_args(argv)
    print("| impl | K | N | max error / bound | ‖g_weight − g_f32‖/‖g_f32‖ | f32 vs fp64 | weight vs fp64 | differ |")
    print("|---" * 8 + "|")
    for impl in args.impls:
        for k in args.chunks:
            r = measure(impl, k)
            share = "n/a" if r["share"] != r["share"] else f"{r['share']:.2f}"
            print(
                f"| {impl} | {k} | {ROWS * k} | {share} | {r['g16_g32']:.1e} | {r['g32_fp64']:.1e} | "
                f"{r['g16_fp64']:.1e} | {r['differ']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
