"""The bookkeeping of benchmarks/bench_rollout.py, not its timings (benchmarks report; tests check the reporting)."""

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_rollout", ROOT / "benchmarks" / "bench_rollout.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)
ROUND = ["rollout/round", "rollout/imitation", "rollout/behaviours", "rollout/play_seconds", "rollout/score_seconds"]


def test_each_round_gets_the_training_time_the_next_round_logged(tmp_path):
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["step", *ROUND, "rollout/train_seconds", "train/loss"])
        writer.writeheader()
        for step, values, train in [(0, (1, 1, 10, 1.0, 0.1), 9.0), (10, (3, 0, 30, 3.0, 0.3), 2.5)]:
            writer.writerow({"step": step, **dict(zip(ROUND, values, strict=True)), "rollout/train_seconds": train})
        writer.writerow({"step": 3, "train/loss": 0.5})  # a training step's row: no round
        writer.writerow(
            {"step": 5, **dict(zip(ROUND, (2, 0, 20, 2.0, 0.2), strict=True)), "rollout/train_seconds": 1.5}
        )
    rows = bench.round_rows(path)
    assert [(r["phase"], r["behaviours"], r["play"]) for r in rows] == [
        ("cloning", 10, 1),
        ("RL", 20, 2),
        ("RL", 30, 3),
    ]
    assert [r["train"] for r in rows] == [1.5, 2.5, None]  # round 1's training is what round 2 measured


def test_padded_tokens_counts_each_batch_at_its_longest():
    pairs = [([1] * n, [2]) for n in (1, 5, 2, 3)]  # totals 2, 6, 3, 4: sorted batches (2, 3) and (4, 6)
    assert bench.padded_tokens(pairs, 2) == 2 * 3 + 2 * 6
