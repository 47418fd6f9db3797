"""`maro play`: transcripts, outcomes and clear errors for bad names."""

import pytest

from maro_lightning.cli import main


def test_play_prints_the_transcript_and_outcome(capsys):
    assert main(["play", "--game", "bazaar", "--seats", "boulware,linear", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "=== bazaar, seed 3: player 0 = boulware, player 1 = linear" in out
    assert "player 0 (seller): How about this? [Offer: $" in out
    assert "--- outcome" in out and "player 1 (buyer): reward" in out and "metrics: " in out


def test_mafia_roles_stay_hidden_until_the_outcome(capsys):
    main(["play", "--game", "mafia", "--seats", "scripted", "--seed", "7"])
    transcript, outcome = capsys.readouterr().out.split("--- outcome")
    assert "(mafia)" not in transcript and "(villager)" not in transcript
    assert outcome.count("(mafia): reward") == 2


def test_show_private_prints_prompts_and_raw_text(capsys):
    main(["play", "--game", "bazaar", "--seats", "linear", "--show-private", "--option", "obs_format=compact"])
    out = capsys.readouterr().out
    assert "--- prompt of player 0 ---\nS L=" in out and "--- raw: " in out


def test_episodes_and_options(capsys):
    main(["play", "--game", "bazaar", "--seats", "random", "--episodes", "3", "--option", "max_messages=4"])
    out = capsys.readouterr().out
    assert out.count("=== bazaar") == 3 and "[  4]" not in out  # at most 4 messages (no invalid turns)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--game", "chess", "--seats", "a"], "unknown game 'chess'; choose one of: bazaar"),
        (["--game", "bazaar", "--seats", "boulware,nope"], "unknown bazaar agent 'nope'; choose one of: boulware"),
        (["--game", "bazaar", "--seats", "linear,linear,linear"], "bazaar has 2 players"),
        (["--game", "bazaar", "--seats", "linear", "--option", "turns=3"], "has no option turns"),
        (["--game", "bazaar", "--seats", "linear", "--option", "oops"], "KEY=VALUE"),
    ],
)
def test_bad_names_fail_with_the_valid_choices(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["play", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_list_agents(capsys):
    main(["play", "--game", "bazaar", "--seats", "list"])
    assert "boulware, conceder, hardliner, linear, random" in capsys.readouterr().out


def test_play_a_textarena_game(capsys):
    pytest.importorskip("textarena", reason="the textarena extra is not installed")
    game = "textarena:KuhnPoker-v0"
    one_hand = "textarena_kwargs={'max_rounds': 1}"
    assert main(["play", "--game", game, "--seats", "nash,random", "--option", one_hand]) == 0
    out = capsys.readouterr().out
    assert f"=== {game}, seed 0: player 0 = nash, player 1 = random" in out
    assert "player 1 (Player 1): [" in out and "--- outcome" in out and "reward" in out
    main(["play", "--game", game, "--seats", "list"])
    assert "nash, random" in capsys.readouterr().out
