"""Bazaar: rules, rewards, hidden information and the scripted ladder (docs/games.md#bazaar)."""

import math
import statistics

import pytest

from maro_lightning import envs
from maro_lightning.envs.bazaar import BUYER
from maro_lightning.envs.bazaar import SELLER


def _env(**options) -> envs.SocialEnv:
    env = envs.make("bazaar", **options)
    env.reset(0)
    return env


def _set(env, listing=100, seller=70, buyer=90):
    env.listing, env.reservation = listing, {SELLER: seller, BUYER: buyer}
    return env


def _play(seller: str, buyer: str, seeds: range, **options) -> list[envs.Outcome]:
    env = envs.make("bazaar", obs_format="compact", **options)
    agents = {SELLER: envs.agent(seller, game="bazaar"), BUYER: envs.agent(buyer, game="bazaar")}
    return [envs.play_episode(env, agents, seed) for seed in seeds]


def test_setup_ranges_over_many_seeds():
    env = envs.make("bazaar")
    for seed in range(2000):
        env.reset(seed)
        L, s, b = env.listing, env.reservation[SELLER], env.reservation[BUYER]
        assert 20 <= L <= 2000
        assert round(0.55 * L) - 1 <= s <= round(0.80 * L) + 1
        assert round(0.65 * L) - 1 <= b <= L + 1


def test_deal_at_price_and_shares():
    env = _set(_env())
    env.step(SELLER, "Nice bike. [Offer: $85]")
    env.step(BUYER, "<think>I can pay 90</think>Fine. [Accept]")
    assert env.done and env.price == 85
    outcome = env.outcome()
    # s = 70, b = 90, p = 85: seller (85-70)/20 = 0.75, buyer (90-85)/20 = 0.25.
    assert outcome.rewards == {SELLER: 0.75, BUYER: 0.25}
    assert outcome.success == {SELLER: True, BUYER: False}
    assert env.turns[-1].public == "Fine. [Accept]"


def test_shares_sum_to_one_on_deals_with_b_above_s():
    env = envs.make("bazaar", obs_format="compact")
    agents = {p: envs.agent("random", game="bazaar") for p in (SELLER, BUYER)}
    checked = 0
    for seed in range(1500):
        outcome = envs.play_episode(env, agents, seed)
        s, b = env.reservation[SELLER], env.reservation[BUYER]
        assert all(-1.0 <= r <= 1.0 for r in outcome.rewards.values())
        if env.price is not None and b > s and s <= env.price <= b:  # unclipped shares
            assert outcome.rewards[SELLER] + outcome.rewards[BUYER] == pytest.approx(1.0)
            assert outcome.rewards[SELLER] == pytest.approx((env.price - s) / (b - s))
            checked += 1
    assert checked > 100


def test_no_zone_uses_the_listing_and_clips():
    env = _set(_env(), listing=100, seller=80, buyer=70)
    assert env.share(SELLER, 90) == pytest.approx(0.10)  # (90 - 80) / 100
    assert env.share(BUYER, 90) == pytest.approx(-0.20)  # (70 - 90) / 100
    env = _set(_env(), listing=100, seller=70, buyer=90)
    assert env.share(SELLER, 500) == 1.0 and env.share(BUYER, 500) == -1.0  # clipped to [-1, 1]


def test_walk_and_turn_limit_end_without_a_deal():
    env = _set(_env())
    env.step(SELLER, "[Walk]")
    assert env.done and env.outcome().rewards == {SELLER: 0.0, BUYER: 0.0}
    env = _set(_env(max_messages=3, no_deal_reward=-0.1))
    for player in (SELLER, BUYER, SELLER):
        env.step(player, "just talking")
    assert env.done and env.outcome().rewards == {SELLER: -0.1, BUYER: -0.1}
    assert env.outcome().metrics["deal"] == 0.0


def test_buyer_first_and_zero_sum_options():
    env = _set(_env(first="buyer", reward="zero_sum"))
    assert env.to_act() == [BUYER]
    env.step(BUYER, "[Offer: $75]")
    env.step(SELLER, "[Accept]")
    assert env.outcome().rewards == {SELLER: -1.0, BUYER: 1.0}  # seller 0.25 < buyer 0.75


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[Accept]", "no offer"),
        ("[Offer: $0]", "between"),
        ("[Offer: $1001]", "between"),  # 10 · L = 1000
        ("[Offer: $12.5]", "whole"),
        ("[Offer: $1] [Walk]", "more than one"),
        ("[Offer $50]", "malformed"),
    ],
)
def test_invalid_offers(text, reason):
    env = _set(_env())
    env.step(SELLER, text)
    assert not env.turns[-1].valid and reason in env.turns[-1].info["invalid_reason"]
    assert env.to_act() == [SELLER] and env.history == []


def test_lenient_mode_takes_the_last_tag():
    env = _set(_env(strict=False))
    env.step(SELLER, "[Offer: $99] no, [Offer: $95]")
    assert env.offers[SELLER] == 95 and env.turns[-1].public == "no, [Offer: $95]"


def test_talk_is_cut_and_never_raw():
    env = _set(_env(max_public_chars=20))
    env.step(SELLER, "<think>my floor is 70</think>" + "blah " * 50 + "[Offer: $99]")
    public = env.turns[-1].public
    assert public.endswith("[Offer: $99]") and len(public) <= 20 + len(" [Offer: $99]")
    assert "my floor" not in env.observation(BUYER)


def test_turn_info_features():
    env = _set(_env())
    env.step(SELLER, "[Offer: $95]")
    env.step(BUYER, "[Offer: $60]")
    env.step(SELLER, "[Offer: $90]")
    info = env.turns[-1].info
    # Seller moved 95 -> 90: a concession of 5 / L = 0.05; the buyer's standing $60 is worth (60-70)/20 to it.
    assert info["concession"] == pytest.approx(0.05)
    assert info["standing_share"] == pytest.approx(-0.5)
    assert info["offer_share"] == pytest.approx(1.0)


def test_compact_observation_format():
    env = _set(_env(obs_format="compact"), listing=100, seller=70, buyer=92)
    for player, text in [(SELLER, "[Offer: $100]"), (BUYER, "[Offer: $50]"), (SELLER, "hmm")]:
        env.step(player, text)
    assert env.observation(BUYER) == "B L=100 r=92 t=3 | 100 50 - >"
    assert env.observation(SELLER) == "S L=100 r=70 t=3 | 100 50 -"


def test_full_observation_lists_exactly_the_legal_actions():
    env = _set(_env())
    first = env.observation(SELLER)
    assert "[Offer: $X]" in first and "[Walk]" in first and "accept their offer" not in first
    env.step(SELLER, "[Offer: $95]")
    prompt = env.observation(BUYER)
    assert "accept their offer of $95" in prompt and "reservation price is $90" in prompt
    assert "You are the BUYER" in prompt and "Seller: [Offer: $95]" in prompt


def _observation_if(env, owner, viewer):
    """``viewer``'s observation had ``owner``'s reservation been $17 higher."""
    saved = env.reservation[owner]
    env.reservation[owner] = saved + 17
    try:
        return env.observation(viewer)
    finally:
        env.reservation[owner] = saved


@pytest.mark.parametrize("fmt", ["full", "compact"])
def test_observations_do_not_depend_on_the_other_reservation(fmt):
    env = envs.make("bazaar", obs_format=fmt)
    checks = 0

    def check(_player):
        nonlocal checks
        for p in env.roles:
            assert env.observation(p) == _observation_if(env, owner=1 - p, viewer=p)
            assert env.observation(p) != _observation_if(env, owner=p, viewer=p)  # the check can see a change
            checks += 1

    agents = {p: envs.agent("random", game="bazaar") for p in (SELLER, BUYER)}
    for seed in range(300):
        envs.play_episode(env, agents, seed, before_step=check)
    assert checks > 1000


def test_scripted_seller_ladder_against_a_linear_buyer():
    # Seller share over 2000 seeded games at L = 100 (docs/games.md#bazaar: ~0.54 / 0.46 / 0.30). A per-game share
    # has sd ~0.25, so the standard error of each mean is ~0.006: margins of 0.04 are > 6 standard errors.
    seeds = range(2000)
    share = {
        e: statistics.mean(
            o.metrics["seller_share"] for o in _play(e, "linear", seeds, listing_range=(100, 100)) if o.metrics["deal"]
        )
        for e in ("boulware", "linear", "conceder")
    }
    assert share["boulware"] > share["linear"] + 0.04
    assert share["linear"] > share["conceder"] + 0.04


def test_buyer_reward_ladder_and_linear_deal_rate():
    seeds = range(2000)
    reward = {
        e: statistics.mean(o.rewards[BUYER] for o in _play("linear", e, seeds))
        for e in ("boulware", "linear", "conceder")
    }
    assert reward["boulware"] > reward["linear"] + 0.05 > reward["conceder"] + 0.10
    deal_rate = statistics.mean(o.metrics["deal"] for o in _play("linear", "linear", seeds))
    assert 0.75 < deal_rate < 0.90  # docs/games.md#bazaar: ~0.82


def test_hardliner_and_tit_for_tat_act_validly():
    for seller, buyer in [("hardliner", "linear"), ("tit_for_tat", "conceder"), ("linear", "tit_for_tat")]:
        outcomes = _play(seller, buyer, range(200))
        assert all(o.metrics["invalid_rate"] == 0.0 for o in outcomes)
        assert any(o.metrics["deal"] for o in outcomes)
    # A hardliner seller never sells below its anchor except on its last turn.
    for outcome in _play("hardliner", "conceder", range(200)):
        assert not outcome.metrics["deal"] or outcome.rewards[SELLER] >= 0


def test_time_dependent_curve():
    agent = envs.agent("linear", game="bazaar")
    view = {"role": "seller", "listing": 100, "reservation": 70, "max_messages": 10, "history": [{}] * 9}
    # t = 9 = T - 1: the offer reaches the reservation exactly: 100 + (70 - 100) · 1.
    assert agent.next_offer(view) == 70
    view["history"] = [{}] * 3  # 100 + (70 - 100) · (3/9) = 90
    assert agent.next_offer(view) == 90
    assert math.isclose(envs.agent("boulware", game="bazaar").e, 0.3)


@pytest.mark.parametrize(
    "text", ["[Offer: [Accept]]", 'I would never say "[Accept]"', "\u201c[Accept]\u201d, they said"]
)
def test_nested_or_quoted_tags_are_talk_not_a_deal(text):
    env = _set(_env())
    env.step(SELLER, "Nice bike. [Offer: $85]")
    env.step(BUYER, text)
    assert not env.done and env.price is None
    assert env.turns[-1].valid and env.turns[-1].action is None and "[" not in env.turns[-1].public
