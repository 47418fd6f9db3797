"""benchmarks/train_smoke.py (run by gpu_check.sh on a GPU) still runs, here on the CPU at a tiny size."""

import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_smoke.py"


def test_train_smoke_runs_on_cpu(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--device", "cpu", "--steps", "3", "--games", "4"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    table = capsys.readouterr().out.splitlines()
    assert table[-3].startswith("| steps | rounds |") and table[-1].startswith("| 3 |")
