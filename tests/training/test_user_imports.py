"""A config's ``imports:`` makes a user's registered names choosable in YAML: an advantage mode and a game that
only tests/training/maro_user_plugin.py defines train end to end through ``maro fit``."""

import sys
from pathlib import Path

import pytest
import yaml

from maro_lightning.cli import main
from maro_lightning.credit.advantages import MODES
from maro_lightning.envs.registry import _AGENTS
from maro_lightning.envs.registry import GAMES

PLUGIN_DIR = Path(__file__).resolve().parent

CONFIG = {
    "imports": ["maro_user_plugin"],
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "max_steps": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "callbacks": [
            {
                "class_path": "maro_lightning.callbacks.SimulationCallback",
                "init_args": {
                    "games": [
                        {"name": "quick_bazaar", "options": {"obs_format": "compact"}, "opponents": {"linear": 1.0}}
                    ],
                    "games_per_round": 4,
                },
            }
        ],
    },
    "model": {
        "class_path": "maro_lightning.module.MaroModule",
        "init_args": {
            "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "corpus_games": ["quick_bazaar"]},
            "credit": {"mode": "sign_of_reward"},
            "sampling": {"max_new_tokens": 6},
        },
    },
    "data": {"batch_size": 8, "evaluation": {"games": ["quick_bazaar"], "episodes": 1}},
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["maro"])
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    if sys.modules.pop("maro_user_plugin", None) is not None:  # later tests see the library's registries only
        GAMES.remove("quick_bazaar")
        _AGENTS.pop("quick_bazaar")
        MODES.remove("sign_of_reward")


INJECTED = {"class_path": "maro_user_plugin.CountingAssigner", "init_args": {"config": {"mode": "sign_of_reward"}}}


@pytest.mark.parametrize("credit", [{"mode": "sign_of_reward"}, INJECTED], ids=["config", "injected_assigner"])
def test_a_yaml_imports_a_users_mode_and_game_and_trains_with_them(tmp_path, credit):
    config = {**CONFIG, "model": {**CONFIG["model"], "init_args": {**CONFIG["model"]["init_args"], "credit": credit}}}
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", "-c", str(path)]) == 0
    plugin = sys.modules["maro_user_plugin"]
    assert plugin.CALLS and all(games == ("quick_bazaar",) for games in plugin.CALLS)
    assert plugin.CountingAssigner.rounds == (len(plugin.CALLS) if credit is INJECTED else 0)


def test_without_the_import_the_users_names_are_unknown(tmp_path, capsys):
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "imports": []}))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(path)])
    assert exit_info.value.code == 2
    assert "unknown game 'quick_bazaar'" in capsys.readouterr().err


def test_a_module_that_cannot_be_imported_fails_in_one_line(tmp_path, capsys):
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "imports": ["no_such_module_here"]}))
    assert main(["fit", "-c", str(path), "--print_config"]) == 2
    err = capsys.readouterr().err
    assert "cannot import 'no_such_module_here'" in err and "Traceback" not in err


def test_imports_on_the_command_line_are_imported_too(tmp_path, capsys):
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "imports": []}))
    assert main(["fit", "-c", str(path), "--imports", "[maro_user_plugin, no_such_module_here]"]) == 2
    assert "cannot import 'no_such_module_here'" in capsys.readouterr().err
    assert "maro_user_plugin" in sys.modules  # imported before the bad one failed
