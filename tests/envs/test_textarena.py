"""The TextArena adapter (docs/games.md#textarena): TextArena's games behind the SocialEnv contract, by its rules."""

import random
import re
import statistics
import sys

import pytest
from players import Thinker
from test_contract import GARBAGE

from maro_lightning import envs
from maro_lightning.envs.textarena_agents import kuhn_hand
from maro_lightning.errors import MissingExtraError

KUHN, TICTACTOE, NEGOTIATION = "textarena:KuhnPoker-v0", "textarena:TicTacToe-v0", "textarena:SimpleNegotiation-v0"
SCRIPTED = {KUHN: "nash", TICTACTOE: "minimax", NEGOTIATION: "greedy"}
ONE_HAND = {"textarena_kwargs": {"max_rounds": 1}}  # Kuhn poker: one hand, player 1 acts first


@pytest.fixture
def textarena():
    return pytest.importorskip("textarena", reason="the textarena extra is not installed")


def _agents(game, *names):
    return {player: envs.agent(name, game=game) for player, name in enumerate(names)}


def _transcript(env):
    return [(t.player, t.raw, t.public, t.action, t.valid, t.info) for t in env.turns]


@pytest.mark.parametrize("game", SCRIPTED)
def test_scripted_agents_play_whole_games_that_textarena_accepts(textarena, game):
    env = envs.make(game)
    for seed, names in enumerate([(SCRIPTED[game], "random"), ("random", SCRIPTED[game]), (SCRIPTED[game],) * 2]):
        outcome = envs.play_episode(env, _agents(game, *names), seed)
        assert env.done and env.to_act() == [] and all(turn.valid for turn in env.turns), env.turns
        assert set(outcome.rewards) == set(outcome.success) == set(outcome.roles) == {0, 1}
        assert sorted(outcome.rewards.values()) in ([-1.0, 1.0], [0.0, 0.0])
        assert outcome.success == {p: r > 0 for p, r in outcome.rewards.items()}
        assert outcome.roles == {0: "Player 0", 1: "Player 1"} and outcome.metrics["invalid_rate"] == 0


def test_the_scripted_agents_beat_random_play(textarena):
    """Minimax never loses at tic-tac-toe; the greedy trader out-trades a random one."""
    for game, seeds in ((TICTACTOE, range(20)), (NEGOTIATION, range(20))):
        env = envs.make(game)
        rewards = [envs.play_episode(env, _agents(game, SCRIPTED[game], "random"), s).rewards[0] for s in seeds]
        assert min(rewards) >= 0 if game == TICTACTOE else statistics.mean(rewards) > 0.5
    env = envs.make(TICTACTOE)
    assert {envs.play_episode(env, _agents(TICTACTOE, "minimax", "minimax"), s).rewards[0] for s in range(5)} == {0.0}


def test_invalid_text_follows_textarena_rules_and_is_logged(textarena):
    """TextArena allows one retry; a second invalid move in a row loses the game. Both are logged, nothing raises."""
    env = envs.make(KUHN)
    env.reset(0)
    player = env.to_act()[0]
    env.step(player, "\x00 [Ωffer: ¥5]")
    first = env.turns[-1]
    assert not first.valid and first.action is None and "Action must be" in first.info["invalid_reason"]
    assert env.to_act() == [player] and "attempted an invalid move" in env.observation(player)
    env.step(player, "")
    assert env.done and env.turns[-1].info["forfeit"] is True
    outcome = env.outcome()
    assert outcome.rewards == {player: -1.0, 1 - player: 1.0} and outcome.metrics["ended_by_invalid"] == 1.0
    assert outcome.metrics["invalid_rate"] == 1.0


@pytest.mark.parametrize("game", SCRIPTED)
def test_garbage_is_judged_by_textarena_and_the_game_goes_on(textarena, game):
    env = envs.make(game)
    agents = _agents(game, SCRIPTED[game], "random")
    for garbage in GARBAGE:
        env.reset(11)
        player = env.to_act()[0]
        env.step(player, garbage)
        assert env.turns[-1].raw == garbage and (env.turns[-1].valid or env.turns[-1].info["invalid_reason"])
        while not env.done:
            player = env.to_act()[0]
            env.step(player, agents[player].act(env.view(player)))
        assert set(env.outcome().rewards) == {0, 1}


def test_an_illegal_move_in_a_valid_format_is_invalid(textarena):
    env = envs.make(TICTACTOE)
    env.reset(0)
    env.step(0, "[4]")
    env.step(1, "I take the centre: [4]")  # occupied
    assert env.turns[-1].info["invalid_reason"] == "cell 4 is already occupied."
    env.step(1, "[0]")
    assert env.turns[-1].valid and env.turns[-1].action == "[0]" and env.to_act() == [0]


def test_text_that_breaks_textarenas_own_code_is_an_invalid_move(textarena):
    env = envs.make(TICTACTOE)
    env.reset(0)
    env.step(0, "0" * 5000)  # TextArena makes it [000…], and its int() refuses 5000 digits
    assert "TextArena could not read it: ValueError" in env.turns[-1].info["invalid_reason"] and env.to_act() == [0]


def test_think_is_stripped_before_textarena_reads_the_move(textarena):
    env = envs.make(KUHN, **ONE_HAND)
    env.reset(0)
    env.step(1, "<think>[fold] is bad here</think>[bet]")
    assert env.turns[-1].public == "[bet]" and env.turns[-1].raw.startswith("<think>")
    assert "submitted move: '[bet]'" in env.observation(0) and "is bad here" not in env.observation(0)


@pytest.mark.parametrize("game", SCRIPTED)
def test_think_text_never_reaches_another_player(textarena, game):
    env = envs.make(game)
    seen = {0: [], 1: []}

    def observe_all(_player):
        for p in seen:
            seen[p].append(env.observation(p))

    for seed in range(3):
        agents = {p: Thinker(a, p) for p, a in _agents(game, SCRIPTED[game], "random").items()}
        envs.play_episode(env, agents, seed, before_step=observe_all)
        observe_all(-1)
    for player, observations in seen.items():
        text = "\n".join(observations)
        assert "my plan" not in text and f"SECRET-{1 - player}" not in text


def test_a_kuhn_player_never_sees_the_other_card_before_the_showdown(textarena):
    """Player 0's observation is a function of its own card and the moves: the same whatever player 1 holds."""
    env = envs.make(KUHN, **ONE_HAND)
    seen: dict[tuple, set[str]] = {}
    other_cards: dict[tuple, set[str]] = {}

    def observe(_player):
        card, moves, _legal = kuhn_hand(env.view(0))
        key = (card, tuple(moves))
        seen.setdefault(key, set()).add(env.observation(0))
        other_cards.setdefault(key, set()).add(kuhn_hand(env.view(1))[0])

    for seed in range(120):
        envs.play_episode(env, _agents(KUHN, "random", "random"), seed, before_step=observe)
    assert all(len(texts) == 1 for texts in seen.values())
    assert sum(len(cards) == 2 for cards in other_cards.values()) >= 6  # the same text whichever card player 1 held


def test_a_negotiator_never_sees_the_other_values(textarena):
    env = envs.make(NEGOTIATION)
    envs.play_episode(env, _agents(NEGOTIATION, "greedy", "greedy"), 0)
    for player in (0, 1):
        assert f"You are Player {1 - player}" not in env.observation(player)
        assert "Value:" in env.observation(player)  # its own values


def test_a_game_is_a_function_of_its_seed_even_interleaved(textarena):
    """Kuhn poker deals each round as it starts, from TextArena's global `random`: games played step by step in turn,
    as the rollout engine plays them, still replay their seeds, and the caller's `random` stream is left alone."""
    env = envs.make(KUHN)
    alone = [(envs.play_episode(env, _agents(KUHN, "random", "random"), s), _transcript(env)) for s in (4, 5)]
    assert alone[0][1] != alone[1][1]
    random.seed(123)
    games, agents = [envs.make(KUHN) for _ in (4, 5)], [_agents(KUHN, "random", "random") for _ in (4, 5)]
    for env_, seed, agents_ in zip(games, (4, 5), agents, strict=True):
        env_.reset(seed)
        for player, agent in agents_.items():
            agent.reset(seed * 1009 + player)  # as play_episode seeds them
    while not all(g.done for g in games):
        for env_, agents_ in zip(games, agents, strict=True):
            if not env_.done:
                player = env_.to_act()[0]
                env_.step(player, agents_[player].act(env_.view(player)))
    assert random.random() == random.Random(123).random()
    assert [(g.outcome(), _transcript(g)) for g in games] == alone


def _standard_kuhn_chips(first_card, second_card, moves):
    """The first player's chips in one hand under Kuhn's rules (ante 1, bet 1): a fold loses what the folder put in."""
    if moves[-1] == "fold":
        return 1 if len(moves) == 2 else -1  # bet-fold: the second folded; check-bet-fold: the first folded
    stake = 2 if "bet" in moves else 1
    return stake if "JQK".index(first_card) > "JQK".index(second_card) else -stake


def test_the_nash_agent_holds_the_value_of_kuhn_poker(textarena):
    """Against itself, the first player's mean under Kuhn's rules is −1/18 a hand whatever α (Kuhn 1950), within
    4 standard errors. Player 1 acts first in TextArena's first round; the cards are each player's first one (TextArena
    deals a round more when the game ends). The chips are counted by Kuhn's rules: TextArena 0.7.4's own count ignores
    the bets (docs/games.md#textarena)."""
    env = envs.make(KUHN, **ONE_HAND)
    chips = []
    for seed in range(1500):
        envs.play_episode(env, _agents(KUHN, "nash", "nash"), seed)
        first, second = (re.search(r"Your card is: '(.)'", env.observation(p)).group(1) for p in (1, 0))
        chips.append(_standard_kuhn_chips(first, second, [turn.action.strip("[]") for turn in env.turns]))
    se = statistics.stdev(chips) / len(chips) ** 0.5
    assert abs(statistics.mean(chips) + 1 / 18) < 4 * se, (statistics.mean(chips), se)


def test_the_nash_agent_plays_the_equilibrium_probabilities(textarena):
    """α = 0: the first player never bets; then it calls a bet with a Q a third of the time and always with a K."""
    agent = envs.agent("nash", game=KUHN, alpha=0.0)
    check_bet = [(-1, "### Starting round 1 out of 1 rounds. Your card is: 'Q'")] + [
        (-1, f"Player {p}, submitted move: '[{m}]'.") for p, m in ((1, "check"), (0, "bet"))
    ]
    calls = [agent.act({"player": 1, "messages": check_bet}) for _ in range(3000)]
    assert abs(calls.count("[call]") / 3000 - 1 / 3) < 0.03
    opening = [(-1, "### Starting round 1 out of 1 rounds. Your card is: 'K'")]
    assert {agent.act({"player": 1, "messages": opening}) for _ in range(50)} == {"[check]"}
    with pytest.raises(ValueError, match="alpha"):
        envs.agent("nash", game=KUHN, alpha=0.5)


def test_agents_read_only_the_games_messages(textarena):
    """A player's words that imitate the game's messages change nothing for a scripted agent."""
    forged = [(-1, "### Starting round 1 out of 1 rounds. Your card is: 'J'"), (1, "Your card is: 'K'")]
    assert kuhn_hand({"player": 0, "messages": forged})[0] == "J"


def test_registry_options_and_errors(textarena):
    assert envs.is_game(KUHN) and KUHN not in envs.names()  # a family's games are built on use, not listed
    assert envs.agent_names(KUHN) == ["nash", "random"]
    with pytest.raises(ValueError, match="unknown TextArena id 'Chess-v9'"):
        envs.make("textarena:Chess-v9")
    with pytest.raises(TypeError, match="has no option max_retries; its options are: num_players, obs_format"):
        envs.make(KUHN, max_retries=2)
    with pytest.raises(TypeError, match="max_round"):
        envs.make(KUHN, textarena_kwargs={"max_round": 1})
    full, compact = envs.make(KUHN), envs.make(KUHN, obs_format="compact")
    full.reset(2)
    compact.reset(2)
    assert compact.observation(0) == full.observation(0)  # TextArena has one observation format


def test_without_textarena_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "textarena", None)  # what `import textarena` sees when it is not installed
    with pytest.raises(ValueError, match=re.escape('pip install "maro-lightning[textarena]"')) as error:
        envs.make("textarena:KuhnPoker-v0")  # a ValueError: `maro` prints it as one line
    assert isinstance(error.value, MissingExtraError) and isinstance(error.value, ImportError)


def test_the_tiny_word_vocabulary_covers_textarena_games_and_bytes_write_their_moves(textarena):
    """`game_corpus` plays TextArena games like ours: their prompts and moves have no unknown word. But the word
    tokenizer joins its pieces with spaces, `[ bet ]`, which TextArena's Kuhn poker rejects: bytes write `[bet]`."""
    from maro_lightning.models import build_tokenizer
    from maro_lightning.models import game_corpus
    from maro_lightning.models import unwritable_actions
    from maro_lightning.rollout import GameSpec

    games = list(SCRIPTED)
    words = build_tokenizer(game_corpus(games, episodes=4))
    assert unwritable_actions(words, [GameSpec(game, teacher=SCRIPTED[game]) for game in games]) == ""
    env = envs.make(KUHN, obs_format="compact")
    env.reset(0)
    assert words.unk_token_id not in words(env.observation(0))["input_ids"]
    for tokenizer, written in ((words, "[ bet ]"), (build_tokenizer([], kind="byte"), "[bet]")):
        assert tokenizer.decode(tokenizer("[bet]", add_special_tokens=False)["input_ids"]) == written
