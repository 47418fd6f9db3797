"""Deal: set-up, rules, rewards, exact checks, parser, hidden information, scripted ladder (docs/games.md#deal)."""

import itertools
import random
import statistics

import pytest
from players import Thinker

from maro_lightning import envs
from maro_lightning.envs import deal

# A hand-made scenario: 2 books, 1 hat, 3 balls. Player 0 values them 2, 3, 1 (4 + 3 + 3 = 10),
# player 1 values them 0, 4, 2 (0 + 4 + 6 = 10).
COUNTS, V0, V1 = (2, 1, 3), (2, 3, 1), (0, 4, 2)


def _env(**options) -> envs.SocialEnv:
    env = envs.make("deal", **options)
    env.reset(0)
    env.counts, env.values = COUNTS, {0: V0, 1: V1}
    return env


def _play(first: str, second: str, seeds: range, **options) -> list[envs.Outcome]:
    env = envs.make("deal", obs_format="compact", **options)
    agents = {0: envs.agent(first, game="deal"), 1: envs.agent(second, game="deal")}
    return [envs.play_episode(env, agents, seed) for seed in seeds]


def _transcript(env) -> list[tuple]:
    return [(t.player, t.raw, t.public, t.action, t.valid, t.info) for t in env.turns]


# ------------------------------------------------------------------------------------------ set-up
def test_determinism_per_seed():
    env = envs.make("deal")
    agents = {0: envs.agent("greedy", game="deal"), 1: envs.agent("random", game="deal")}
    runs = []
    for seed in (5, 5, 6):
        outcome = envs.play_episode(env, agents, seed)
        runs.append((env.counts, env.values, _transcript(env), outcome))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_sampler_invariants_over_many_seeds():
    env = envs.make("deal")
    random.seed(123)
    global_state = random.getstate()
    seen_counts = set()
    for seed in range(2000):
        env.reset(seed)
        counts, values = env.counts, env.values
        assert len(counts) == 3 and all(c >= 1 for c in counts) and 5 <= sum(counts) <= 7
        for v in values.values():
            assert all(isinstance(x, int) and x >= 0 for x in v)
            assert sum(c * x for c, x in zip(counts, v, strict=True)) == 10
        assert all(values[0][k] or values[1][k] for k in range(3))  # every type valued by someone
        assert any(values[0][k] and values[1][k] for k in range(3))  # one type valued by both
        seen_counts.add(counts)
    assert random.getstate() == global_state  # the sampler never touches the global RNG
    assert len(seen_counts) > 15  # many of the 24 valid count triples


def test_every_valid_count_triple_has_a_valid_value_pair():
    # The sampler's second rejection loop ends for every counts it can draw: a valid pair of values exists.
    for counts in itertools.product(range(1, 6), repeat=3):
        if 5 <= sum(counts) <= 7:
            vectors = deal.value_vectors(counts)
            assert any(deal._valid_pair(a, b) for a in vectors for b in vectors)


def test_option_checks():
    with pytest.raises(ValueError, match="max_messages"):
        envs.make("deal", max_messages=0)
    with pytest.raises(TypeError, match="max_messages"):
        envs.make("deal", max_mesages=3)


# ------------------------------------------------------------------------------------- rules and rewards
def test_deal_points_rewards_and_success():
    env = _env()
    env.step(0, "I like books. [Propose: book=2, hat=1]")
    env.step(1, "<think>balls are worth 6 to me</think>Fine. [Accept]")
    assert env.done and env.split == {0: (2, 1, 0), 1: (0, 0, 3)}
    outcome = env.outcome()
    # Player 0 keeps 2 books and the hat: 2·2 + 3 = 7; player 1 gets 3 balls: 3·2 = 6.
    assert outcome.rewards == {0: 0.7, 1: 0.6}
    assert outcome.success == {0: True, 1: False}
    assert outcome.roles == {0: "first", 1: "second"}
    assert env.turns[-1].public == "Fine. [Accept]"
    metrics = outcome.metrics
    assert metrics["agreement"] == 1.0 and metrics["points_first"] == 7.0 and metrics["points_second"] == 6.0
    assert metrics["pareto"] == 1.0 and metrics["joint_welfare"] == 13.0
    assert metrics["welfare_ratio"] == pytest.approx(13 / 14)  # max joint welfare 14: see the Nash test


def test_walk_and_turn_limit_end_without_a_deal():
    env = _env()
    env.step(0, "[Propose: ball=3]")
    env.step(1, "No. [Walk]")
    outcome = env.outcome()
    assert env.done and outcome.rewards == {0: 0.0, 1: 0.0} and outcome.success == {0: False, 1: False}
    assert outcome.metrics["walked"] == 1.0 and outcome.metrics["agreement"] == 0.0
    assert "pareto" not in outcome.metrics  # a rate over deals only
    env = _env(max_messages=3)
    for player in (0, 1, 0):
        env.step(player, "just talking")
    assert env.done and env.outcome().rewards == {0: 0.0, 1: 0.0}
    assert env.outcome().metrics["messages"] == 3.0


def test_reward_invariants_over_random_games():
    env = envs.make("deal", obs_format="compact")
    agents = {p: envs.agent("random", game="deal") for p in (0, 1)}
    deals = 0
    for seed in range(500):
        outcome = envs.play_episode(env, agents, seed)
        got = env.final_points()
        assert all(0 <= got[p] <= 10 and outcome.rewards[p] == got[p] / 10 for p in (0, 1))
        if env.split is None:
            assert outcome.rewards == {0: 0.0, 1: 0.0} and not any(outcome.success.values())
        else:
            deals += 1
            assert tuple(map(sum, zip(env.split[0], env.split[1], strict=True))) == env.counts
            assert outcome.success == {p: got[p] >= got[1 - p] for p in (0, 1)}
    assert 50 < deals < 500


def test_accept_takes_the_others_latest_proposal():
    env = _env()
    env.step(0, "[Propose: book=2, hat=1, ball=3]")
    env.step(1, "[Propose: hat=1, ball=3]")
    env.step(0, "[Propose: book=2, hat=1]")  # replaces player 0's standing proposal
    env.step(1, "[Accept]")
    assert env.split == {0: (2, 1, 0), 1: (0, 0, 3)}


def test_turn_info_features():
    env = _env()
    env.step(0, "[Propose: book=2, hat=1, ball=3]")
    first = env.turns[-1].info
    assert first["kind"] == "propose" and first["value_self"] == 10 and first["value_partner"] == 0
    assert first["concession"] is None and first["standing_value"] is None and first["pareto"] is True
    env.step(1, "[Propose: hat=1, ball=3]")
    assert env.turns[-1].info["standing_value"] == 0  # player 0's proposal left player 1 nothing
    env.step(0, "[Propose: book=2, hat=1]")
    info = env.turns[-1].info
    # 10 -> 7 points asked: a concession of 3; player 1's proposal gives player 0 the two books (4 points).
    assert info["concession"] == 3 and info["standing_value"] == 4
    assert info["value_self"] == 7 and info["value_partner"] == 6 and info["pareto"] is True
    env.step(1, "hmm")
    assert env.turns[-1].info == {"kind": "talk", "message": 3, "standing_value": 6}
    env.step(0, "[Propose: book=1]")  # 2 points to me, 4 + 6 = 10 to the partner: dominated by keeping 2 books
    assert env.turns[-1].info["pareto"] is False
    env.step(1, "[Accept]")
    accepted = env.turns[-1].info
    assert accepted["bundle"] == (1, 1, 3) and accepted["value_self"] == 10 and accepted["value_partner"] == 2


# ------------------------------------------------------------------------------------------ exact checks
def _pair(keep, counts, va, vb) -> tuple[int, int]:
    mine = sum(q * v for q, v in zip(keep, va, strict=True))
    return mine, sum((c - q) * v for c, q, v in zip(counts, keep, vb, strict=True))


def _frontier(counts, va, vb) -> set[tuple[int, int]]:
    """Independent Pareto frontier of the point pairs: sweep by a's points descending, keep strict b records."""
    pairs = sorted({_pair(k, counts, va, vb) for k in itertools.product(*(range(c + 1) for c in counts))})
    frontier, best_b = set(), -1
    for a, b in reversed(pairs):  # a descending, and for equal a, b descending
        if b > best_b:
            frontier.add((a, b))
            best_b = b
    return frontier


def test_pareto_matches_an_independent_brute_force():
    env = envs.make("deal")
    checked = optimal = 0
    for seed in range(150):
        env.reset(seed)
        counts, va, vb = env.counts, env.values[0], env.values[1]
        frontier = _frontier(counts, va, vb)
        for keep in deal.allocations(counts):
            points = _pair(keep, counts, va, vb)
            assert deal.is_pareto_optimal(keep, counts, va, vb) == (points in frontier)
            checked += 1
            optimal += points in frontier
    assert 0 < optimal < checked


def test_allocations_enumerate_every_split():
    assert len(deal.allocations(COUNTS)) == 3 * 2 * 4
    assert len(set(deal.allocations(COUNTS))) == 24
    assert max(len(deal.allocations(c)) for c in itertools.product(range(1, 6), repeat=3) if sum(c) <= 7) == 36


def test_nash_and_joint_welfare_on_a_hand_made_case():
    # Player 0 keeps ... -> (points 0, points 1, product):
    #   2 books            -> (4, 10, 40), joint 14 (the joint-welfare maximum)
    #   2 books + hat      -> (7,  6, 42), the largest product: the Nash split
    #   2 books + ball     -> (5,  8, 40);  2 books + hat + ball -> (8, 4, 32)
    assert deal.max_joint_welfare(COUNTS, V0, V1) == 14
    assert deal.nash_allocation(COUNTS, V0, V1) == (2, 1, 0)
    assert deal.nash_allocation(COUNTS, V1, V0) == (0, 0, 3)  # the same split from the other side
    assert deal.is_pareto_optimal((2, 0, 0), COUNTS, V0, V1)
    assert not deal.is_pareto_optimal((1, 0, 0), COUNTS, V0, V1)  # the second book is worth 0 to player 1


def test_nash_ties_are_deterministic():
    # Symmetric values over 1, 1, 3: keeping the book (2) or the hat (2) ties; the first in enumeration order wins.
    counts, v = (1, 1, 3), (2, 2, 2)
    assert deal.nash_allocation(counts, v, v) == deal.nash_allocation(counts, v, v)
    best = max(deal.points(k, v) * deal.points(deal.rest(counts, k), v) for k in deal.allocations(counts))
    ties = [k for k in deal.allocations(counts) if deal.points(k, v) * deal.points(deal.rest(counts, k), v) == best]
    assert len(ties) > 1 and deal.nash_allocation(counts, v, v) == ties[0]


def test_nash_split_is_pareto_optimal_and_maximal():
    env = envs.make("deal")
    for seed in range(200):
        env.reset(seed)
        counts, va, vb = env.counts, env.values[0], env.values[1]
        nash = deal.nash_allocation(counts, va, vb)
        products = [deal.points(k, va) * deal.points(deal.rest(counts, k), vb) for k in deal.allocations(counts)]
        assert deal.points(nash, va) * deal.points(deal.rest(counts, nash), vb) == max(products) > 0
        assert deal.is_pareto_optimal(nash, counts, va, vb)
        assert deal.max_joint_welfare(counts, va, vb) >= sum(_pair(nash, counts, va, vb))


# ------------------------------------------------------------------------------------------------ parser
@pytest.mark.parametrize(
    ("arg", "keep"),
    [
        ("book=1, hat=1, ball=2", (1, 1, 2)),
        ("ball=2, book=1", (1, 0, 2)),  # order-free, hat missing = 0
        ("Books: 2; HATS : 1", (2, 1, 0)),  # ":" separator, plurals, case
        ("  ball =3  ", (0, 0, 3)),
        ("book=0 hat=0 ball=0", (0, 0, 0)),
        ("book=1 and ball=1.", (1, 0, 1)),
        ("book: 02", (2, 0, 0)),
    ],
)
def test_proposal_parser_accepts(arg, keep):
    assert deal.parse_proposal(arg, COUNTS) == keep


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        (None, "names what you keep"),
        ("", "names what you keep"),
        ("book=3", "0 to 2"),  # out of range
        ("hat=-1", "0 to 1"),
        ("ball=99999999999999999999999", "0 to 3"),
        ("car=1", "unknown item"),
        ("book=1, hat=1, ball=1, car=0", "unknown item"),
        ("book=1, book=2", "twice"),
        ("book=1, books=1", "twice"),
        ("book=one", "cannot read"),
        ("book=1.5", "cannot read"),
        ("1 book, 2 hats", "cannot read"),
        ("book=1, please", "cannot read"),
        ("book=\u0661", "cannot read"),  # an Arabic-Indic digit: ASCII digits only
        ("lorem ipsum", "cannot read"),
        ("x" * 500, "too long"),
    ],
)
def test_proposal_parser_rejects(arg, reason):
    with pytest.raises(envs.InvalidAction, match=reason):
        deal.parse_proposal(arg, COUNTS)


def test_proposal_tag_through_the_env():
    env = _env()
    env.step(0, "ok [ propose : Book = 1 , Hat:1 ] deal?")
    assert env.turns[-1].valid and env.proposals[0] == (1, 1, 0)
    assert env.turns[-1].public == "ok deal? [Propose: book=1, hat=1, ball=0]"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[Accept]", "no proposal"),
        ("[Propose]", "names what you keep"),
        ("[Propose: book=9]", "0 to 2"),
        ("[Propose: book=1] [Walk]", "more than one"),
        ("[Propose book=1]", "malformed"),
    ],
)
def test_invalid_actions(text, reason):
    env = _env()
    env.step(0, text)
    assert not env.turns[-1].valid and reason in env.turns[-1].info["invalid_reason"]
    assert env.to_act() == [0] and env.history == []


def test_accepting_ones_own_proposal_is_invalid():
    env = _env()
    env.step(0, "[Propose: book=1]")
    env.step(1, "hello")
    env.step(0, "[Accept]")
    assert not env.turns[-1].valid and "no proposal" in env.turns[-1].info["invalid_reason"]


def test_lenient_mode_takes_the_last_tag():
    env = _env(strict=False)
    env.step(0, "[Propose: book=2] no, [Propose: book=1]")
    assert env.proposals[0] == (1, 0, 0) and env.turns[-1].public == "no, [Propose: book=1, hat=0, ball=0]"


# --------------------------------------------------------------------------------- invalid-action policy
def test_invalid_action_is_retried_then_defaulted_to_talk():
    env = _env(max_retries=1)
    env.step(0, "[Propose: car=1]")
    assert env.to_act() == [0] and "unknown item" in env.observation(0)
    env.step(0, "[Propose: car=2]")
    turn = env.turns[-1]
    assert not turn.valid and turn.info["defaulted"] and turn.info["kind"] == "talk" and turn.public == ""
    assert env.to_act() == [1] and env.history[-1]["kind"] == "talk"
    env.step(1, "[Walk]")
    assert env.outcome().metrics["invalid_rate"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("retries", [0, 1])
def test_forfeit_policy(retries):
    env = _env(on_invalid="forfeit", max_retries=retries)
    env.step(0, "[Propose: book=1]")
    for _ in range(retries + 1):
        env.step(1, "[Propose: book=7]")
    assert env.done
    outcome = env.outcome()
    assert outcome.rewards == {0: 0.5, 1: -1.5} and outcome.success == {0: True, 1: False}


GARBAGE = [
    "",
    "   ",
    "".join(random.Random(1).choice("abc[]=:<>/, \n0123456789bookhatball") for _ in range(10_000)),
    "🙂 ünïcödé 你好 [Propose: 书=1] [Accept ✓]",
    "[Propose: book=99999999999999999999999999999, hat=-99999999]",
    "[Propose: " + "book=1, " * 2000 + "]",
    "[Accept][Walk]",
    "<think>[Walk]",
    "\x00\x01[\x02]",
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_in_never_crashes(garbage):
    env = envs.make("deal")
    env.reset(4)
    for _ in range(4):
        if env.done:
            break
        player = env.to_act()[0]
        env.step(player, garbage)
        assert env.turns[-1].raw == garbage
        assert env.turns[-1].valid or env.turns[-1].info["invalid_reason"]
        assert isinstance(env.observation(1 - player), str)
    agents = {p: envs.agent("greedy", game="deal") for p in (0, 1)}
    while not env.done:
        player = env.to_act()[0]
        env.step(player, agents[player].act(env.view(player)))
    assert set(env.outcome().rewards) == {0, 1}


# ------------------------------------------------------------------------------------- what a player sees
def test_compact_observation_format():
    env = _env(obs_format="compact")
    for player, text in [(0, "[Propose: book=2, hat=1]"), (1, "hmm"), (0, "[Propose: book=1, ball=1]")]:
        env.step(player, text)
    assert env.observation(1) == "D2 c=2,1,3 v=0,4,2 t=3 | P:2,1,0 - P:1,0,1 >"
    assert env.observation(0) == "D1 c=2,1,3 v=2,3,1 t=3 | P:2,1,0 - P:1,0,1"
    env.step(1, "[Accept]")
    assert env.observation(0) == "D1 c=2,1,3 v=2,3,1 t=4 | P:2,1,0 - P:1,0,1 A"


def test_full_observation_lists_exactly_the_legal_actions():
    env = _env(max_messages=2)
    first = env.observation(0)
    assert "[Propose: book=a, hat=b, ball=c]  with a from 0 to 2, b from 0 to 1, c from 0 to 3" in first
    assert "[Walk]" in first and "take their proposal" not in first
    assert "a book is worth 2 points, a hat 3 points, a ball 1 point" in first
    assert "On the table: 2 books, 1 hat, 3 balls" in first and "message 1 of 2" in first
    assert "Wait for the other player" in env.observation(1)
    env.step(0, "<think>hat is 3</think>Books for me. [Propose: book=2, hat=1]")
    prompt = env.observation(1)
    assert "Other player: Books for me. [Propose: book=2, hat=1, ball=0]" in prompt
    assert "take their proposal: you get book=0, hat=0, ball=3, worth 6 points to you" in prompt
    assert "the last one" in prompt and "hat is 3" not in prompt
    assert "You are Player 1, the second to write" in prompt
    env.step(1, "[Accept]")
    assert "The game is over." in env.observation(0)


def test_talk_is_cut_and_never_raw():
    env = _env(max_public_chars=20)
    env.step(0, "<think>books are worth 2</think>" + "blah " * 50 + "[Propose: book=2]")
    public = env.turns[-1].public
    assert public.endswith("[Propose: book=2, hat=0, ball=0]") and len(public) <= 20 + 1 + len(
        deal.proposal_text((2, 0, 0))
    )
    assert "worth 2" not in env.observation(1)


def _with_values(env, owner, values, viewer):
    """``viewer``'s observation and view had ``owner``'s values been ``values``."""
    saved = env.values[owner]
    env.values[owner] = values
    try:
        return env.observation(viewer), env.view(viewer)
    finally:
        env.values[owner] = saved


def _other_vector(env, owner):
    return next(v for v in deal.value_vectors(env.counts) if v != env.values[owner])


def _rendered_values(fmt, values):
    """The other player's values, rendered exactly as the renderer renders a player's own values."""
    return deal.values_phrase(values) if fmt == "full" else f"v={','.join(map(str, values))}"


@pytest.mark.parametrize("fmt", ["full", "compact"])
def test_hidden_information_over_many_random_games(fmt):
    env = envs.make("deal", obs_format=fmt)
    checks = {"absent": 0, "independent": 0}

    def check(_player):
        for p in (0, 1):
            obs, view = env.observation(p), env.view(p)
            assert f"SECRET-{1 - p}" not in obs and "SECRET" not in str(view)
            assert _rendered_values(fmt, env.values[p]) in obs  # the rendering checked below is the real one
            if env.values[1 - p] != env.values[p]:
                assert _rendered_values(fmt, env.values[1 - p]) not in obs
                checks["absent"] += 1
            # Non-interference: had the other's values been different, p would have seen exactly the same.
            assert (obs, view) == _with_values(env, 1 - p, _other_vector(env, 1 - p), p)
            assert obs != _with_values(env, p, _other_vector(env, p), p)[0]  # the check can see a change
            checks["independent"] += 1

    for seed in range(300):
        agents = {p: Thinker(envs.agent("random", game="deal"), p) for p in (0, 1)}
        envs.play_episode(env, agents, seed, before_step=check)
        check(-1)  # the final observations too
    assert checks["absent"] > 2000 and checks["independent"] > 3000


# ---------------------------------------------------------------------------------------- scripted agents
def test_random_play_always_terminates_within_the_message_limit():
    for max_messages in (1, 4, 10):
        for outcome in _play("random", "random", range(200), max_messages=max_messages):
            assert outcome.metrics["messages"] <= max_messages and outcome.metrics["invalid_rate"] == 0.0


def test_random_agent_never_walks_early():
    env = envs.make("deal")
    agents = {p: envs.agent("random", game="deal") for p in (0, 1)}
    walks = 0
    for seed in range(300):
        envs.play_episode(env, agents, seed)
        for turn in env.turns:
            if turn.action == "[Walk]":
                walks += 1
                assert turn.info["message"] >= env.max_messages // 2
    assert walks > 0


def test_scripted_agents_act_validly():
    for first, second in itertools.permutations(["random", "greedy", "hardliner"], 2):
        outcomes = _play(first, second, range(100))
        assert all(o.metrics["invalid_rate"] == 0.0 for o in outcomes)
        assert any(o.metrics["agreement"] for o in outcomes)


def test_greedy_threshold_and_choice():
    greedy = envs.agent("greedy", game="deal")
    view = {"counts": COUNTS, "values": V0, "max_messages": 10, "history": [], "their_proposal": None}
    assert greedy.threshold(view) == 8.0
    # θ = 8: bundles worth >= 8 to player 0 keep at least 4 items; of those, 2 books + hat + ball (8 points).
    assert greedy.act(view).endswith("[Propose: book=2, hat=1, ball=1]")
    view["their_proposal"] = (0, 0, 2)  # leaves me 2 books, the hat and a ball: 8 points
    assert greedy.act(view).endswith("[Accept]")
    view["their_proposal"] = (0, 0, 3)  # 7 points: below θ = 8 at the start, above θ = 5 at the end
    assert "[Accept]" not in greedy.act(view)
    view["history"] = [{}] * 9
    assert greedy.threshold(view) == 5.0 and greedy.act(view).endswith("[Accept]")


def test_hardliner_demands_nine_and_accepts_only_eight():
    hardliner = envs.agent("hardliner", game="deal")
    view = {"counts": COUNTS, "values": V0, "max_messages": 10, "history": [{}] * 9, "their_proposal": (0, 0, 3)}
    # 2 books + hat + 2 balls = 9 points with 5 items: the fewest items worth >= 9.
    assert hardliner.act(view).endswith("[Propose: book=2, hat=1, ball=2]")
    view["their_proposal"] = (0, 0, 2)
    assert hardliner.act(view) == "[Accept]"


def _mean(outcomes, key):
    return statistics.mean(o.metrics[key] for o in outcomes)


def test_scripted_ordering():
    # Means over 300 seeds; a game's points have sd ~3.5, so each mean's standard error is ~0.2 and the
    # margins below are > 5 standard errors of the difference (measured: ~7.6 and ~7.9 vs ~4.1).
    seeds = range(300)
    random_random = _play("random", "random", seeds)
    assert _mean(_play("greedy", "random", seeds), "points_first") > _mean(random_random, "points_first") + 1.5
    assert _mean(_play("random", "greedy", seeds), "points_second") > _mean(random_random, "points_second") + 1.5
    assert _mean(_play("hardliner", "random", seeds), "points_first") > _mean(random_random, "points_first") + 1.5
    # Two hardliners rarely agree; two greedy agents concede to a deal most of the time (measured ~0.22, ~0.86).
    assert (
        _mean(_play("greedy", "greedy", seeds), "agreement")
        > _mean(_play("hardliner", "hardliner", seeds), "agreement") + 0.3
    )
