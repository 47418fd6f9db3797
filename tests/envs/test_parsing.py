"""Table tests of the shared text protocol (docs/games.md#shared-protocol)."""

import pytest

from maro_lightning.envs.parsing import InvalidAction
from maro_lightning.envs.parsing import find_tags
from maro_lightning.envs.parsing import parse_int
from maro_lightning.envs.parsing import remove_spans
from maro_lightning.envs.parsing import select_tag
from maro_lightning.envs.parsing import strip_think

NAMES = ("offer", "accept", "walk", "propose", "vote")


@pytest.mark.parametrize(
    ("raw", "public", "private_has"),
    [
        ("hello", "hello", ""),
        ("<think>secret</think>[Accept]", "[Accept]", "secret"),
        ("<THINK>secret</Think> ok", "ok", "secret"),
        ("a <think>x</think> b <think>y</think> c", "a  b  c", "y"),
        ("<think>multi\nline</think>\n[Walk]", "[Walk]", "multi\nline"),
        ("stray reasoning</think> [Offer: $5]", "[Offer: $5]", "stray reasoning"),
        ("[Offer: $5] <think>never closed [Accept]", "[Offer: $5]", "never closed [Accept]"),
        ("<think>a</think> b</think> c", "c", "b"),
        ("<think>unclosed", "", "unclosed"),
        ("", "", ""),
    ],
)
def test_strip_think(raw, public, private_has):
    got_public, got_private = strip_think(raw)
    assert got_public.split() == public.split()
    assert private_has in got_private


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Offer: $120]", [("offer", "$120")]),
        ("[offer:120]", [("offer", "120")]),
        ("[ OFFER :  $1,200 ]", [("offer", "$1,200")]),
        ("I think [Accept] is right", [("accept", None)]),
        ("[Walk] [Accept]", [("walk", None), ("accept", None)]),
        ("[laughs] no tag here", []),
        ("[Offer: $5", []),  # unclosed bracket: talk
        ("Offer: $5]", []),
        ("[Vote: Player 3]", [("vote", "Player 3")]),
        ("[Propose: book=1, hat=2, ball=0]", [("propose", "book=1, hat=2, ball=0")]),
        ("[[Offer: $7]]", []),  # a tag inside another bracket is text
        ("[Offer: [Accept]]", []),
        ('"[Accept]" he said', []),  # so is a quoted one
        ("\u201c[Accept]\u201d", []),
        ('I said "no" [Accept] "ok', [("accept", None)]),  # quotes elsewhere, or unpaired, change nothing
        ("] [Accept]", [("accept", None)]),
        ("[Offerings: 3]", []),  # a longer word is not the action name
    ],
)
def test_find_tags(text, expected):
    assert [(t.name, t.arg) for t in find_tags(text, NAMES)] == expected


def test_malformed_tag_is_an_invalid_attempt_not_talk():
    tags = find_tags("[Offer $120]", NAMES)
    assert tags[0].malformed
    with pytest.raises(InvalidAction, match="malformed"):
        select_tag(tags, strict=True)


def test_several_tags_strict_vs_lenient():
    tags = find_tags("[Offer: $1] then [Offer: $2]", NAMES)
    with pytest.raises(InvalidAction, match="more than one"):
        select_tag(tags, strict=True)
    assert select_tag(tags, strict=False).arg == "$2"
    assert select_tag([], strict=True) is None


def test_remove_spans_collapses_whitespace():
    text = "hi [Offer: $3]  there"
    assert remove_spans(text, [t.span for t in find_tags(text, NAMES)]) == "hi there"


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("120", 120),
        ("$120", 120),
        ("$ 120", 120),
        ("$1,200", 1200),
        ("1,234,567", 1234567),
        ("120.00", 120),
        ("007", 7),
    ],
)
def test_parse_int_accepts(arg, value):
    assert parse_int(arg, "x") == value


@pytest.mark.parametrize(
    "arg",
    [None, "", "abc", "12a", "$-5", "-5", "1e9", "12.5", "1,20", "1 200", "9" * 13, "١٢٣", "$$5", "5 dollars"],
)
def test_parse_int_rejects(arg):
    with pytest.raises(InvalidAction):
        parse_int(arg, "x")
