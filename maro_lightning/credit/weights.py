"""M2 role balance (docs/design.md#formulation): weighting modes in a registry, rolling counts, and the weight formula.

A weighting mode names how samples are grouped into *cells*: a function ``(game, role, success) -> cell``.
Over the cells present in the rolling window (the last ``window`` rounds, the current one included),
with ``N_c`` behaviours in cell c, N in all and K cells,

    w_c = N / (K · N_c)                                  (inverse frequency: each cell the same total)

then one scale s is chosen so that the round's weights ``clip(s · w_c, w_min, w_max)`` have mean exactly 1
(solved exactly, not by clip-then-renormalise, which would break either the mean or the range). With
a window of one round and no bound binding, every cell of the round gets the same total weight N / K.

Counts are of behaviours (samples), not of agents: M2 balances how much of the gradient each cell gets,
and a role that acts more often (a Mafia player votes every night) would otherwise get more of it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections import deque
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

import torch
from torch import Tensor

from maro_lightning.registry import Registry

Cell = tuple[str, ...]
CellFn = Callable[[str, str, bool], Cell]
Fine = tuple[str, str, bool]  # (game, role, success): the granularity the window stores
F = TypeVar("F", bound=CellFn)

WEIGHTINGS: Registry[CellFn] = Registry("weighting mode")


def register_weighting(name: str) -> Callable[[F], F]:
    """Decorator: make ``cell(game, role, success) -> tuple[str, ...]`` selectable as ``weighting=name``."""
    return WEIGHTINGS.decorator(name)


def weighting_modes() -> list[str]:
    """Names of the registered weighting modes."""
    return WEIGHTINGS.names()


def weighting(name: str) -> CellFn:
    """The cell function registered as ``name``; a clear error listing the names otherwise."""
    return WEIGHTINGS.get(name)


@register_weighting("none")
def one_cell(game: str, role: str, success: bool) -> Cell:
    """−M2: a single cell, so every weight is 1."""
    return ()


@register_weighting("role")
def role_cell(game: str, role: str, success: bool) -> Cell:
    """One cell per (game, role): every role gets the same share of the training weight."""
    return (game, role)


@register_weighting("role_success")
def role_success_cell(game: str, role: str, success: bool) -> Cell:
    """One cell per (game, role, outcome): a weak role's rare wins weigh as much as its losses."""
    return (game, role, "success" if success else "failure")


def cell_label(cell: Cell) -> str:
    """A cell's name for logging: ``"mafia/villager/success"``; ``"all"`` for the single cell."""
    return "/".join(cell) or "all"


class RollingCounts:
    """Behaviour counts per (game, role, success) for each of the last ``window`` rounds.

    The window stores the finest cells, so a run can change weighting mode and keep its counts.
    """

    def __init__(self, window: int) -> None:
        self.rounds: deque[Counter[Fine]] = deque(maxlen=window)

    def push(self, counts: Mapping[Fine, int]) -> None:
        """Add a round; the oldest falls out when the window is full."""
        self.rounds.append(Counter(counts))

    def total(self, cell: CellFn) -> Counter[Cell]:
        """Counts per cell of ``cell`` over the window."""
        out: Counter[Cell] = Counter()
        for counts in self.rounds:
            for key, n in counts.items():
                out[cell(*key)] += n
        return out

    def state_dict(self) -> list[list[list[Any]]]:
        """Plain lists (``torch.load(weights_only=True)`` reads them): per round, ``[game, role, success, n]`` rows."""
        return [[[*key, n] for key, n in sorted(counts.items())] for counts in self.rounds]

    def load_state_dict(self, state: Sequence[Sequence[Sequence[Any]]]) -> None:
        """Restore; with a smaller window than when saved, only the newest rounds are kept."""
        self.rounds.clear()
        for rows in state:
            self.push({(str(game), str(role), bool(success)): int(n) for game, role, success, n in rows})


def inverse_frequency(counts: Mapping[Cell, int]) -> dict[Cell, float]:
    """``w_c = N / (K · N_c)`` over the cells with a positive count."""
    present = {c: n for c, n in counts.items() if n > 0}
    total = sum(present.values())
    return {c: total / (len(present) * n) for c, n in present.items()}


def mean_one_scale(raw: Sequence[float], sizes: Sequence[int], low: float, high: float) -> float:
    """The scale s with ``Σ_c n_c · clip(s · w_c, low, high) = Σ_c n_c``, for ``low <= 1 <= high``.

    The mean of the clipped weights is continuous and non-decreasing in s, and linear between the
    breakpoints ``low / w_c`` and ``high / w_c``. I find the first breakpoint where it reaches 1, then
    solve the linear piece before it exactly, with the set of clipped cells fixed.
    """
    cells = list(zip(raw, sizes, strict=True))
    total = sum(sizes)
    previous = 0.0
    for point in sorted({b for w in raw for b in (low / w, high / w) if math.isfinite(b)}):
        if sum(n * min(max(point * w, low), high) for w, n in cells) >= total:
            break
        previous = point
    else:
        point = 2.0 * previous + 1.0  # past every breakpoint (w_max = inf): no cell is clipped above
    middle = (previous + point) / 2.0
    free = [(w, n) for w, n in cells if low < middle * w < high]
    if not free:  # only when low == 1: every weight is 1 at the breakpoint
        return point
    clipped = sum(n * min(max(middle * w, low), high) for w, n in cells if not low < middle * w < high)
    return (total - clipped) / sum(w * n for w, n in free)


def balance(
    cells: Sequence[Cell], window_counts: Mapping[Cell, int], clip: tuple[float, float]
) -> tuple[Tensor, dict[Cell, tuple[int, float]]]:
    """M2 weights of a round's samples.

    Args:
        cells: the cell of each of the round's N samples; every one must have a count in the window.
        window_counts: behaviours per cell over the window (the round included).
        clip: (w_min, w_max) with w_min <= 1 <= w_max.

    Returns:
        ``[N]`` float64 weights with mean 1 within ``clip``, and per window cell its (count, weight).
    """
    raw = inverse_frequency(window_counts)
    sizes = Counter(cells)
    scale = mean_one_scale([raw[c] for c in sizes], list(sizes.values()), *clip)
    final = {c: min(max(scale * w, clip[0]), clip[1]) for c, w in raw.items()}
    table = {c: (window_counts[c], final[c]) for c in sorted(raw)}
    return torch.tensor([final[c] for c in cells], dtype=torch.float64), table
