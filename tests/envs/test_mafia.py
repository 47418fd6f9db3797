"""Mafia: dealing, night and day rules, the win rule, hidden information and the scripted agents (docs/games.md)."""

import math
import re
from collections import Counter
from functools import cache

import pytest

from maro_lightning import envs
from maro_lightning.envs import ScriptedAgent
from maro_lightning.envs.mafia import Mafia
from maro_lightning.envs.mafia import reveal
from maro_lightning.envs.mafia_agents import RandomVoter


# ----------------------------------------------------------------------------------------------- helpers
def _env(seed: int = 0, **options) -> Mafia:
    env = envs.make("mafia", talk_rounds=0, **options)
    env.reset(seed)
    return env


def _who(env: Mafia, role: str) -> list[int]:
    return sorted(p for p, r in env.roles.items() if r == role)


def _night(env: Mafia, kill: int, protect: int | None = None, investigate: int | None = None) -> None:
    """Every night actor acts: the Mafia all vote ``kill``; the Doctor and Detective pick a legal default."""
    for player in env.to_act():
        role = env.roles[player]
        if role == "mafia":
            env.step(player, f"[Vote: Player {kill}]")
        else:
            chosen = protect if role == "doctor" else investigate
            chosen = chosen if chosen is not None else next(p for p in env.legal_targets(player) if p != kill)
            env.step(player, f"[{'Protect' if role == 'doctor' else 'Investigate'}: Player {chosen}]")


def _day(env: Mafia, target: int, votes: dict[int, int] | None = None) -> None:
    """Every living player votes ``target`` (``target`` itself votes for someone else) unless ``votes`` says."""
    for player in env.to_act():
        choice = (votes or {}).get(player, target)
        choice = choice if choice != player else env.legal_targets(player)[0]
        env.step(player, f"[Vote: Player {choice}]")


def _random_seats(env: Mafia) -> dict[int, ScriptedAgent]:
    return {p: envs.agent("random", game="mafia") for p in env.roles}


def _play(env: Mafia, seeds, seats=None) -> list[envs.Outcome]:
    return [envs.play_episode(env, seats or _random_seats(env), seed) for seed in seeds]


# ------------------------------------------------------------------------------------------- dealing
@pytest.mark.parametrize(
    ("n", "mafia"), [(4, 1), (5, 1), (6, 2), (7, 2), (8, 2), (9, 2), (10, 3), (11, 3), (12, 3), (14, 4)]
)
def test_dealing_round_half_up_of_n_over_4(n, mafia):
    env = envs.make("mafia", n_players=n)
    deals = set()
    for seed in range(30):
        env.reset(seed)
        counts = Counter(env.roles.values())
        assert counts == Counter({"mafia": mafia, "doctor": 1, "detective": 1, "villager": n - mafia - 2})
        assert sorted(env.roles) == list(range(n))
        deals.add(tuple(env.roles.values()))
    assert len(deals) > 5  # the deal is shuffled per seed


def test_dealing_options_and_errors():
    env = _env(n_players=7, num_mafia=3, doctor=False)
    assert Counter(env.roles.values()) == Counter({"mafia": 3, "detective": 1, "villager": 3})
    assert sorted(env.to_act()) == sorted(_who(env, "mafia") + _who(env, "detective"))
    with pytest.raises(ValueError, match="at least 4 players"):
        envs.make("mafia", n_players=3)
    with pytest.raises(ValueError, match="under half"):
        envs.make("mafia", n_players=6, num_mafia=3)
    with pytest.raises(ValueError, match="tie"):
        envs.make("mafia", tie="coin")
    with pytest.raises(ValueError, match="max_days"):
        envs.make("mafia", max_days=0)


def test_determinism_per_seed_with_scripted_seats():
    env = envs.make("mafia")
    runs = []
    for seed in (3, 3, 4):
        seats = {p: envs.agent("scripted", game="mafia") for p in range(6)}
        outcome = envs.play_episode(env, seats, seed)
        runs.append(([(t.player, t.raw, t.public, t.action, t.info) for t in env.turns], outcome))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# --------------------------------------------------------------------------------------- night and day
def test_night_is_simultaneous_and_the_kill_is_announced():
    env = _env(1)
    mafia = _who(env, "mafia")
    assert env.stage == "night"
    assert env.to_act() == sorted(p for p, r in env.roles.items() if r != "villager")
    victim = _who(env, "villager")[0]
    _night(env, victim)
    assert victim not in env.alive and env.events[0] == ("dawn", 1, victim)
    assert env.stage == "day-vote" and env.to_act() == env.alive
    for turn in env.turns:
        if turn.player in mafia:
            assert turn.info == {**turn.info, "target": victim, "chosen": True, "killed": True}


def test_mafia_split_vote_is_a_random_plurality():
    victims = Counter()
    for seed in range(60):
        env = _env(seed)
        first, second = _who(env, "mafia")
        a, b = _who(env, "villager")
        for player in env.to_act():
            target = {first: a, second: b}.get(player)
            if target is not None:
                env.step(player, f"[Vote: Player {target}]")
            else:
                env.step(player, f"[{'Protect' if env.roles[player] == 'doctor' else 'Investigate'}: Player {first}]")
        victims[a not in env.alive] += 1
        assert (a in env.alive) != (b in env.alive)
    assert victims[True] > 15 and victims[False] > 15


def test_doctor_save_prevents_the_death():
    env = _env(2)
    doctor, victim = _who(env, "doctor")[0], _who(env, "villager")[0]
    _night(env, victim, protect=victim)
    assert env.alive == list(range(6)) and env.events[0] == ("dawn", 1, None)
    saved = [t for t in env.turns if t.player == doctor]
    assert saved[0].info["saved"] is True and saved[0].info["target"] == victim
    assert all(t.info["killed"] is False for t in env.turns if t.role == "mafia")
    assert "no one died" in env.observation(victim)
    assert "Night 1: Player " + str(victim) in env.observation(doctor)  # the Doctor knows whom it protected


def test_detective_learns_the_truth_privately():
    for fmt in ("full", "compact"):
        env = _env(3, obs_format=fmt)
        detective, suspect = _who(env, "detective")[0], _who(env, "mafia")[0]
        _night(env, _who(env, "villager")[0], investigate=suspect)
        assert env.investigations == [(1, suspect, True)]
        assert [t.info["target_is_mafia"] for t in env.turns if t.player == detective] == [True]
        shown = reveal(suspect, "mafia" if fmt == "compact" else "Mafia", compact=fmt == "compact")
        assert shown in env.observation(detective)
        assert all(shown not in env.observation(p) for p in env.roles if env.roles[p] not in ("detective", "mafia"))
        innocent = _who(env, "villager")[1]
        _day(env, _who(env, "mafia")[1])  # vote the other Mafia member out so that the game goes on
        _night(env, _who(env, "doctor")[0], investigate=innocent)
        cleared = reveal(innocent, "village" if fmt == "compact" else "not Mafia", compact=fmt == "compact")
        assert env.investigations[-1] == (2, innocent, False) and cleared in env.observation(detective)


def test_mafia_see_each_others_night_votes_and_messages_nobody_else_does():
    env = _env(4)
    first, second = _who(env, "mafia")
    victim = _who(env, "villager")[0]
    env.step(first, f"Let us take him. [Vote: Player {victim}]")
    assert env.view(second)["mafia_votes"] == [(1, first, victim, "Let us take him.")]
    assert "Let us take him." in env.observation(second)
    for player in env.roles:
        if env.roles[player] != "mafia":
            assert env.view(player)["mafia_votes"] == [] and "Let us take him." not in env.observation(player)


def _talk_day(seed: int) -> tuple[Mafia, list[int]]:
    env = envs.make("mafia", talk_rounds=2)
    env.reset(seed)
    _night(env, _who(env, "villager")[0])
    speakers = []
    while env.stage == "day-talk":
        speakers.append(env.to_act()[0])
        env.step(speakers[-1], f"I am {speakers[-1]}.")
    return env, speakers


def test_talk_rounds_in_a_seeded_order():
    orders = set()
    for seed in range(10):
        env, speakers = _talk_day(seed)
        assert sorted(speakers[:5]) == sorted(speakers[5:]) == env.alive  # each living player once per round
        assert _talk_day(seed)[1] == speakers
        orders.update({tuple(speakers[:5]), tuple(speakers[5:])})
        assert f"Day 1, round 2, Player {speakers[5]}: I am {speakers[5]}." in env.observation(env.alive[0])
    assert len(orders) > 15


def test_day_votes_are_secret_until_all_have_voted():
    env, _ = _talk_day(5)
    voter, target, other = env.alive[:3]
    env.step(voter, f"Bye. [Vote: Player {target}]")
    assert f"Player {voter} -> Player {target}" not in env.observation(other)
    assert "Bye." not in env.observation(other)
    _day(env, target)
    assert f'Player {voter} -> Player {target} and said: "Bye."' in env.observation(other)


def test_talk_phase_rejects_tags_and_defaults_to_silence():
    env = envs.make("mafia", talk_rounds=1, max_retries=1)
    env.reset(6)
    _night(env, _who(env, "villager")[0])
    speaker = env.to_act()[0]
    env.step(speaker, "I vote him [Vote: Player 1]")
    assert not env.turns[-1].valid and "talk only" in env.turns[-1].info["invalid_reason"]
    assert env.to_act() == [speaker] and "talk only" in env.observation(speaker)
    env.step(speaker, "[vote player 1]")  # malformed: still an attempt to act
    assert env.turns[-1].info["defaulted"] and env.turns[-1].public == "" and env.events[-1][-1] == ""
    assert env.to_act() != [speaker]


# -------------------------------------------------------------------------------------------- win rule
def test_village_wins_when_the_last_mafia_is_eliminated():
    env = _env(7)
    first, second = _who(env, "mafia")
    villagers = _who(env, "villager")
    _night(env, villagers[0])
    _day(env, first)
    assert not env.done and first not in env.alive
    _night(env, villagers[1])
    assert not env.done  # 1 Mafia of 3 living: below half
    _day(env, second)
    assert env.done and env.winner == "village" and env.to_act() == []
    outcome = env.outcome()
    for player, role in env.roles.items():
        assert outcome.rewards[player] == (-1.0 if role == "mafia" else 1.0)
        assert outcome.success[player] == (role != "mafia")
    assert outcome.metrics["mafia_win"] == 0.0 and outcome.metrics["days"] == 2.0
    assert outcome.metrics["mafia_survival_days"] == 1.5  # eliminated on day 1 and day 2


def test_mafia_win_at_parity_after_a_day_vote():
    env = _env(8)
    villagers = _who(env, "villager")
    _night(env, villagers[0])
    _day(env, villagers[1])  # 2 Mafia of 4 living
    assert env.done and env.winner == "mafia" and env.end_reason == "parity"
    outcome = env.outcome()
    assert all(outcome.rewards[p] == (1.0 if r == "mafia" else -1.0) for p, r in env.roles.items())
    assert outcome.rewards[villagers[0]] == -1.0  # the dead lose with their team


def test_win_is_checked_after_the_night_kill():
    env = _env(9)
    villagers, doctor = _who(env, "villager"), _who(env, "doctor")[0]
    _night(env, villagers[0], protect=villagers[0])  # saved
    _day(env, villagers[1])  # 2 Mafia of 5
    assert not env.done
    _night(env, doctor)  # 2 Mafia of 4: over before day 2 begins
    assert env.done and env.winner == "mafia" and env.outcome().metrics["days"] == 1.0
    assert env.events[-2:] == [("dawn", 2, doctor), ("end", "mafia", "parity")]


def _tied_day(seed: int, **options) -> tuple[Mafia, tuple[int, int]]:
    """A saved night, then a day vote tied 3-3 between a Mafia member and a Villager."""
    env = _env(seed, **options)
    mafia, villagers = _who(env, "mafia"), _who(env, "villager")
    _night(env, villagers[0], protect=villagers[0])
    a, b = mafia[0], villagers[1]
    rest = [p for p in env.alive if p not in (a, b)]
    _day(env, a, votes={a: b, b: a, rest[0]: a, rest[1]: a, rest[2]: b, rest[3]: b})
    return env, (a, b)


def test_tied_vote_eliminates_no_one_then_the_day_cap_ends_the_game():
    env, _ = _tied_day(10, tie="none", max_days=1)
    assert env.events[-2:] == [("out", 1, None), ("end", "mafia", "cap")]
    assert env.done and env.winner == "mafia" and len(env.alive) == 6
    assert env.outcome().metrics["capped"] == 1.0
    assert "No one was eliminated" in env.observation(0)


def test_tied_vote_random_eliminates_one_of_the_tied():
    eliminated = Counter()
    for seed in range(40):
        env, (a, b) = _tied_day(seed, tie="random")
        out = next(e[2] for e in env.events if e[0] == "out")
        eliminated[out == a] += 1
        assert out in (a, b) and not env.done  # a Mafia member out (1 of 5) or a Villager out (2 of 5)
    assert eliminated[True] > 8 and eliminated[False] > 8


# ------------------------------------------------------------------------------------ parsing and invalid
@pytest.mark.parametrize(
    ("arg", "target"),
    [
        ("Player 3", 3),
        ("player3", 3),
        ("PLAYER   3", 3),
        ("P3", 3),
        ("p 3", 3),
        ("#3", 3),
        ("3", 3),
        ("  Player 03 ", 3),
        ("Player 0", 0),
        ("", None),
        ("Player", None),
        ("three", None),
        ("Player 3 and 4", None),
        ("Player -3", None),
        ("Player 3.5", None),
        ("Player 99", None),
        ("Player 999999999999999999999999999999", None),
        ("Player ３", None),
    ],
)
def test_vote_target_parsing(arg, target):
    env = _env(11, max_retries=5)
    _night(env, _who(env, "villager")[0], protect=_who(env, "villager")[0])  # no death: everyone can be voted
    voter = next(p for p in env.to_act() if p not in (0, 3))
    env.step(voter, f"[Vote: {arg}]")
    turn = env.turns[-1]
    assert turn.valid == (target is not None)
    if target is not None:
        assert turn.action == f"[Vote: Player {target}]" and turn.info["target"] == target
    else:
        assert turn.info["invalid_reason"] and voter in env.to_act()


def test_vote_tag_spellings():
    env = _env(12, max_retries=5)
    _night(env, _who(env, "villager")[0], protect=_who(env, "villager")[0])
    spellings = ["[vote: {}]", "[ VOTE :P{}]", "[Vote: player{}]", "x [Vote] y"]
    for voter, spelling in zip(env.to_act(), spellings, strict=False):
        env.step(voter, spelling.format(3 if voter != 3 else 4))
    assert [t.valid for t in env.turns[-4:]] == [True, True, True, False]


@pytest.mark.parametrize("role", ["mafia", "doctor", "detective"])
def test_illegal_night_targets_are_retried_then_a_random_legal_target(role):
    for seed in range(10):
        env = _env(seed, max_retries=1)
        actor = _who(env, role)[0]
        dead_or_teammate = _who(env, "mafia")[1] if role == "mafia" else actor  # teammate or self
        tag = {"mafia": "Vote", "doctor": "Protect", "detective": "Investigate"}[role]
        env.step(actor, f"[{tag}: Player {dead_or_teammate}]")
        assert not env.turns[-1].valid and actor in env.to_act()
        assert "previous message was invalid" in env.observation(actor)
        env.step(actor, f"[{tag}: Player 17]")
        turn = env.turns[-1]
        assert turn.info["defaulted"] and turn.info["target"] in env.legal_targets(actor)
        assert turn.info["target"] != actor and (role != "mafia" or not turn.info["target_is_mafia"])


def test_wrong_tag_missing_tag_and_dead_targets_are_invalid():
    env = _env(13, max_retries=3)
    doctor, villager = _who(env, "doctor")[0], _who(env, "villager")[0]
    env.step(doctor, f"[Vote: Player {villager}]")
    assert "[Protect: Player k]" in env.turns[-1].info["invalid_reason"]
    env.step(doctor, "I protect nobody")
    assert "action is required" in env.turns[-1].info["invalid_reason"]
    _night(env, villager)
    voter = next(p for p in env.to_act() if p != doctor)
    env.step(voter, f"[Vote: Player {villager}]")
    assert env.turns[-1].info["invalid_reason"] == f"Player {villager} is dead"
    env.step(voter, f"[Vote: Player {voter}]")
    assert env.turns[-1].info["invalid_reason"] == "you cannot target yourself"


GARBAGE = [
    "",
    "".join(chr(32 + (i * 7919) % 95) for i in range(10_000)),
    "🙂 ünïcödé [Vøte: Plåyer 1] 你好",
    "[Vote: Player 99999999999999999999999999]",
    "[Vote: Player -1][Vote: Player 2]",
    "[Protect: Player 1e9]",
    "<think>[Vote: Player 1]",
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_in_every_phase_never_crashes(garbage):
    env = envs.make("mafia", talk_rounds=1)
    seats = _random_seats(env)
    env.reset(14)
    while not env.done:
        player = env.to_act()[0]
        env.step(player, garbage)  # every attempt is garbage: retried, then defaulted
        for other in env.to_act():
            env.step(other, seats[other].act(env.view(other)))
    outcome = env.outcome()
    assert outcome.metrics["invalid_rate"] > 0 and set(outcome.rewards) == set(env.roles)


# ---------------------------------------------------------------------------------------- information
class _Marked(ScriptedAgent):
    """Random play whose every message carries a private marker and, outside day talk, a public one."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = RandomVoter()

    def reset(self, seed: int) -> None:
        self.inner.reset(seed)

    def act(self, view) -> str:
        player, text = view["player"], self.inner.act(view)
        if view["action"] == "talk":
            return f"<think>SECRET-{player} I know who is Mafia</think>{text}"
        return f"<think>SECRET-{player}</think>MSG-{player}-{view['phase']} {text}"


def _reveals(text: str, compact: bool) -> set[tuple[int, str]]:
    """Every (player, label) an observation ties together, found in the renderer's one format and no other."""
    pattern = r"(?<![\d\w])(\d+)=(\w+)" if compact else r"Player (\d+) \(([^)]*)\)"
    return {(int(p), label) for p, label in re.findall(pattern, text)}


def _allowed(env: Mafia, reader: int, compact: bool) -> set[tuple[int, str]]:
    roles = env.roles
    if roles[reader] == "mafia":
        label = "mafia" if compact else "Mafia"
        return {(p, label) for p in roles if roles[p] == "mafia" and p != reader}
    if roles[reader] == "detective":
        truth = {True: "mafia" if compact else "Mafia", False: "village" if compact else "not Mafia"}
        return {(t, truth[bad]) for _, t, bad in env.investigations}
    return set()


def _check_observation(env: Mafia, reader: int, text: str, compact: bool, seen: Counter) -> None:
    roles = env.roles
    assert "SECRET-" not in text and "I know who is" not in text
    found = _reveals(text, compact)
    assert found <= _allowed(env, reader, compact), (reader, roles, found)
    seen["reveals"] += len(found)
    for other in roles:
        if f"MSG-{other}-night" in text:
            assert roles[other] == roles[reader] == "mafia"
            seen["mafia night talk"] += other != reader
    if roles[reader] != "mafia":
        assert "teammate" not in text and "Mafia team" not in text and "mates" not in text
    view = env.view(reader)  # what scripted agents read obeys the same rules
    assert bool(view["teammates"] or view["mafia_votes"]) <= (roles[reader] == "mafia")
    assert bool(view["investigations"]) <= (roles[reader] == "detective")
    assert bool(view["protections"]) <= (roles[reader] == "doctor")
    assert "undealt" not in text


@pytest.mark.parametrize("fmt", ["full", "compact"])
def test_hidden_information_over_many_random_games(fmt):
    env = envs.make("mafia", obs_format=fmt)
    seats = {p: _Marked() for p in env.roles}
    seen: Counter = Counter()

    def observe_all(_player: int) -> None:
        for reader in env.roles:
            _check_observation(env, reader, env.observation(reader), fmt == "compact", seen)

    for seed in range(300):
        envs.play_episode(env, seats, seed, before_step=observe_all)
        observe_all(-1)
    assert seen["reveals"] > 1000  # the checks saw teammates and results, so they can fail
    assert seen["mafia night talk"] > 100 or fmt == "compact"


def test_roles_never_shown_in_public_text_even_on_death():
    env = envs.make("mafia")
    words = re.compile(r"\b(mafia|doctor|detective|villager)\b", re.IGNORECASE)
    for outcome_seed in range(100):
        envs.play_episode(env, _random_seats(env), outcome_seed)
        for event in env.events:
            if event[0] != "end":  # only the end names a winning team, never a player's role
                assert not words.search(repr(event))
        assert all(not words.search(t.public) for t in env.turns)


def test_full_observation_lists_exactly_the_legal_actions():
    env = _env(15)
    mafia, doctor = _who(env, "mafia")[0], _who(env, "doctor")[0]
    text = env.observation(mafia)
    listed = re.findall(r"\[Vote: Player (\d+)\]", text.split("Now:")[-1])
    assert [int(p) for p in listed] == env.legal_targets(mafia) == [p for p in range(6) if env.roles[p] != "mafia"]
    assert "[Protect: Player" in env.observation(doctor) and doctor not in env.legal_targets(doctor)
    compact = envs.make("mafia", obs_format="compact")
    compact.reset(15)
    line = compact.observation(doctor)
    assert "\n" not in line and line.startswith(f"doctor P{doctor} N1 night")
    assert line.endswith("> protect " + " ".join(str(p) for p in range(6) if p != doctor))


# ------------------------------------------------------------------------------------ play and metrics
def test_random_play_terminates_in_every_configuration():
    for options in ({"n_players": 4}, {"n_players": 9, "tie": "none"}, {"tie": "none", "max_days": 2}, {}):
        env = envs.make("mafia", obs_format="compact", talk_rounds=1, **options)
        for seed in range(60):
            outcome = envs.play_episode(env, _random_seats(env), seed)  # raises if a game does not end
            assert env.done and outcome.metrics["days"] <= env.max_days
            committed = [t for t in env.turns if t.valid or t.info.get("defaulted")]
            assert outcome.metrics["decisions"] == len(committed)


def test_metrics_and_turn_features():
    env = envs.make("mafia")
    for seed in range(40):
        outcome = envs.play_episode(env, _random_seats(env), seed)
        votes = [t for t in env.turns if t.phase == "day-vote" and t.role != "mafia"]
        on_mafia = sum(t.info["target_is_mafia"] for t in votes)
        assert outcome.metrics["village_vote_accuracy"] == pytest.approx(on_mafia / len(votes))
        assert outcome.metrics["mafia_win"] == float(env.winner == "mafia")
        assert 1.0 <= outcome.metrics["mafia_survival_days"] <= outcome.metrics["days"]
        for turn in env.turns:
            assert turn.info["day"] >= 1
            if turn.phase == "day-vote":
                assert turn.info["correct"] == (turn.info["target_is_mafia"] != (turn.role == "mafia"))
                assert isinstance(turn.info["eliminated"], bool)
            if turn.role == "doctor" and turn.phase == "night":
                assert isinstance(turn.info["saved"], bool)


# P(Mafia win) under random play, from the rules alone: a Markov chain on how many Mafia, Doctors and other
# village players live, independent of the env code. With every seat random, the night victim is uniform over the
# living non-Mafia (iid votes, random tie-break), the Doctor protects a uniform other living player, and the day's
# eliminated player is uniform over the living (symmetric votes, random tie-break). The Detective changes nothing
# under random play and counts among the others.
def _settled(mafia: int, doctor: int, others: int) -> float | None:
    living = mafia + doctor + others
    return 0.0 if mafia == 0 else 1.0 if 2 * mafia >= living else None


@cache
def _exact_night(mafia: int, doctor: int, others: int, day: int) -> float:
    village, living = doctor + others, mafia + doctor + others
    save = 1 / (living - 1) if doctor else 0.0  # the Doctor never protects itself

    def after(*alive: int) -> float:
        settled = _settled(*alive)
        return _exact_day(*alive, day) if settled is None else settled

    kill_other = after(mafia, doctor, others - 1) if others else 0.0
    return doctor / village * after(mafia, 0, others) + others / village * (
        (1 - save) * kill_other + save * after(mafia, doctor, others)
    )


@cache
def _exact_day(mafia: int, doctor: int, others: int, day: int, max_days: int = 10) -> float:
    total, living = 0.0, mafia + doctor + others
    for count, alive in (
        (mafia, (mafia - 1, doctor, others)),
        (doctor, (mafia, 0, others)),
        (others, (mafia, doctor, others - 1)),
    ):
        settled = _settled(*alive) if count else 0.0
        if settled is None:
            settled = 1.0 if day >= max_days else _exact_night(*alive, day + 1)  # the cap: the Mafia win
        total += count / living * settled
    return total


@pytest.mark.parametrize(("n", "alive", "games"), [(6, (2, 1, 3), 1500), (4, (1, 1, 2), 800)])
def test_random_play_mafia_win_rate_matches_the_rules(n, alive, games):
    """Acceptance: the random-play Mafia win rate, measured, equals the exact value of the rules.

    The first estimate (docs/games.md#mafia) said "about two in three" at 6 players; its own rules give 0.872
    there (0.676 at 4 players), and the env must play those rules: the tolerance is 3.5 standard errors (±0.03
    for 1500 games).
    """
    exact = _exact_night(*alive, 1)
    outcomes = _play(envs.make("mafia", n_players=n, obs_format="compact"), range(games))
    rate = sum(o.metrics["mafia_win"] for o in outcomes) / games
    assert abs(rate - exact) < 3.5 * math.sqrt(exact * (1 - exact) / games), (rate, exact)
    if n == 6:
        assert abs(exact - 0.8716) < 1e-3
        assert 20 <= sum(o.metrics["decisions"] for o in outcomes) / games <= 35


# ------------------------------------------------------------------------------------------ the agents
def test_scripted_agents_are_registered_and_always_valid():
    assert {"random", "bandwagon", "scripted", "truthful_detective", "scripted_mafia", "scripted_doctor"} <= set(
        envs.agent_names("mafia")
    )
    env = envs.make("mafia")
    for name in ("scripted", "bandwagon", "random"):
        for outcome in _play(env, range(40), {p: envs.agent(name, game="mafia") for p in env.roles}):
            assert outcome.metrics["invalid_rate"] == 0.0


def test_truthful_detective_claims_a_real_mafia_and_scripted_mafia_kill_the_claimant():
    env = envs.make("mafia")
    claims = hunted = 0
    for seed in range(150):
        envs.play_episode(env, {p: envs.agent("scripted", game="mafia") for p in env.roles}, seed)
        claimed = [t for t in env.turns if "I am the Detective" in t.public]
        assert all(t.role == "detective" for t in claimed)
        for turn in claimed:
            accused = int(re.search(r"I accuse Player (\d+)", turn.public).group(1))
            assert env.roles[accused] == "mafia"
        claims += bool(claimed)
        if claimed:
            later = [t for t in env.turns[claimed[0].index :] if t.phase == "night" and t.role == "mafia"]
            hunted += all(t.info["target"] == claimed[0].player for t in later) and bool(later)
    assert claims > 20 and hunted > 5


def test_scripted_village_beats_random_village():
    """The scripted village (detective, doctor, bandwagon) against random Mafia wins more than random play."""
    env = envs.make("mafia", obs_format="compact")
    seeds = range(300)
    scripted = 0
    for seed in seeds:
        env.reset(seed)
        seats = {p: envs.agent("random" if r == "mafia" else "scripted", game="mafia") for p, r in env.roles.items()}
        scripted += envs.play_episode(env, seats, seed).metrics["mafia_win"] == 0.0
    baseline = sum(o.metrics["mafia_win"] == 0.0 for o in _play(env, seeds))
    assert scripted >= baseline + 50, (scripted, baseline)  # measured: about 140 against 40
