"""The shared text protocol of every game (docs/games.md#shared-protocol).

A turn's raw text is split into private reasoning (inside ``<think>…</think>``) and the public rest;
actions are bracket tags such as ``[Offer: $1,200]`` found in the public rest. Nothing here knows a
game: games name their tags and parse each tag's argument with the helpers below.

A tag inside another bracket (``[Offer: [Accept]]``) or inside double quotes (``"[Accept]"``, ``“[Accept]”``)
is text, not an action. Public text is escaped before anyone sees it (:func:`public_text`): brackets become
parentheses and the markers that structure a prompt (``|``, ``<``, ``>``, ``"``) are replaced, so talk can
neither pose as an action nor forge a section of another player's prompt. Text that cannot be encoded (lone
surrogates) never reaches a prompt or a tokenizer (:func:`clean_text`), nor do control characters in public text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# A bracket group with no nested brackets: "[ Offer : $1,200 ]" -> name "Offer", arg "$1,200".
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
# "$1,200", "1200", "$ 120", "120.00": commas are the only thousands separator; ASCII digits only.
_NUMBER = re.compile(r"^\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$", re.ASCII)
_MAX_DIGITS = 12  # longer digit strings are rejected before int(): absurd, and int() of 10 kB is slow


class InvalidAction(ValueError):
    """A turn's text is not a legal action now. The message says why; the game's invalid-action policy handles it."""


@dataclass(frozen=True)
class Tag:
    """One bracket tag: ``name`` lower-cased with single spaces, ``arg`` the text after the colon (or None).

    ``malformed`` marks a bracket that starts with an action name but lacks the colon (``[Offer $120]``):
    an attempt to act that cannot be read, hence invalid rather than talk.
    """

    name: str
    arg: str | None
    span: tuple[int, int]
    malformed: bool = False


def strip_think(text: str) -> tuple[str, str]:
    """Split raw model text into ``(public, private)``.

    Well-formed ``<think>…</think>`` blocks are removed; then, if a stray ``</think>`` remains, only what
    follows the last one is kept; if an unclosed ``<think>`` remains, everything from it on is dropped.
    ``private`` is everything removed, so that callers can check it never reaches another player.
    """
    private = [m.group(0) for m in _THINK_BLOCK.finditer(text)]
    public = _THINK_BLOCK.sub(" ", text)
    closes = list(_THINK_CLOSE.finditer(public))
    if closes:
        cut = closes[-1].end()
        private.append(public[:cut])
        public = public[cut:]
    opened = _THINK_OPEN.search(public)
    if opened:
        private.append(public[opened.start() :])
        public = public[: opened.start()]
    return public.strip(), "".join(private)


def find_tags(text: str, names: tuple[str, ...]) -> list[Tag]:
    """All bracket tags in ``text`` whose name is one of ``names`` (case- and space-insensitive).

    Brackets whose first words are not an action name (``[laughs]``) are ordinary text, not tags; so are tags
    nested in another bracket or quoted in double quotes (``[Offer: [Accept]]``, ``"[Accept]"``).
    """
    wanted = sorted({_normalise(n) for n in names}, key=len, reverse=True)
    enclosed = _enclosed(text)
    tags = []
    for bracket in _BRACKET.finditer(text):
        if enclosed[bracket.start()]:
            continue
        tag = _read_tag(bracket.group(1), wanted, bracket.span())
        if tag is not None:
            tags.append(tag)
    return tags


def _enclosed(text: str) -> list[bool]:
    """Per character: whether it lies inside an open ``[`` or a pair of double quotes (straight or curly)."""
    straight = [i for i, ch in enumerate(text) if ch == '"']
    quoted = [False] * (len(text) + 1)
    for start, end in zip(straight[::2], straight[1::2], strict=False):  # an unpaired last quote quotes nothing
        quoted[start + 1 : end] = [True] * (end - start - 1)
    result, depth, curly = [], 0, 0
    for i, ch in enumerate(text):
        result.append(depth > 0 or curly > 0 or quoted[i])
        depth = depth + 1 if ch == "[" else max(depth - 1, 0) if ch == "]" else depth
        curly = curly + 1 if ch == "\u201c" else max(curly - 1, 0) if ch == "\u201d" else curly
    return result


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_PUBLIC = str.maketrans({"[": "(", "]": ")", "|": "/", "<": "‹", ">": "›", '"': "'", "\u201c": "'", "\u201d": "'"})


def clean_text(text: str) -> str:
    """``text`` encodable for any tokenizer: lone surrogates (not encodable as UTF-8) become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def public_text(talk: str) -> str:
    """Talk as others are shown it: brackets become parentheses (no talk looks like an action), the markers
    that structure prompts (``|`` sections, ``<``/``>`` special tokens and the reader's turn, ``"`` quoted
    messages) are replaced by look-alikes that structure nothing, and control characters become spaces."""
    return _CONTROL.sub(" ", clean_text(talk).translate(_PUBLIC))


def _read_tag(body: str, wanted: list[str], span: tuple[int, int]) -> Tag | None:
    words = " ".join(body.split())
    lowered = words.lower()
    for name in wanted:
        rest = words[len(name) :]
        if not lowered.startswith(name) or rest[:1] not in ("", " ", ":"):
            continue
        rest = rest.strip()
        if not rest:
            return Tag(name, None, span)
        if rest.startswith(":"):
            return Tag(name, rest[1:].strip(), span)
        return Tag(name, rest, span, malformed=True)
    return None


def remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the given character spans, whitespace collapsed."""
    kept, last = [], 0
    for start, end in sorted(spans):
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return " ".join("".join(kept).split())


def select_tag(tags: list[Tag], *, strict: bool) -> Tag | None:
    """The one tag a turn acts with: None if there is none; with several, invalid (strict) or the last."""
    if len(tags) > 1 and strict:
        raise InvalidAction(f"more than one action tag ({', '.join(t.name for t in tags)}); use exactly one")
    tag = tags[-1] if tags else None
    if tag is not None and tag.malformed:
        shown = truncate(tag.arg or "", 30)
        raise InvalidAction(f"malformed tag [{tag.name} {shown}]: put a colon after the action name")
    return tag


def parse_int(arg: str | None, what: str) -> int:
    """A whole number written as ``120``, ``$120``, ``$1,200`` or ``120.00``; anything else is invalid."""
    text = (arg or "").strip()
    match = _NUMBER.match(text)
    if not match:
        raise InvalidAction(f"{what} must be a whole number like $120, got {_quote(text)}")
    digits, cents = match.group(1).replace(",", ""), match.group(2)
    if cents is not None and cents.strip("0"):
        raise InvalidAction(f"{what} must be a whole number, got {_quote(text)}")
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise InvalidAction(f"{what} is absurdly large: {_quote(text)}")
    return int(digits)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def _normalise(name: str) -> str:
    return " ".join(name.lower().split())


def _quote(text: str, limit: int = 40) -> str:
    return repr(truncate(text, limit))
