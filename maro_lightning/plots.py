"""Training curves of a run as PNG files, read from its ``metrics.csv`` (Lightning's CSVLogger)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or used
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

Series = tuple[list[float], list[float]]  # (steps, values)

TRAINING_PANELS = (  # (metric, title) of training.png
    ("rollout/invalid_rate", "invalid actions (share of the policy's turns)"),
    ("train/kl", "KL to the reference (k3)"),
    ("train/loss", "loss"),
    ("train/utility_explained_variance", "utility head: explained variance"),
)


def read_metrics(path: str | Path) -> dict[str, Series]:
    """Every metric of a CSVLogger file as (steps, values), skipping the rows where it is empty."""
    series: dict[str, Series] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            step = float(row.get("step") or "nan")
            for key, value in row.items():
                if key == "step" or value in ("", None):
                    continue
                steps, values = series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def plot_run(metrics_csv: str | Path, out_dir: str | Path) -> list[Path]:
    """``outcomes.png`` (the rollouts' reward and success per game and role, with 95% bands, the end of the
    warm start marked) and ``training.png`` (invalid actions, KL, loss, utility explained variance)."""
    series = read_metrics(metrics_csv)
    out_dir = Path(out_dir)
    warm_start_end = _warm_start_end(series)
    paths = [out_dir / "outcomes.png", out_dir / "training.png"]
    _plot_outcomes(series, warm_start_end, paths[0])
    _plot_panels(series, warm_start_end, paths[1])
    return paths


def _warm_start_end(series: dict[str, Series]) -> float | None:
    """The step of the first RL round after imitation rounds, or None."""
    steps, flags = series.get("rollout/imitation", ([], []))
    was_imitating = False
    for step, flag in zip(steps, flags, strict=True):
        if flag:
            was_imitating = True
        elif was_imitating:
            return step
    return None


def _plot_outcomes(series: dict[str, Series], warm_start_end: float | None, path: Path) -> None:
    roles = sorted(k.removeprefix("rollout/").removesuffix("/reward") for k in series if _is_role_reward(k))
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    for column, metric in enumerate(("reward", "success")):
        ax = axes[0][column]
        for role in roles:
            key = f"rollout/{role}/{metric}"
            steps, values = series[key]
            ax.plot(steps, values, label=role)
            low, high = series.get(f"{key}_low"), series.get(f"{key}_high")
            if low and high and len(low[1]) == len(values):
                ax.fill_between(steps, low[1], high[1], alpha=0.2)
        _decorate(ax, f"rollouts: {metric} per role (95% band)", warm_start_end)
        if roles:
            ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_panels(series: dict[str, Series], warm_start_end: float | None, path: Path) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(12, 7))
    for ax, (key, title) in zip(axes.flat, TRAINING_PANELS, strict=True):
        steps, values = series.get(key, ([], []))
        finite = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        if finite:
            ax.plot(*zip(*finite, strict=True))
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        _decorate(ax, title, warm_start_end)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _is_role_reward(key: str) -> bool:
    return key.startswith("rollout/") and key.endswith("/reward") and key.count("/") == 3


def _decorate(ax: plt.Axes, title: str, warm_start_end: float | None) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("optimizer step")
    ax.grid(alpha=0.3)
    if warm_start_end is not None:
        ax.axvline(warm_start_end, color="grey", linestyle="--", linewidth=1)
        transform = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.text(warm_start_end, 0.99, "cloning ", transform=transform, ha="right", va="top",
                fontsize=8, color="grey")  # fmt: skip
        ax.text(warm_start_end, 0.99, " RL", transform=transform, va="top", fontsize=8, color="grey")
