"""Fused policy-gradient loss: forward+backward time and peak memory per impl, over a sweep of N and V.

Impls: `reference` (plain torch, materializes [N, V] logits), `compiled` (torch.compile of the reference),
`chunked` (torch, chunked), `triton` (CUDA), `liger` (Liger-Kernel's LigerFusedLinearGRPOLoss, when installed) and,
on CUDA, `matmul3`: the three bare matmuls of the same shapes (logits, grad_hidden, grad_weight), the floor any fused
loss can reach. Every impl gets the same case, the one Liger supports: one advantage per sequence of 512 tokens
broadcast over its tokens, sample weights 1, on-policy, no KL.

Each (impl, shape) runs in a fresh subprocess, so one impl's allocator state or OOM cannot touch another's numbers.
Time: median of `--repeats` fwd+bwd after `--warmup` (time.perf_counter, torch.cuda.synchronize on CUDA).
Peak memory beyond inputs and gradients: on CUDA, torch.cuda.max_memory_allocated minus what was allocated before
the step, minus the gradients' bytes. On CPU, the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs after malloc_trim) minus the resident set before the step, minus the gradients' bytes: RSS
counts what torch's CPU allocator (plain malloc/mmap) really touched. Reports; asserts nothing.

`--grad-weight-dtype weight` makes chunked and triton accumulate grad_weight in the weight's dtype (docs/kernels.md);
after the table, the accumulator's size in both modes is printed for each shape, computed from V·H and the dtypes.

    OMP_NUM_THREADS=1 python benchmarks/bench_pg_loss.py --n 8192 --h 256 --v 32000 --impls reference chunked
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# The reference first (the ratios need it), torch.compile last: if a time limit cuts a sweep, it cuts the least needed.
IMPLS = ("reference", "triton", "matmul3", "liger", "chunked", "compiled")
SEQ_LEN = 512  # tokens per sequence in the per-sequence-advantage case


def import_maro_kernels():
    """`maro_kernels`, from the install or, in a bare checkout (the GPU image), from the repository's kernels/."""
    if importlib.util.find_spec("maro_kernels") is None:
        kernels = Path(__file__).resolve().parents[1] / "kernels"
        spec = importlib.util.spec_from_file_location(
            "maro_kernels", kernels / "__init__.py", submodule_search_locations=[str(kernels)]
        )
        sys.modules["maro_kernels"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["maro_kernels"])
    return importlib.import_module("maro_kernels")


def make_case(n: int, h: int, v: int, dtype: torch.dtype, device: str) -> dict:
    """Inputs of one call: hidden [N, H] and weight [V, H] as leaves, targets [N], per-sequence advantages [N]."""
    g = torch.Generator(device).manual_seed(0)  # on the device: 0.5 G random numbers are slow on one CPU thread
    seq = SEQ_LEN if n % SEQ_LEN == 0 else n
    return {
        "hidden": torch.randn(n, h, generator=g, device=device).to(dtype).requires_grad_(),
        "weight": (torch.randn(v, h, generator=g, device=device) / math.sqrt(h)).to(dtype).requires_grad_(),
        "targets": torch.randint(0, v, (n,), generator=g, device=device),
        "seq_advantages": torch.randn(n // seq, generator=g, device=device),  # [B]
        "seq_len": seq,
    }


def make_step(impl: str, case: dict, grad_weight_dtype: str = "float32"):
    """A closure running one forward+backward of `impl` on `case`."""
    mk = import_maro_kernels()
    hidden, weight, targets = case["hidden"], case["weight"], case["targets"]
    advantages = case["seq_advantages"].repeat_interleave(case["seq_len"])  # [N]: per token, broadcast
    if impl in ("reference", "chunked", "triton"):
        kwargs = {"impl": impl, "grad_weight_dtype": grad_weight_dtype}  # reference ignores the accumulator's dtype
        return lambda: mk.fused_pg_loss(hidden, weight, targets, advantages, **kwargs)[0].backward()
    if impl == "compiled":
        compiled = torch.compile(mk.pg_loss_reference)
        return lambda: compiled(hidden, weight, targets, advantages)[0].backward()
    if impl == "liger":
        return _liger_step(case)
    if impl == "matmul3":
        return lambda: _three_matmuls(hidden.detach(), weight.detach())
    raise ValueError(f"unknown impl {impl!r}")


def _liger_step(case: dict):
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss  # optional: absent on the GPU image

    loss_fn = LigerFusedLinearGRPOLoss(beta=0.0, use_ref_model=False, loss_type="bnpo")
    b, t = case["seq_advantages"].shape[0], case["seq_len"]
    ids, mask = case["targets"].view(b, t), torch.ones(b, t, device=case["targets"].device)  # [B, T]

    def step() -> None:
        hidden = case["hidden"].view(b, t, -1)  # [B, T, H], a view: the grad lands on the [N, H] leaf
        out = loss_fn(hidden, case["weight"], ids, mask, case["seq_advantages"])
        (out[0] if isinstance(out, tuple) else out).backward()

    return step


def _three_matmuls(hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = hidden @ weight.T  # [N, V]: stands in for dlogits too
    return logits @ weight, logits.T @ hidden  # [N, H], [V, H]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_ms(step, case: dict, device: str, warmup: int, repeats: int) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        case["hidden"].grad = case["weight"].grad = None
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _peak_extra_bytes(step, case: dict, device: str) -> int:
    """Peak bytes one step adds beyond what exists before it (inputs) and the gradients it leaves."""
    case["hidden"].grad = case["weight"].grad = None
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # return freed heap pages, so the baseline holds only live memory
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        before = _rss_kib("VmRSS") * 1024
        step()
        peak = _rss_kib("VmHWM") * 1024
    grads = sum(t.grad.numel() * t.grad.element_size() for t in (case["hidden"], case["weight"]) if t.grad is not None)
    return peak - before - grads


def worker(spec: dict) -> dict:
    """Measures one (impl, shape) in this process; returns the numbers as a dict."""
    mk = import_maro_kernels()
    if spec.get("chunk_elems"):
        mk.chunked.CPU_CHUNK_ELEMS = mk.chunked.CUDA_CHUNK_ELEMS = spec["chunk_elems"]
    case = make_case(spec["n"], spec["h"], spec["v"], getattr(torch, spec["dtype"]), spec["device"])
    step = make_step(spec["impl"], case, spec["grad_weight_dtype"])
    times = _time_ms(step, case, spec["device"], spec["warmup"], spec["repeats"])
    return {"ms": statistics.median(times), "extra_bytes": _peak_extra_bytes(step, case, spec["device"])}


def measure(spec: dict, timeout: float) -> dict:
    """Runs `worker` in a fresh interpreter; failures (OOM, no Liger, no compiler) come back as `error`."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    if out.returncode != 0:
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()] or ["failed"]
        return {"error": lines[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


TABLE_HEAD = (
    "| impl | N | H | V | dtype | fwd+bwd ms | TFLOP/s (6NHV) | peak extra MiB | time / ref | mem / ref |\n"
    + "|---" * 10
    + "|"
)


def table_row(r: dict, ref: dict | None) -> str:
    """One markdown row; the ratios are against `ref`, the reference at the same shape."""
    shape = f"| {r['impl']} | {r['n']} | {r['h']} | {r['v']} | {r['dtype']} |"
    if "error" in r:
        return f"{shape} n/a: {r['error']} | | | | |"
    tflops = 6 * r["n"] * r["h"] * r["v"] / (r["ms"] * 1e-3) / 1e12
    ok = ref is not None and "ms" in ref and ref["extra_bytes"] > 0
    ratios = f"{r['ms'] / ref['ms']:.2f} | {r['extra_bytes'] / ref['extra_bytes']:.3f}" if ok else " | "
    return f"{shape} {r['ms']:.1f} | {tflops:.2f} | {r['extra_bytes'] / 2**20:.0f} | {ratios} |"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def header(device: str, grad_weight_dtype: str) -> str:
    name = torch.cuda.get_device_name() if device == "cuda" else f"{_cpu_name()} ({os.cpu_count()} cores)"
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    threads = f"{torch.get_num_threads()} CPU threads"
    return f"{stamp} · {name} · torch {torch.__version__} · {threads} · grad_weight_dtype {grad_weight_dtype}"


def accumulator_table(shapes: list[tuple[int, int, int]], dtype: str) -> list[str]:
    """The fused impls' grad_weight accumulator `[V, H]` in both modes, from the sizes: it does not depend on N."""
    weight_bytes = torch.empty((), dtype=getattr(torch, dtype)).element_size()
    lines = ["", "grad_weight accumulator of chunked/triton, computed as V·H·bytes (not measured):", ""]
    lines += ["| H | V | weight dtype | float32 MiB | weight MiB |", "|---" * 5 + "|"]
    for h, v in dict.fromkeys((h, v) for _, h, v in shapes):  # each (H, V) once, in order
        mib = [v * h * size / 2**20 for size in (4, weight_bytes)]
        lines.append(f"| {h} | {v} | {dtype} | {mib[0]:.1f} | {mib[1]:.1f} |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8192], help="token counts N (sweep)")
    parser.add_argument("--v", type=int, nargs="+", default=[32000], help="vocabulary sizes V (sweep)")
    parser.add_argument("--h", type=int, default=256, help="hidden size H")
    parser.add_argument(
        "--shapes", nargs="+", default=None, help="NxHxV shapes, e.g. 16384x4096x128256; replace the sweep"
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--impls", nargs="+", default=None, choices=IMPLS, help="default: all that apply")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--chunk-elems", type=int, default=0, help="override the chunk size, in logit elements")
    parser.add_argument(
        "--grad-weight-dtype",
        default="float32",
        choices=["float32", "weight"],
        help="chunked/triton's grad_weight accumulator (docs/kernels.md)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per (impl, shape)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    impls = args.impls or [i for i in IMPLS if args.device == "cuda" or i not in ("triton", "matmul3")]
    shapes = [tuple(map(int, s.split("x"))) for s in args.shapes] if args.shapes else None
    shapes = shapes or [(n, args.h, v) for n in args.n for v in args.v]
    lines = [header(args.device, args.grad_weight_dtype), "", TABLE_HEAD]
    print("\n".join(lines), flush=True)
    for n, h, v in shapes:
        ref = None  # rows stream out as measured (a timeout keeps what was done); the reference comes first
        for impl in impls:
            spec = {"impl": impl, "n": n, "h": h, "v": v, "dtype": args.dtype, "device": args.device}
            spec |= {"repeats": args.repeats, "warmup": args.warmup, "chunk_elems": args.chunk_elems}
            spec |= {"grad_weight_dtype": args.grad_weight_dtype}
            row = spec | measure(spec, args.timeout)
            ref = row if impl == "reference" else ref
            lines.append(table_row(row, ref))
            print(lines[-1], flush=True)
    accumulator = accumulator_table(shapes, args.dtype)
    print("\n".join(accumulator), flush=True)
    lines += accumulator
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
