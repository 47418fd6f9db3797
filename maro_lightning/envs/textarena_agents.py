"""Scripted agents for three TextArena games (docs/games.md#textarena), acting through text as a model would.

An agent reads its player's view (the TextArena observation and the messages it is made of) and reads only the
game's messages (sender ``-1``), never a player's words, which could imitate them. It answers in the move format
TextArena's rules accept. Importing this module does not import TextArena.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from maro_lightning.envs.agents import ScriptedAgent
from maro_lightning.envs.registry import register_agent

KUHN = "textarena:KuhnPoker-v0"
TICTACTOE = "textarena:TicTacToe-v0"
NEGOTIATION = "textarena:SimpleNegotiation-v0"
GAME_ID = -1  # textarena.GAME_ID: the sender of the game's own messages


def game_messages(view: dict[str, Any]) -> list[str]:
    """The game's messages to the viewer, in order (players' words left out)."""
    return [text for sender, text in view["messages"] if sender == GAME_ID]


# --------------------------------------------------------------------------------------------- Kuhn Poker
_ROUND = re.compile(r"Starting round \d+ out of \d+ rounds\. Your card is: '([JQK])'")
_MOVE = re.compile(r"Player \d+, submitted move: '\[(\w+)\]'")
_LEGAL = re.compile(r"Your available actions are: (.*)")


def kuhn_hand(view: dict[str, Any]) -> tuple[str, list[str], list[str]]:
    """The viewer's card in the current round, the moves of that round so far, and the legal moves now."""
    card, moves, legal = "", [], []
    for text in game_messages(view):
        if started := _ROUND.search(text):
            card, moves = started.group(1), []
        elif moved := _MOVE.search(text):
            moves.append(moved.group(1).lower())
        elif offered := _LEGAL.search(text):
            legal = re.findall(r"\[(\w+)\]", offered.group(1))
    return card, moves, legal


# The second player's equilibrium strategy is unique: bet probabilities after a check, call probabilities after a bet.
SECOND_BET = {"J": 1 / 3, "Q": 0.0, "K": 1.0}
SECOND_CALL = {"J": 0.0, "Q": 1 / 3, "K": 1.0}


@register_agent(KUHN, "nash")
class KuhnNash(ScriptedAgent):
    """A Nash equilibrium of one hand of Kuhn poker (Kuhn 1950), per round (each round is a new hand).

    The first player to act bets a J with probability α, never bets a Q, bets a K with probability 3α; after
    check-bet it folds a J, calls with a Q with probability α + 1/3 and calls with a K. The second player, after a
    bet, calls with a K, with a Q with probability 1/3, and folds a J; after a check it bets a K, checks a Q and bets
    a J with probability 1/3. Every α in [0, 1/3] is an equilibrium; the first player's value is −1/18 chip a hand.

    Args:
        alpha: α, the first player's bluffing frequency with a J.
    """

    def __init__(self, alpha: float = 1 / 6) -> None:
        super().__init__()
        if not 0 <= alpha <= 1 / 3:
            raise ValueError(f"the equilibrium needs 0 <= alpha <= 1/3, got {alpha}")
        self.alpha = alpha
        self.first_bet = {"J": alpha, "Q": 0.0, "K": 3 * alpha}
        self.first_call = {"J": 0.0, "Q": alpha + 1 / 3, "K": 1.0}

    def act(self, view: dict[str, Any]) -> str:
        card, moves, _legal = kuhn_hand(view)
        if moves in ([], ["check"]):  # to open (first player) or after a check (second player)
            chance, yes, no = (SECOND_BET if moves else self.first_bet)[card], "bet", "check"
        else:  # facing a bet: [bet] as the second player, [check, bet] as the first
            chance, yes, no = (self.first_call if len(moves) == 2 else SECOND_CALL)[card], "call", "fold"
        return f"[{yes if self.rng.random() < chance else no}]"

    def __repr__(self) -> str:
        return f"KuhnNash(alpha={self.alpha:.3g})"


@register_agent(KUHN, "random")
class KuhnRandom(ScriptedAgent):
    """A legal move chosen uniformly."""

    def act(self, view: dict[str, Any]) -> str:
        return f"[{self.rng.choice(kuhn_hand(view)[2])}]"


# ---------------------------------------------------------------------------------------------- Tic Tac Toe
_MARK = re.compile(r"you will be '([XO])'")
_LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))


def tictactoe_board(view: dict[str, Any]) -> tuple[str, str]:
    """The current board as 9 characters (``X``, ``O`` or ``.``, cells 0–8) and the viewer's mark."""
    messages = game_messages(view)
    mark = next(m.group(1) for text in messages if (m := _MARK.search(text)))
    board_text = next(text for text in reversed(messages) if text.startswith("Current Board:"))
    grid = board_text.split("Available Moves:")[0].removeprefix("Current Board:")
    cells = [cell.strip() for row in grid.strip().split("---+---+---") for cell in row.split("|")]
    return "".join(cell if cell in "XO" else "." for cell in cells), mark


def _winner(board: str) -> str | None:
    return next((board[a] for a, b, c in _LINES if board[a] != "." and board[a] == board[b] == board[c]), None)


@functools.cache
def minimax(board: str, mark: str) -> tuple[int, tuple[int, ...]]:
    """The value of ``board`` with ``mark`` to move, for that player (a win counts more the sooner it comes: 1 +
    the empty cells left), and every move that reaches it."""
    other = "O" if mark == "X" else "X"
    results = {}
    for cell in (i for i, c in enumerate(board) if c == "."):
        after = board[:cell] + mark + board[cell + 1 :]
        if _winner(after):
            results[cell] = 1 + after.count(".")
        elif "." not in after:
            results[cell] = 0
        else:
            results[cell] = -minimax(after, other)[0]
    best = max(results.values())
    return best, tuple(cell for cell, value in results.items() if value == best)


@register_agent(TICTACTOE, "minimax")
class TicTacToeMinimax(ScriptedAgent):
    """Perfect play: a move of highest minimax value (the quickest win, else a draw), ties broken at random."""

    def act(self, view: dict[str, Any]) -> str:
        board, mark = tictactoe_board(view)
        return f"[{self.rng.choice(minimax(board, mark)[1])}]"


@register_agent(TICTACTOE, "random")
class TicTacToeRandom(ScriptedAgent):
    """An empty cell chosen uniformly."""

    def act(self, view: dict[str, Any]) -> str:
        board, _mark = tictactoe_board(view)
        return f"[{self.rng.choice([i for i, c in enumerate(board) if c == '.'])}]"


# --------------------------------------------------------------------------------------- Simple Negotiation
BASE_VALUES = {"Wheat": 5, "Wood": 10, "Sheep": 15, "Brick": 25, "Ore": 40}  # TextArena's; values are ±20% of them
_HOLDING = re.compile(r"\[(\w+)\]\s+Qty:\s*(\d+)\s+Value:\s*(\d+)")
_OFFER = re.compile(
    r"Player (\d+) made the following offer to Player (\d+): Offered items: (.*) -> Requested items: (.*)"
)
_ACCEPTED = re.compile(r"Player (\d+) accepted the trade offer from Player (\d+)\.")
_ITEMS = re.compile(r"(\d+) (\w+)")
Bundle = dict[str, int]


def negotiation_state(view: dict[str, Any]) -> tuple[Bundle, Bundle, tuple[Bundle, Bundle] | None]:
    """The viewer's resources now (its opening ones with every accepted trade applied), its values, and the offer
    standing to it (``(what it gets, what it gives)``), if the other player's last move made one."""
    me = view["player"]
    messages = game_messages(view)
    holdings = [(name, int(qty), int(value)) for name, qty, value in _HOLDING.findall(messages[0])]
    have, values = {n: q for n, q, _ in holdings}, {n: v for n, _, v in holdings}
    last_offer: tuple[int, Bundle, Bundle] | None = None
    standing = None
    for text in messages[1:]:
        if offer := _OFFER.search(text):
            last_offer = (int(offer.group(1)), _bundle(offer.group(3)), _bundle(offer.group(4)))
            standing = (last_offer[1], last_offer[2]) if int(offer.group(2)) == me else None
        elif (accepted := _ACCEPTED.search(text)) and last_offer is not None:
            proposer, offered, requested = last_offer
            gets, gives = (offered, requested) if int(accepted.group(1)) == me else (requested, offered)
            for name, qty in gets.items():
                have[name] += qty
            for name, qty in gives.items():
                have[name] -= qty
            standing = None
        elif text.startswith(f"Player {1 - me} ") or text.startswith(f"Player {me} "):
            standing = None  # a rejection, or a move that made no offer
    return have, values, standing


def _bundle(text: str) -> Bundle:
    return {name: int(qty) for qty, name in _ITEMS.findall(text)}


def _worth(bundle: Bundle, values: Bundle) -> int:
    return sum(qty * values[name] for name, qty in bundle.items())


def _offer_text(gives: Bundle, gets: Bundle) -> str:
    def items(bundle: Bundle) -> str:
        return ", ".join(f"{qty} {name}" for name, qty in bundle.items())

    return f"[Offer: {items(gives)} -> {items(gets)}]"


@register_agent(NEGOTIATION, "greedy")
class NegotiationGreedy(ScriptedAgent):
    """A value-greedy trader: accepts any offer that raises the value of its resources (by its own values) and that
    it can pay; otherwise offers the trade of one resource for another that gains it the most by its values while
    costing the other side nothing at TextArena's base values (so a trader with typical values may accept).

    Args:
        max_quantity: the largest quantity of one resource it puts in an offer.
    """

    def __init__(self, max_quantity: int = 3) -> None:
        super().__init__()
        if max_quantity < 1:
            raise ValueError(f"max_quantity must be >= 1, got {max_quantity}")
        self.max_quantity = max_quantity

    def act(self, view: dict[str, Any]) -> str:
        have, values, standing = negotiation_state(view)
        if standing is not None:
            gets, gives = standing
            affordable = all(have.get(name, 0) >= qty for name, qty in gives.items())
            if affordable and _worth(gets, values) > _worth(gives, values):
                return "That works for me. [Accept]"
        trades = [
            (_worth({want: n_want}, values) - _worth({give: n_give}, values), give, n_give, want, n_want)
            for give in have
            for want in values
            if want != give
            for n_give in range(1, min(self.max_quantity, have[give]) + 1)
            for n_want in range(1, self.max_quantity + 1)
            if n_give * BASE_VALUES[give] >= n_want * BASE_VALUES[want]
        ]
        gain, give, n_give, want, n_want = max(trades, default=(0, "", 0, "", 0))
        if gain <= 0:
            return "No deal this time. [Deny]"
        return _offer_text({give: n_give}, {want: n_want})

    def __repr__(self) -> str:
        return f"NegotiationGreedy(max_quantity={self.max_quantity})"


@register_agent(NEGOTIATION, "random")
class NegotiationRandom(ScriptedAgent):
    """A random legal move: accept a standing offer it can pay, deny, talk, or offer up to 3 of a resource it holds
    for up to 3 of another."""

    def act(self, view: dict[str, Any]) -> str:
        have, _values, standing = negotiation_state(view)
        roll = self.rng.random()
        if standing is not None and all(have.get(n, 0) >= q for n, q in standing[1].items()) and roll < 0.3:
            return "[Accept]"
        held = [name for name, qty in have.items() if qty > 0]
        if roll < 0.5 or not held:
            return self.rng.choice(["[Deny]", "Let me think."])
        give = self.rng.choice(held)
        want = self.rng.choice([name for name in have if name != give])
        return _offer_text({give: self.rng.randint(1, min(3, have[give]))}, {want: self.rng.randint(1, 3)})
