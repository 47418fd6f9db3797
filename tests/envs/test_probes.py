"""The mechanism probes (docs/games.md#mechanism-probes): each probe's defining property, its rules, parser,
hidden information and scripted ladder. The SocialEnv contract (determinism, garbage, retries, forfeit, API misuse,
hostile talk) runs on them in test_contract.py, which covers every registered game."""

import copy
import statistics

import pytest
from players import Thinker

from maro_lightning import envs
from maro_lightning.envs.probes import HIDER
from maro_lightning.envs.probes import SEEKER

PROBES = ("probe_decisive", "probe_skewed", "probe_noisy")


def _agents(game: str, *names: str) -> dict[int, envs.ScriptedAgent]:
    return {player: envs.agent(name, game=game) for player, name in enumerate(names)}


def _play(game: str, names: tuple[str, str], seeds, **options) -> list[tuple[envs.SocialEnv, envs.Outcome]]:
    env = envs.make(game, obs_format="compact", **options)
    played = []
    for seed in seeds:
        outcome = envs.play_episode(env, _agents(game, *names), seed)
        played.append((copy.deepcopy(env), outcome))
    return played


def _replay(game: str, seed: int, texts: list[str], **options) -> envs.SocialEnv:
    """Feed ``texts`` in order to whoever is to act (an invalid text is retried by the next one)."""
    env = envs.make(game, obs_format="compact", **options)
    env.reset(seed)
    for text in texts:
        env.step(env.to_act()[0], text)
    assert env.done
    return env


def _assert_hidden(game: str, names: tuple[str, str], perturb, readers=(0, 1), seeds=range(40)) -> None:
    """Non-interference, in both formats, at every step of seeded games: had the other player's secret been
    different (``perturb(copy, reader)`` changes it in a copy), ``reader`` would have seen exactly the same; and
    the change is real (its owner sees it in some states). No ``<think>`` text reaches the reader either."""
    for fmt in ("full", "compact"):
        env = envs.make(game, obs_format=fmt)
        seen = {"same": 0, "owner_sees_it": 0}

        def check(_player, env=env, seen=seen):
            for reader in readers:
                other = perturb(copy.deepcopy(env), reader)
                assert (other.observation(reader), other.view(reader)) == (env.observation(reader), env.view(reader))
                assert f"SECRET-{1 - reader}" not in env.observation(reader)
                seen["same"] += 1
                seen["owner_sees_it"] += other.observation(1 - reader) != env.observation(1 - reader)

        for seed in seeds:
            agents = {p: Thinker(a, p) for p, a in _agents(game, *names).items()}
            envs.play_episode(env, agents, seed, before_step=check)
            check(-1)
        assert seen["same"] > 100 and seen["owner_sees_it"] > 20, seen


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("game", "options", "error", "message"),
    [
        ("probe_decisive", {"watches": 0}, ValueError, "watches must be a whole number from 1 to 100, got 0"),
        ("probe_decisive", {"choices": 1}, ValueError, "choices must be a whole number from 2 to 100, got 1"),
        ("probe_decisive", {"watches": 2.5}, TypeError, "watches must be a whole number"),
        ("probe_decisive", {"turns": 3}, TypeError, "has no option turns"),
        ("probe_skewed", {"doors": 1}, ValueError, "doors must be a whole number from 2 to 100, got 1"),
        ("probe_skewed", {"doors": 4, "tries": 5}, ValueError, "tries must be a whole number from 1 to 4, got 5"),
        ("probe_skewed", {"tries": 0}, ValueError, "tries must be a whole number from 1 to 6, got 0"),
        ("probe_noisy", {"noise": 0.6}, ValueError, "noise must be a probability from 0 to 0.5, got 0.6"),
        ("probe_noisy", {"noise": -0.1}, ValueError, "noise must be a probability from 0 to 0.5"),
        ("probe_noisy", {"noise": float("nan")}, ValueError, "noise must be a finite number"),
        ("probe_noisy", {"noise": "high"}, TypeError, "noise must be a number"),
        ("probe_noisy", {"lots": 10}, ValueError, "lots must be a whole number from 2 to 9, got 10"),
    ],
)
def test_options_are_checked_at_construction(game, options, error, message):
    with pytest.raises(error, match=message):
        envs.make(game, **options)


def test_probes_are_registered_games_with_their_ladders():
    assert set(PROBES) <= set(envs.names())
    assert envs.agent_names("probe_decisive") == envs.agent_names("probe_noisy") == ["careless", "random", "sharp"]
    assert envs.agent_names("probe_skewed") == ["naive", "predictable", "random"]


# ------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    ("game", "text", "action"),
    [
        ("probe_decisive", "[Flag: 2]", "[Flag: 2]"),
        ("probe_decisive", "All quiet. [ flag :  $2 ]", "[Flag: 2]"),
        ("probe_decisive", "[FLAG: 3.00]", "[Flag: 3]"),
        ("probe_decisive", "<think>ship says 1</think>[Flag: 1]", "[Flag: 1]"),
        ("probe_decisive", "nothing to see", None),
        ("probe_decisive", "[laughs] [Flag: 1] is what I'd say", "[Flag: 1]"),
        ("probe_skewed", "[Hide: 6]", "[Hide: 6]"),
        ("probe_skewed", "Good luck!", None),
        ("probe_noisy", "[Take: 1]", "[Take: 1]"),
        ("probe_noisy", "I pass.", None),
    ],
)
def test_valid_messages(game, text, action):
    env = envs.make(game)
    env.reset(0)
    player = env.to_act()[0]
    env.step(player, text)
    assert env.turns[-1].valid and env.turns[-1].action == action


@pytest.mark.parametrize(
    ("game", "text", "reason"),
    [
        ("probe_decisive", "[Flag: 4]", "from 1 to 3, got 4"),
        ("probe_decisive", "[Flag: 0]", "from 1 to 3, got 0"),
        ("probe_decisive", "[Flag: two]", "must be a whole number"),
        ("probe_decisive", "[Flag: 2.5]", "must be a whole number"),
        ("probe_decisive", "[Flag: -1]", "must be a whole number"),
        ("probe_decisive", "[Flag 2]", "malformed tag"),
        ("probe_decisive", "[Flag]", "must be a whole number"),
        ("probe_decisive", "[Flag: 1] [Flag: 2]", "more than one action tag"),
        ("probe_decisive", "[Flag: 99999999999999999999999]", "absurdly large"),
        ("probe_skewed", "[Open: 2]", "[Open] is not your action: write [Hide: k]"),
        ("probe_skewed", "[Hide: 7]", "from 1 to 6, got 7"),
        ("probe_noisy", "[Take: 4]", "from 1 to 3, got 4"),
        ("probe_noisy", "[Take: lot 2]", "must be a whole number"),
    ],
)
def test_malformed_text_is_an_invalid_action_never_a_crash(game, text, reason):
    env = envs.make(game)
    env.reset(0)
    player = env.to_act()[0]
    env.step(player, text)
    turn = env.turns[-1]
    assert not turn.valid and reason in turn.info["invalid_reason"] and env.to_act() == [player]
    env.step(player, text)  # the retry fails too: talk (no action) is taken for it, and the game goes on
    assert env.turns[-1].info["defaulted"] and env.turns[-1].action is None


def test_the_seeker_cannot_hide_and_the_hider_moves_on_after_one_message():
    env = envs.make("probe_skewed")
    env.reset(0)
    env.step(HIDER, "[Hide: 2]")
    assert env.to_act() == [SEEKER]
    env.step(SEEKER, "[Hide: 3]")
    assert not env.turns[-1].valid and "write [Open: k]" in env.turns[-1].info["invalid_reason"]


# ============================================================================ M1: probe_decisive
def test_decisive_watch_and_ship_are_drawn_per_game_and_shown_from_that_watch_on():
    env = envs.make("probe_decisive", obs_format="compact")
    watches = set()
    for seed in range(300):
        env.reset(seed)
        watches.update(env.decisive.values())
        assert all(1 <= c <= 3 for c in env.ship.values())
        agents = _agents("probe_decisive", "random", "random")
        for agent in agents.values():
            agent.reset(seed)
        while not env.done:
            player = env.to_act()[0]
            watch = env.sent(player) + 1
            obs = env.observation(player)
            assert ("ship=" in obs) == (watch >= env.decisive[player])
            assert ("ans=" in obs) == (watch > env.decisive[player])
            if watch == env.decisive[player]:
                assert obs == f"W{player + 1} t={watch}/10 ship={env.ship[player]} >"
            if watch > env.decisive[player]:
                answer = "-" if env.answer[player] is None else env.answer[player]
                result = "hit" if env.hit(player) else "miss"
                assert obs.endswith(f" ship={env.ship[player]} ans={answer} {result} >")
            env.step(player, agents[player].act(env.view(player)))
    assert watches == set(range(1, 11))


def test_only_the_decisive_watch_changes_the_outcome():
    """The probe's defining property: for each lookout, replacing any message other than the one on its ship's
    watch (by another flag, talk, or garbage then the same message again) leaves both rewards unchanged; replacing
    the one on that watch turns a hit into a miss and back."""
    game = "probe_decisive"
    for seed in range(12):
        ((env, outcome),) = _play(game, ("careless", "careless"), [seed])
        texts = [turn.raw for turn in env.turns]
        speakers = [turn.player for turn in env.turns]
        for i, player in enumerate(speakers):
            watch = speakers[: i + 1].count(player)
            decisive = watch == env.decisive[player]
            for replacement in ("[Flag: 1]", "[Flag: 2]", "[Flag: 3]", "All quiet."):
                changed = _replay(game, seed, [*texts[:i], replacement, *texts[i + 1 :]])
                expected = dict(outcome.rewards)
                if decisive:
                    expected[player] = float(replacement == f"[Flag: {env.ship[player]}]")
                assert changed.outcome().rewards == expected, (seed, i, replacement)
            garbled = _replay(game, seed, [*texts[:i], "[Flag: x]", *texts[i:]])
            assert garbled.outcome().rewards == outcome.rewards


@pytest.mark.parametrize(("agent", "low", "high"), [("random", 0.25, 0.36), ("careless", 0.50, 0.60), ("sharp", 1, 1)])
def test_decisive_ladder_hit_rates(agent, low, high):
    """`careless` (the probe configs' teacher) answers the ship 55% of the time: room for RL above it."""
    played = _play("probe_decisive", (agent, "random"), range(600))
    hits = statistics.mean(outcome.rewards[0] for _, outcome in played)
    assert low <= hits <= high
    assert all(outcome.rewards[0] == outcome.metrics["hit_first"] for _, outcome in played)


def test_a_lookouts_ship_is_hidden_from_the_other():
    """Had the other lookout's ship shown another flag on another watch, a lookout would have seen the same."""

    def perturb(env, reader):
        env.ship[1 - reader] = env.ship[1 - reader] % 3 + 1
        env.decisive[1 - reader] = env.decisive[1 - reader] % 10 + 1
        return env

    _assert_hidden("probe_decisive", ("careless", "random"), perturb, seeds=range(15))


# ============================================================================== M2: probe_skewed
def test_hide_and_seek_rules():
    env = envs.make("probe_skewed", doors=4, tries=2)
    env.reset(0)
    env.prize = env.dealt = 1
    env.step(HIDER, "You will never find it. [Hide: 3]")
    env.step(SEEKER, "[Open: 3]")
    assert env.done and env.outcome().rewards == {HIDER: -1.0, SEEKER: 1.0}
    env.reset(0)
    env.prize = env.dealt = 1
    env.step(HIDER, "Good luck.")  # talk: the prize stays where it was dealt
    env.step(SEEKER, "[Open: 2]")
    env.step(SEEKER, "[Open: 2]")  # a repeat is legal and wastes the try
    assert env.done and env.outcome().success == {HIDER: True, SEEKER: False}
    assert env.outcome().metrics == {
        "found": 0.0, "tries_used": 2.0, "hider_moved": 0.0, "repeats": 1.0, "invalid_rate": 0.0, "turns": 3.0,
    }  # fmt: skip


def test_role_frequencies_and_success_rates_are_skewed_as_documented():
    """The defining property (docs/games.md#hide-and-seek-m2), measured as the probe config trains: the `naive`
    teacher in the learner's seat against the `predictable` opponent, 200 seeded games per role. The hider writes
    one message a game and wins about 1 in 6; the seeker writes about 3.3 and wins about 5 in 6."""
    hider = _play("probe_skewed", ("naive", "predictable"), range(200))
    seeker = _play("probe_skewed", ("predictable", "naive"), range(200))
    hider_wins = statistics.mean(outcome.success[HIDER] for _, outcome in hider)
    seeker_wins = statistics.mean(outcome.success[SEEKER] for _, outcome in seeker)
    assert 0.10 <= hider_wins <= 0.24 and 0.76 <= seeker_wins <= 0.90
    messages = {role: [] for role in ("hider", "seeker")}
    for env, _ in hider + seeker:
        for role in messages:
            messages[role].append(sum(t.role == role for t in env.turns))
    assert set(messages["hider"]) == {1}
    assert 3.0 <= statistics.mean(messages["seeker"]) <= 3.7  # (1 + 2 + 3 + 4 + 5 + 5) / 6 = 3.33 expected


class _BestHider(envs.ScriptedAgent):
    """Beats the `predictable` seeker: hides behind the last door it sweeps (s − 1)."""

    def act(self, view):
        return f"[Hide: {(view['start'] - 2) % view['doors'] + 1}]"


class _BestSeeker(envs.ScriptedAgent):
    """Beats the `predictable` hider: opens s, then s + 1."""

    def act(self, view):
        return f"[Open: {(view['start'] - 1 + len(view['opened'])) % view['doors'] + 1}]"


def test_both_roles_can_learn_to_win_every_game_against_the_habit():
    env = envs.make("probe_skewed", obs_format="compact")
    predictable = envs.agent("predictable", game="probe_skewed")
    for seed in range(200):
        assert envs.play_episode(env, {HIDER: _BestHider(), SEEKER: predictable}, seed).success[HIDER]
        outcome = envs.play_episode(env, {HIDER: predictable, SEEKER: _BestSeeker()}, seed)
        assert outcome.success[SEEKER] and outcome.metrics["tries_used"] <= 2


def test_the_hiding_place_is_hidden_from_the_seeker():
    """Had the prize been dealt or hidden elsewhere (or moved where it was left, or left where it was moved), the
    seeker would have seen the same: of the hider's message it sees the talk alone."""

    def perturb(env, reader):
        env.prize, env.dealt = env.prize % 6 + 1, env.dealt % 5 + 1
        if env.history:
            env.history[0] = {**env.history[0], "kind": "hide", "value": env.prize}
        return env

    _assert_hidden("probe_skewed", ("naive", "random"), perturb, readers=(SEEKER,), seeds=range(100))


# =============================================================================== M3: probe_noisy
def test_appraisal_scores_by_rank():
    env = envs.make("probe_noisy", lots=3, noise=0.0)
    env.reset(0)
    env.values = {0: [4, 7, 2], 1: [1, 9, 5]}
    env.step(0, "[Take: 2]")  # the best of 4, 7, 2
    env.step(1, "[Take: 3]")  # the middle of 1, 9, 5
    assert env.outcome().rewards == {0: 1.0, 1: 0.0} and env.outcome().success == {0: True, 1: False}
    env.reset(0)
    env.values = {0: [4, 7, 2], 1: [1, 9, 5]}
    env.step(0, "[Take: 3]")
    env.step(1, "no thanks")  # no lot scores 0
    assert env.outcome().rewards == {0: -1.0, 1: 0.0}
    env = envs.make("probe_noisy", lots=5, noise=0.0)
    env.reset(0)
    env.values = {0: [5, 1, 9, 3, 7], 1: [1, 2, 3, 4, 5]}
    env.step(0, "[Take: 4]")  # 3 is the second least of five: rank 1 of 0..4
    env.step(1, "[Take: 1]")
    assert env.outcome().rewards == {0: -0.5, 1: -1.0}


def test_without_noise_the_outcome_is_the_clean_one():
    for env, outcome in _play("probe_noisy", ("careless", "random"), range(300), noise=0.0):
        for player, role in env.roles.items():
            assert outcome.rewards[player] == outcome.metrics[f"clean_reward_{role}"] == env.clean_reward(player)
            assert outcome.metrics[f"flipped_{role}"] == 0.0


def test_noise_reverses_a_share_of_outcomes_and_the_clean_value_is_recoverable():
    """The defining property: with noise 0.3 about 30% of the rewards are the clean score reversed; the same seed
    deals the same lots at every noise level, so evaluating at noise 0 recovers the clean value game by game, and
    outcome().metrics carries it too; the noisy mean is (1 − 2·noise) times the clean mean."""
    clean = _play("probe_noisy", ("careless", "careless"), range(1000), noise=0.0)
    noisy = _play("probe_noisy", ("careless", "careless"), range(1000), noise=0.3)
    differs, flips, noisy_rewards, clean_rewards = 0, [], [], []
    for (clean_env, clean_outcome), (noisy_env, noisy_outcome) in zip(clean, noisy, strict=True):
        assert clean_env.values == noisy_env.values
        for player, role in noisy_env.roles.items():
            value = noisy_outcome.metrics[f"clean_reward_{role}"]
            assert value == clean_outcome.rewards[player]  # the same decision, scored without noise
            flipped = noisy_outcome.metrics[f"flipped_{role}"] == 1.0
            assert noisy_outcome.rewards[player] == (-value if flipped else value) + 0.0
            differs += noisy_outcome.rewards[player] != value
            flips.append(flipped)
            noisy_rewards.append(noisy_outcome.rewards[player])
            clean_rewards.append(value)
    assert differs > 200  # a reversed 0 (no lot, the middle lot) is still 0
    assert 0.27 <= statistics.mean(flips) <= 0.33
    # E[reward] = (1 - 2p) · clean: recovered from the noisy mean within its sampling error (2000 rewards)
    assert statistics.mean(noisy_rewards) / (1 - 2 * 0.3) == pytest.approx(statistics.mean(clean_rewards), abs=0.1)


@pytest.mark.parametrize(("agent", "low", "high"), [("random", -0.1, 0.1), ("careless", 0.50, 0.60), ("sharp", 1, 1)])
def test_noisy_ladder_clean_scores(agent, low, high):
    """Clean mean scores: `careless` takes the best lot 55% of the time and otherwise none (0.55 expected)."""
    played = _play("probe_noisy", (agent, "random"), range(1000))
    assert low <= statistics.mean(outcome.metrics["clean_reward_first"] for _, outcome in played) <= high


def test_a_collectors_lots_and_luck_are_hidden_from_the_other():
    """Had the other collector's lots been others, or anyone's appraisal backwards, a collector would have seen the
    same: nobody sees the noise draw, not even its own."""

    def perturb(env, reader):
        env.values[1 - reader] = [v % 9 + 1 for v in env.values[1 - reader]]
        env.flipped = {p: not flipped for p, flipped in env.flipped.items()}
        return env

    _assert_hidden("probe_noisy", ("careless", "random"), perturb, seeds=range(100))


# ================================================================================== all three
@pytest.mark.parametrize("game", PROBES)
def test_the_tiny_vocabulary_writes_every_probe_action(game):
    """`maro fit` builds the tiny word tokenizer from `tiny.corpus_games`; every scripted action must tokenize."""
    from maro_lightning.models import build_tokenizer
    from maro_lightning.models import game_corpus
    from maro_lightning.models import unwritable_actions
    from maro_lightning.rollout import GameSpec

    tokenizer = build_tokenizer(game_corpus([game], episodes=20))
    assert unwritable_actions(tokenizer, [GameSpec(game, opponents={"random": 1.0})]) == ""
    env = envs.make(game, obs_format="compact")
    for seed in range(20):
        envs.play_episode(env, _agents(game, *envs.agent_names(game)[:2]), seed)
        for turn in env.turns:
            assert tokenizer.unk_token_id not in tokenizer(turn.raw, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("game", PROBES)
def test_every_agent_plays_every_seat_validly(game):
    names = envs.agent_names(game)
    for first in names:
        for second in names:
            for env, outcome in _play(game, (first, second), range(30)):
                assert outcome.metrics["invalid_rate"] == 0.0 and set(outcome.rewards) == set(env.roles)
