"""The CPU-side parts of the kernel benchmarks and of the GPU check script (they report; nothing here times)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_every_cpu_impl_at_a_tiny_shape(tmp_path):
    # Under TRITON_INTERPRET=1 the triton row runs on CPU too; matmul3 (the floor) runs anywhere.
    out = tmp_path / "bench.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_pg_loss.py"), "--shapes", "64x16x1000"]
    cmd += ["--impls", "reference", "chunked", "triton", "matmul3", "--repeats", "1", "--warmup", "0"]
    cmd += ["--device", "cpu", "--out", str(out), "--grad-weight-dtype", "weight"]
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == out.read_text().strip()  # what streamed out is what the file keeps
    table, accumulator = out.read_text().split("\n\ngrad_weight accumulator")
    assert table.splitlines()[0].endswith("· grad_weight_dtype weight")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "impl" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["reference", "chunked", "triton", "matmul3"]
    assert not any("n/a" in row for row in rows), rows
    assert rows[0].rstrip().endswith("| 1.00 | 1.000 |")  # the reference is its own baseline
    assert accumulator.strip().splitlines()[-1] == "| 16 | 1000 | float32 | 0.1 | 0.1 |"  # fp32: the same bytes


def test_accumulator_table_halves_for_bf16():
    spec = importlib.util.spec_from_file_location("bench_pg_loss", ROOT / "benchmarks" / "bench_pg_loss.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = bench.accumulator_table([(16384, 4096, 128256), (4096, 4096, 128256)], "bfloat16")  # one (H, V)
    assert [line for line in lines if line.startswith("| 4096")] == ["| 4096 | 128256 | bfloat16 | 2004.0 | 1002.0 |"]


def test_gpu_check_script_parses():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "16384x4096x128256" in script.read_text()


def test_grad_weight_bench_reports_the_test_setting(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    bench = importlib.import_module("bench_pg_loss_grad_weight")
    bench.main(["--chunks", "8", "--impls", "chunked", "triton"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()[2:]]
    assert [[cell.strip() for cell in row[:3]] for row in rows] == [["chunked", "8", "64"], ["triton", "8", "64"]]
    assert all(0 < float(row[3]) <= 1 for row in rows)  # within the bound, and not a no-op
