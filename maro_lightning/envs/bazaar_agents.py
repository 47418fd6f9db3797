"""Scripted Bazaar agents of graded strength, acting through text (docs/games.md#bazaar).

The time-dependent tactics follow the negotiation decision functions of Faratin, Sierra and Jennings (1998):
``offer_t = A + (R − A)·(t/(T−1))^(1/e)`` with anchor A (seller L, buyer L/2), own reservation R and
t the global index 0..T−1 of the message being written; e = 0.3 boulware, 1 linear, 3 conceder.
"""

from __future__ import annotations

from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.registry import register_agent

BOULWARE, LINEAR, CONCEDER = 0.3, 1.0, 3.0


def _anchor(view: dict[str, Any]) -> float:
    return view["listing"] if view["role"] == "seller" else view["listing"] / 2


def _better_or_equal(view: dict[str, Any], price: float, than: float) -> bool:
    """Is ``price`` at least as good as ``than`` for the viewer (higher for a seller, lower for a buyer)?"""
    return price >= than if view["role"] == "seller" else price <= than


def _is_last_turn(view: dict[str, Any]) -> bool:
    """No later message of this player fits in the limit."""
    return len(view["history"]) + 2 >= view["max_messages"]


class _Bargainer(ScriptedAgent):
    """Shared accept rule: take the standing offer when it is at least as good as my next offer and within my
    reservation; on my last turn, take anything within my reservation. Subclasses choose the next offer."""

    def next_offer(self, view: dict[str, Any]) -> int:
        raise NotImplementedError

    def act(self, view: dict[str, Any]) -> str:
        mine, theirs = self.next_offer(view), view["their_offer"]
        if theirs is not None and _better_or_equal(view, theirs, view["reservation"]):
            if _is_last_turn(view) or _better_or_equal(view, theirs, mine):
                return "Deal. [Accept]"
        return f"How about this? [Offer: ${mine}]"


@register_agent("bazaar", "time_dependent")
class TimeDependent(_Bargainer):
    """Concedes from its anchor to its reservation over the game; ``e`` sets the curve's shape.

    Args:
        e: concession exponent: < 1 boulware (holds out, concedes late), 1 linear, > 1 conceder.
    """

    def __init__(self, e: float = LINEAR) -> None:
        super().__init__()
        if e <= 0:
            raise ValueError(f"the concession exponent e must be > 0, got {e}")
        self.e = e

    def next_offer(self, view: dict[str, Any]) -> int:
        anchor, reservation = _anchor(view), view["reservation"]
        progress = len(view["history"]) / max(view["max_messages"] - 1, 1)
        return max(1, round(anchor + (reservation - anchor) * progress ** (1 / self.e)))

    def __repr__(self) -> str:
        return f"TimeDependent(e={self.e})"


register_agent("bazaar", "boulware")(lambda: TimeDependent(BOULWARE))
register_agent("bazaar", "linear")(lambda: TimeDependent(LINEAR))
register_agent("bazaar", "conceder")(lambda: TimeDependent(CONCEDER))


@register_agent("bazaar", "hardliner")
class Hardliner(_Bargainer):
    """Never concedes from its anchor; deals only on its last turn, and only within its reservation."""

    def next_offer(self, view: dict[str, Any]) -> int:
        return max(1, round(_anchor(view)))


@register_agent("bazaar", "tit_for_tat")
class TitForTat(_Bargainer):
    """Starts at its anchor and concedes, each turn, what the other side conceded on its last move
    (relative tit-for-tat, Faratin et al. 1998), never past its own reservation."""

    def next_offer(self, view: dict[str, Any]) -> int:
        mine = view["my_offer"] if view["my_offer"] is not None else _anchor(view)
        theirs = [m["value"] for m in view["history"] if m["speaker"] != view["role"] and m["kind"] == "offer"]
        conceded = abs(theirs[-1] - theirs[-2]) if len(theirs) >= 2 else 0
        step = -conceded if view["role"] == "seller" else conceded
        offer = mine + step
        floor = view["reservation"]
        return max(1, round(max(offer, floor) if view["role"] == "seller" else min(offer, floor)))


@register_agent("bazaar", "random")
class RandomValid(ScriptedAgent):
    """A random valid message: mostly offers around the listing price, sometimes accept, talk or walk."""

    def act(self, view: dict[str, Any]) -> str:
        roll = self.rng.random()
        if view["their_offer"] is not None and roll < 0.2:
            return "[Accept]"
        if roll < 0.25:
            return "[Walk]"
        if roll < 0.35:
            return "Let me think about it."
        listing = view["listing"]
        return f"[Offer: ${self.rng.randint(max(1, listing // 3), round(listing * 1.2))}]"
