"""The configuration of MARO credit assignment (docs/design.md#formulation): one frozen dataclass of switches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODES_WITHOUT_M1_M3 = ("outcome", "role_baseline", "imitation")  # built-in modes that ignore decompose/use_utility


@dataclass(frozen=True)
class CreditConfig:
    """How finished games become per-behaviour rewards, weights and advantages.

    The defaults are full MARO (M1 + M2 + M3). The ablations are switches: ``decompose=False`` (−M1),
    ``weighting="none"`` (−M2), ``use_utility=False`` (−M3); the baselines are ``mode="outcome"``
    (GRPO-like) and ``mode="role_baseline"`` (SPIRAL, arXiv 2506.24119).
    """

    mode: str = "maro"
    """Advantage mode, a name in the advantage registry: "maro" (M1 + M3), "outcome" (z minus the round mean
    per game, GRPO-like), "role_baseline" (SPIRAL's role-conditioned EMA baseline) or "imitation" (A = 1: behaviour
    cloning of a teacher's turns, the warm start)."""

    lam: float = 0.95
    """GAE λ of the M1 decomposition (Schulman et al. 2015, arXiv 1506.02438): 1 gives ``z − V_t``, 0 the
    one-step TD error. 0.95 is the GAE paper's usual choice."""

    gamma: float = 1.0
    """Discount between a player's consecutive behaviours. 1: the outcome counts fully however late it comes."""

    alpha: float = 0.5
    """Mix of the decomposed reward and the direct utility in "maro": ``A = α·r + (1 − α)·u``."""

    decompose: bool = True
    """M1 switch. False (−M1): every behaviour of a player gets the undivided ``R_i − V_1``."""

    use_utility: bool = True
    """M3 switch. False (−M3): ``α = 1``, no utility term in the advantage."""

    normalize_per_role: bool | None = None
    """Standardise advantages per (game, role) over the round. None: the mode's default (on for "maro",
    off for "outcome" and "role_baseline", which are defined without it)."""

    norm_eps: float = 1e-6
    """Floor of the per-role standard deviation: a group with no spread gets advantage 0, not inf."""

    weighting: str = "role"
    """M2 weighting mode, a name in the weighting registry: "none", "role" or "role_success"."""

    window: int = 4
    """Rounds counted by M2 (the current one included): more rounds give steadier weights."""

    weight_clip: tuple[float, float] = (0.2, 5.0)
    """[w_min, w_max] of the M2 weights; the weights keep mean 1 inside it (w_min <= 1 <= w_max)."""

    ema_decay: float = 0.95
    """Decay of the per-(game, role) EMA baseline of "role_baseline" (SPIRAL's 0.95)."""

    utility_target: Literal["outcome", "lambda_return"] = "outcome"
    """What the utility head regresses at V and Q: the return-to-go (= z_i without shaping) or the
    λ-return ``V_t + r_t``."""

    invalid_penalty: float = 0.0
    """Subtracted from the immediate reward ρ_t of every invalid behaviour (an unparseable or illegal action,
    retries included): a format cost, in the spirit of SPIRAL's forfeit for invalid moves (arXiv 2506.24119), so
    that stalling through invalid actions is never free. 0: no cost."""

    def __post_init__(self) -> None:
        _check(self.invalid_penalty >= 0.0, f"invalid_penalty must be >= 0, got {self.invalid_penalty}")
        switched_off = [name for name in ("decompose", "use_utility") if not getattr(self, name)]
        _check(
            not switched_off or self.mode not in MODES_WITHOUT_M1_M3,
            f"{' and '.join(f'{name}=False' for name in switched_off)} switch off parts of mode 'maro'; mode "
            f"{self.mode!r} has no M1 decomposition or M3 utility to switch off (set mode: maro, or leave them True)",
        )
        _check(0.0 <= self.lam <= 1.0, f"lam must be in [0, 1], got {self.lam}")
        _check(0.0 < self.gamma <= 1.0, f"gamma must be in (0, 1], got {self.gamma}")
        _check(0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}")
        _check(self.norm_eps > 0.0, f"norm_eps must be > 0, got {self.norm_eps}")
        _check(self.window >= 1, f"window must be >= 1 round, got {self.window}")
        _check(0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        low, high = self.weight_clip
        _check(
            0.0 <= low <= 1.0 <= high,
            f"weight_clip needs 0 <= w_min <= 1 <= w_max, got {self.weight_clip}",
        )
        _check(
            self.utility_target in ("outcome", "lambda_return"),
            f"utility_target must be outcome or lambda_return, got {self.utility_target!r}",
        )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"CreditConfig: {message}")
