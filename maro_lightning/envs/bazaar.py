"""Bazaar: a buyer and a seller bargain over the price of one item (docs/games.md).

After CraigslistBargain (He et al. 2018, "Decoupling Strategy and Generation in Negotiation Dialogues")
and the negotiation decision functions of Faratin et al. (1998). Player 0 is the seller, player 1 the buyer.

Compact observation (one line, for small models trained from scratch)::

    S L=100 r=92 t=7 | 100 50 100 51 99 56 94 >

role (``S``/``B``), listing price, own reservation, messages so far, then one token per message in order:
the offer's price, ``A`` (accept), ``W`` (walk) or ``-`` (talk only); ``>`` marks that it is the reader's turn.
"""

from __future__ import annotations

import math
import random
from typing import Any
from typing import Literal

from maro_lightning.envs.base import Action
from maro_lightning.envs.base import SocialEnv
from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import parse_int
from maro_lightning.envs.registry import register_game

SELLER, BUYER = 0, 1
ROLES = {SELLER: "seller", BUYER: "buyer"}
ITEMS = (
    "used road bike",
    "vintage desk lamp",
    "pair of hiking boots",
    "second-hand sofa",
    "acoustic guitar",
    "espresso machine",
    "mountain tent",
    "oak bookshelf",
    "digital camera",
    "set of cast-iron pans",
)
_MARKS = {"accept": "A", "walk": "W", "talk": "-"}


@register_game
class Bazaar(SocialEnv):
    """Two-player bargaining with private reservations and a message limit.

    Args:
        listing_range: the listing price L is a log-uniform integer in this range.
        seller_fraction: the seller's reservation is ``round(L · U(lo, hi))``.
        buyer_fraction: the buyer's reservation is ``round(L · U(lo, hi))``.
        max_messages: T, messages in total (both players) before the game ends with no deal.
        first: who writes the first message. With T even and the seller first, the seller makes the last
            answerable offer: structural power, the main source of role imbalance.
        reward: ``"share"`` (each side's share of the surplus, mixed motive) or ``"zero_sum"``
            (+1 to whoever got the larger share of the surplus, −1 to the other, 0 on a tie or no deal).
        no_deal_reward: both players' reward when there is no deal (an outside option; 0 by default).
        **kwargs: the shared options of :class:`SocialEnv` (obs_format, max_retries, on_invalid, strict,
            max_public_chars).
    """

    name = "bazaar"
    tags = ("offer", "accept", "walk")
    agreement_metric = "deal"

    def __init__(
        self,
        *,
        listing_range: tuple[int, int] = (20, 2000),
        seller_fraction: tuple[float, float] = (0.55, 0.80),
        buyer_fraction: tuple[float, float] = (0.65, 1.00),
        max_messages: int = 10,
        first: Literal["seller", "buyer"] = "seller",
        reward: Literal["share", "zero_sum"] = "share",
        no_deal_reward: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_range("listing_range", listing_range, low=1)
        _check_range("seller_fraction", seller_fraction, low=0)
        _check_range("buyer_fraction", buyer_fraction, low=0)
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        if first not in ROLES.values() or reward not in ("share", "zero_sum"):
            raise ValueError(f"first must be seller|buyer and reward share|zero_sum, got {first!r}, {reward!r}")
        self.listing_range = listing_range
        self.seller_fraction = seller_fraction
        self.buyer_fraction = buyer_fraction
        self.max_messages = max_messages
        self.first = SELLER if first == "seller" else BUYER
        self.reward = reward
        self.no_deal_reward = no_deal_reward

    # ------------------------------------------------------------------------------------------ rules
    def _setup(self, rng: random.Random) -> None:
        lo, hi = self.listing_range
        self.listing = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        self.reservation = {
            SELLER: round(self.listing * rng.uniform(*self.seller_fraction)),
            BUYER: round(self.listing * rng.uniform(*self.buyer_fraction)),
        }
        self.item = rng.choice(ITEMS)
        self.offers: dict[int, int | None] = {SELLER: None, BUYER: None}
        self.history: list[dict[str, Any]] = []  # accepted messages: speaker, public text, kind, value
        self.price: int | None = None
        self.walked = False

    @property
    def roles(self) -> dict[int, str]:
        return ROLES

    def _finished(self) -> bool:
        return self.price is not None or self.walked or len(self.history) >= self.max_messages

    def _to_act(self) -> list[int]:
        return [self.first if len(self.history) % 2 == 0 else 1 - self.first]

    def _phase(self) -> str:
        return "bargain"

    def _parse(self, player: int, tag_name: str | None, arg: str | None) -> Action:
        if tag_name == "offer":
            price = parse_int(arg, "the offer")
            if not 1 <= price <= 10 * self.listing:
                raise InvalidAction(f"the offer must be between $1 and ${10 * self.listing}, got ${price}")
            return Action("offer", price)
        if tag_name == "accept" and self.offers[1 - player] is None:
            raise InvalidAction(f"there is no offer from the {ROLES[1 - player]} to accept")
        return Action(tag_name or "talk")

    def _apply(self, player: int, action: Action, talk: str) -> dict[str, Any]:
        info = self._features(player, action)
        if action.kind == "offer":
            self.offers[player] = action.value
        elif action.kind == "accept":
            self.price = self.offers[1 - player]
        elif action.kind == "walk":
            self.walked = True
        value = action.value if action.kind == "offer" else self.price if action.kind == "accept" else None
        self.history.append({"speaker": ROLES[player], "talk": talk, "kind": action.kind, "value": value})
        return info

    def _features(self, player: int, action: Action) -> dict[str, Any]:
        """Per-turn credit features: the behaviour, its concession, and what the standing offer was worth."""
        standing = self.offers[1 - player]
        info: dict[str, Any] = {"kind": action.kind, "message": len(self.history)}
        info["standing_share"] = None if standing is None else self.share(player, standing)
        if action.kind == "offer":
            info["offer"] = action.value
            info["offer_share"] = self.share(player, action.value)
            previous = self.offers[player]
            # Positive = moved towards the other side, in units of the listing price.
            info["concession"] = None if previous is None else (previous - action.value) * _sign(player) / self.listing
        return info

    def _default_action(self, player: int) -> Action:
        return Action("talk")

    def _render_action(self, action: Action) -> str:
        return _action_text(action.kind, action.value)

    # -------------------------------------------------------------------------------------- outcome
    def share(self, player: int, price: int) -> float:
        """``player``'s share of the surplus at ``price``, clipped to [−1, 1] (docs/games.md#bazaar)."""
        s, b = self.reservation[SELLER], self.reservation[BUYER]
        gain = price - s if player == SELLER else b - price
        scale = b - s if b > s else self.listing  # no zone of agreement: normalise by the listing
        return max(-1.0, min(1.0, gain / scale))

    def _rewards(self) -> tuple[dict[int, float], dict[int, bool]]:
        if self.price is None:
            return {p: self.no_deal_reward for p in ROLES}, {p: False for p in ROLES}
        shares = {p: self.share(p, self.price) for p in ROLES}
        success = {p: shares[p] >= 0.5 for p in ROLES}
        if self.reward == "zero_sum":
            diff = shares[SELLER] - shares[BUYER]
            sign = (diff > 0) - (diff < 0)
            return {SELLER: float(sign), BUYER: float(-sign)}, success
        return shares, success

    def _metrics(self) -> dict[str, float]:
        zone = self.reservation[BUYER] >= self.reservation[SELLER]
        deal = self.price is not None
        metrics = {
            "deal": float(deal),
            "zone": float(zone),
            "deal_in_zone": float(deal and zone),
            "walk_correct": float(deal == zone),  # deal when a zone exists, none when it does not
            "messages": float(len(self.history)),
        }
        if deal:
            metrics["seller_share"] = self.share(SELLER, self.price)
            metrics["buyer_share"] = self.share(BUYER, self.price)
            metrics["price_over_listing"] = self.price / self.listing
        return metrics

    # ------------------------------------------------------------------------------- what a player sees
    def view(self, player: int) -> dict[str, Any]:
        self._check_player(player)
        other = 1 - player
        return {
            "game": self.name,
            "player": player,
            "role": ROLES[player],
            "item": self.item,
            "listing": self.listing,
            "reservation": self.reservation[player],
            "max_messages": self.max_messages,
            "first": ROLES[self.first],
            "reward": self.reward,
            "no_deal_reward": self.no_deal_reward,
            "history": [dict(m) for m in self.history],
            "my_offer": self.offers[player],
            "their_offer": self.offers[other],
            "my_turn": player in self.to_act(),
            "done": self.done,
        }

    def _render_compact(self, view: dict[str, Any]) -> str:
        marks = [str(m["value"]) if m["kind"] == "offer" else _MARKS[m["kind"]] for m in view["history"]]
        head = f"{view['role'][0].upper()} L={view['listing']} r={view['reservation']} t={len(view['history'])}"
        return " ".join([head, "|", *marks, *([">"] if view["my_turn"] else [])])

    def _render_full(self, view: dict[str, Any]) -> str:
        return "\n\n".join([_rules(view), _private(view), _transcript(view), _turn(view)])


# ------------------------------------------------------------------------------------- prompt sections
def _rules(view: dict[str, Any]) -> str:
    return (
        "You are playing Bazaar, a two-player bargaining game between a seller and a buyer.\n"
        f"Item for sale: {view['item']}. Listing price: ${view['listing']}.\n"
        f"The players take turns writing messages, the {view['first']} first; at most {view['max_messages']} "
        "messages in total. A message may contain talk and at most one action in square brackets:\n"
        "  [Offer: $X]  propose a price X (a whole number of dollars); it replaces your previous offer\n"
        "  [Accept]     accept the other player's latest offer: the game ends with a deal at that price\n"
        "  [Walk]       leave: the game ends with no deal\n"
        "If the message limit is reached without an accepted offer, there is no deal.\n"
        "Each player has a private reservation price: the seller should not sell below theirs, the buyer should "
        f"not pay above theirs. {_scoring(view)} Text inside <think>...</think> is private and never shown."
    )


def _scoring(view: dict[str, Any]) -> str:
    shares = (
        "On a deal at price p, the seller's share is (p - seller reservation) and the buyer's (buyer reservation - p), "
        "each divided by the gap between the two reservations (between -1 and 1; they add up to 1 when p lies "
        "between the reservations)."
    )
    if view["reward"] == "zero_sum":
        scores = " Whoever gets the larger share scores +1 and the other -1 (0 on a tie)."
    else:
        scores = " Each player scores their share."
    return f"{shares}{scores} With no deal both score {view['no_deal_reward']:g}."


def _private(view: dict[str, Any]) -> str:
    limit = "sell below" if view["role"] == "seller" else "pay more than"
    return (
        f"You are the {view['role'].upper()}. Your private reservation price is ${view['reservation']}: "
        f"never {limit} it. The other player's reservation is unknown to you."
    )


def _transcript(view: dict[str, Any]) -> str:
    lines = [f"  {m['speaker'].capitalize()}: {_shown(m)}" for m in view["history"]]
    offers = f"Standing offers: yours {_money(view['my_offer'])}, theirs {_money(view['their_offer'])}."
    return "Transcript so far:\n" + ("\n".join(lines) if lines else "  (no messages yet)") + "\n" + offers


def _turn(view: dict[str, Any]) -> str:
    if view["done"] or not view["my_turn"]:
        return "The game is over." if view["done"] else "Wait for the other player's message."
    t, total = len(view["history"]) + 1, view["max_messages"]
    legal = [f"  [Offer: $X]  with X a whole number from 1 to {10 * view['listing']}"]
    if view["their_offer"] is not None:
        legal.append(f"  [Accept]     accept their offer of ${view['their_offer']}")
    legal.append("  [Walk]       end the game with no deal")
    return (
        f"It is your turn: message {t} of {total}"
        f"{' (the last one)' if t == total else ''}. Legal actions now (use at most one; no tag = talk only):\n"
        + "\n".join(legal)
    )


def _shown(message: dict[str, Any]) -> str:
    action = _action_text(message["kind"], message["value"])
    return " ".join(part for part in (message["talk"], action) if part) or "(says nothing)"


def _action_text(kind: str, value: int | None) -> str:
    return {"offer": f"[Offer: ${value}]", "accept": "[Accept]", "walk": "[Walk]"}.get(kind, "")


def _money(value: int | None) -> str:
    return "none" if value is None else f"${value}"


def _sign(player: int) -> int:
    """+1 for the seller (conceding = lowering the price), −1 for the buyer (conceding = raising it)."""
    return 1 if player == SELLER else -1


def _check_range(option: str, bounds: tuple[float, float], *, low: float) -> None:
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1]:
        raise ValueError(f"{option} must be (lo, hi) with {low} <= lo <= hi, got {bounds!r}")
