"""The YAML configs and the LightningCLI commands: every config parses, bad configs fail at start-up naming
the problem, and `maro fit` -> checkpoint -> `maro play` / `maro validate` works end to end through `main`."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from maro_lightning.cli import DEMO_CONFIG
from maro_lightning.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))  # configs/**: every YAML
SELFPLAY = Path(__file__).resolve().parents[1] / "configs" / "bazaar_selfplay.yaml"  # credit: an assigner, NoDealCost
NEEDS_TEXTARENA = pytest.mark.skipif(
    importlib.util.find_spec("textarena") is None, reason="a textarena:ID game needs the textarena extra"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Runs write into tmp_path (cwd), datasets caches too; argv is bare so LightningCLI takes `main`'s args."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["maro"])


def tiny_config(path: Path, **data_overrides) -> Path:
    """The demo config at test sizes: a 2-step run that saves ckpts/final.ckpt, and a 1-opponent ladder."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    trainer = config["trainer"]
    trainer.update(
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(path.parent / "runs"),
    )
    simulation = trainer["callbacks"][0]["init_args"]
    simulation.update(games_per_round=4, imitation_rounds=1)
    trainer["callbacks"].append(
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(path.parent / "ckpts"), "filename": "final", "every_n_train_steps": 2},
        }
    )
    model = config["model"]["init_args"]
    model["tiny"] = {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "corpus_games": ["bazaar"]}
    model["sampling"].update(max_new_tokens=6)
    config["data"].update(batch_size=8, **data_overrides)
    config["data"]["evaluation"].update(opponents={"bazaar": ["linear"]}, episodes=2)
    path.write_text(yaml.safe_dump(config))
    return path


def print_config(*args: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=NEEDS_TEXTARENA) if "textarena:" in p.read_text() else p for p in CONFIGS],
    ids=lambda p: p.relative_to(CONFIGS[0].parents[0]).as_posix(),
)
def test_every_config_parses(path, capsys):
    print_config("-c", str(path))
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "maro_lightning.module.MaroModule"
    assert printed["trainer"]["default_root_dir"] == f"runs/{path.stem}"  # relative: runs land in the cwd


def test_help_shows_the_config_dataclasses_attribute_docstrings(capsys):
    """Every field of a config dataclass is documented in its attribute docstring; --help prints it."""
    with pytest.raises(SystemExit):
        main(["fit", "--model.credit.help", "CreditConfig"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--credit.lam LAM GAE λ of the M1 decomposition (Schulman et al. 2015" in help_text
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "MaroModule", "--model.loss.help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--model.loss.impl {auto,triton,chunked,reference} The fused loss implementation" in help_text
    assert "--model.loss.grad_weight_dtype {float32,weight} The dtype the fused loss" in help_text
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "MaroModule"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--model.gradient_checkpointing {true,false} recompute the policy's decoder layers" in help_text


def test_fit_without_a_config_uses_the_demo(capsys):
    print_config()
    printed, demo = yaml.safe_load(capsys.readouterr().out), yaml.safe_load(DEMO_CONFIG.read_text())
    rounds = [c["trainer"]["callbacks"][0]["init_args"]["imitation_rounds"] for c in (printed, demo)]
    assert rounds[0] == rounds[1] > 0 and printed["trainer"]["max_steps"] == demo["trainer"]["max_steps"]
    assert printed["trainer"]["default_root_dir"] == "runs/demo"


def test_the_gpu_config_builds_its_fsdp2_strategy():
    """Parsed and instantiated on CPU: FSDP2 through ModelParallelStrategy over every GPU, data parallel only, with
    single-file checkpoints (the FSDP2 path runs on CPU in tests/training/test_fsdp.py; this config not on GPUs)."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import ModelParallelStrategy
    from lightning.pytorch.strategies import Strategy

    config = yaml.safe_load((DEMO_CONFIG.parent / "gpu_fsdp.yaml").read_text())
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Strategy, "strategy")
    strategy = parser.instantiate(parser.parse_object({"strategy": config["trainer"]["strategy"]})).strategy
    assert isinstance(strategy, ModelParallelStrategy)
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == (config["trainer"]["devices"], 1)
    assert not strategy._save_distributed_checkpoint
    assert config["trainer"]["precision"] == "bf16-mixed" and config["model"]["init_args"]["dtype"] == "float32"
    assert config["trainer"]["gradient_clip_val"] == 1.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("    loss:\n", "    loss:\n      aggregation: mean\n"),
            "Expected a typing.Literal['token_mean', 'sequence_mean']",
        ),
        (
            ("    loss:\n", "    loss:\n      impl: chunk\n"),
            "Expected a typing.Literal['auto', 'triton', 'chunked', 'reference']",
        ),
        (
            ("    loss:\n", "    loss:\n      grad_weight_dtype: bf16\n"),
            "Expected a typing.Literal['float32', 'weight']",
        ),
        (("max_new_tokens: 16", "max_new_token: 16"), "Option 'max_new_token' is not accepted"),
        (
            ("max_new_tokens: 16", "max_new_tokens: 16\n      backend: sglang"),
            "Expected a typing.Literal['hf', 'vllm']",
        ),
        (("weighting: role", "weighting: [role]"), "Parser key \"model.credit.weighting\": Expected a <class 'str'>"),
        (
            ("&learner_players [1]", "&learner_players one"),
            "Parser key \"trainer.callbacks.games.learner_players\": Expected a <class 'list'>",
        ),
    ],
    ids=[
        "loss_aggregation",
        "loss_impl",
        "loss_grad_weight_dtype",
        "typo_key",
        "rollout_backend",
        "wrong_type",
        "game_entry_type",
    ],
)
def test_a_bad_value_fails_at_parse_time(tmp_path, capsys, edit, message):
    """One line on stderr, the innermost key first (not jsonargparse's usage text and tree of Union subtypes)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_CONFIG.read_text().replace(*edit))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad), "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("content", ["", "# only a comment\n", "- a list\n"], ids=["empty", "comment", "list"])
def test_an_empty_or_non_mapping_config_file_fails_in_one_line(tmp_path, capsys, content):
    config = tmp_path / "empty.yaml"
    config.write_text(content)
    assert main(["fit", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    expected = "the config file is empty" if content != "- a list\n" else "a YAML mapping of sections, got a list"
    assert err.startswith(f"maro fit: error: -c {config}: ") and expected in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("switch", ["--model.init_args.credit.decompose=false", "--model.credit.mode=outcome"])
def test_a_credit_switch_over_an_assigner_is_refused_naming_the_path_that_keeps_it(capsys, switch):
    """bazaar_selfplay's credit is NoDealCost: a plain switch would replace it by a mapping and drop the cost."""
    assert main(["fit", "-c", str(SELFPLAY), switch]) == 2
    err = capsys.readouterr().err
    name = switch.split("=")[0].rsplit(".", 1)[1]
    assert "credit is an assigner (maro_lightning.credit.shaping.NoDealCost)" in err and len(err.splitlines()) == 1
    assert err.strip().endswith(f"--model.init_args.credit.init_args.config.{name}")


def test_a_switch_given_to_the_assigners_config_keeps_the_scheme(capsys):
    print_config("-c", str(SELFPLAY), "--model.init_args.credit.init_args.config.decompose=false")
    credit = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["credit"]
    assert credit["class_path"].endswith("NoDealCost") and credit["init_args"]["config"]["decompose"] is False


NO_DEAL_COST = "maro_lightning.credit.shaping.NoDealCost"


@pytest.mark.parametrize(
    "given",
    [
        "file",
        f"--model.init_args.credit.class_path={NO_DEAL_COST}",
        f"--model.init_args.credit={{class_path: {NO_DEAL_COST}, init_args: {{cost: 0.3}}}}",
    ],
)
def test_an_assigner_over_a_plain_mapping_of_switches_is_refused_not_dropped(tmp_path, capsys, given):
    """The demo's credit is a plain mapping: jsonargparse would keep its type and lose a class_path given after it
    (a later -c file or the command line), building a plain assigner or failing on `config`."""
    if given == "file":
        later = tmp_path / "cost.yaml"
        later.write_text(yaml.safe_dump({"model": {"init_args": {"credit": {"class_path": NO_DEAL_COST}}}}))
        given = f"--config={later}"
    assert main(["fit", "-c", str(DEMO_CONFIG), given]) == 2
    err = capsys.readouterr().err
    assert f"an assigner ({NO_DEAL_COST}) over a config whose credit is a plain mapping" in err
    assert len(err.splitlines()) == 1


def test_an_assigner_over_an_assigner_keeps_the_new_one(capsys):
    print_config(
        "-c", str(SELFPLAY), f"--model.init_args.credit={{class_path: {NO_DEAL_COST}, init_args: {{cost: 0.3}}}}"
    )
    credit = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["credit"]
    assert credit["class_path"] == NO_DEAL_COST and credit["init_args"]["cost"] == 0.3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("- name: bazaar", "- name: chess"), "bad config: unknown game 'chess'; choose one of: bazaar, deal, mafia"),
        (("teacher: linear", "teacher: lineer"), "bazaar: unknown opponents or teacher ['lineer']; use policy, frozen"),
        (("episodes: 32", "episodes: 32\n    games: [bazaar, chess]"), "unknown game 'chess'; choose from: bazaar"),
        (("accelerator: cpu", "accelerator: cpu\n  strategy: fsdp"), "The strategy `fsdp` requires a GPU accelerator"),
    ],
    ids=["game", "teacher", "ladder_game", "fsdp_on_cpu"],
)
def test_a_value_a_class_rejects_fails_at_start_up(tmp_path, capsys, edit, message):
    """The dataclasses' own checks (GameSpec, LadderConfig) run when LightningCLI instantiates the classes, not
    during parsing (`--print_config` accepts these): the run still stops before anything is built or played,
    with one line naming the problem."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO_CONFIG.read_text().replace(*edit))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad)])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # one line, not jsonargparse's chained tracebacks
    assert last.startswith("maro fit: error: bad config: ") and message in last
    assert not (tmp_path / "runs").exists()


BAD_AT_START = {  # a value that parses but cannot run: (edit of the demo config, the one line's message)
    "zero_opponent_weights": (
        ("opponents: {linear: 1.0}", "opponents: {linear: 0.0}"),
        "bad config: bazaar: opponents {'linear': 0.0} are all weight 0",
    ),
    "learner_out_of_range": (
        ("&learner_players [1]", "&learner_players [5]"),
        "bad config: bazaar: learner_players [5] must be a non-empty list of players [0, 1]",
    ),
    "learner_empty": (
        ("&learner_players [1]", "&learner_players []"),
        "bad config: bazaar: learner_players [] must be a non-empty list of players [0, 1]",
    ),
    "ladder_learner_empty": (
        ("{bazaar: *learner_players}", "{bazaar: []}"),
        "bad config: bazaar: learner_players is empty",
    ),
    "unknown_corpus_game": (
        ("corpus_games: [bazaar]", "corpus_games: [bazaar, chess]"),
        "bad config: tiny.corpus_games: unknown or no games ['chess']",
    ),
    "corpus_misses_the_game": (
        ("corpus_games: [bazaar]", "corpus_games: [mafia]"),
        "model.tiny.corpus_games=['mafia'] does not cover the simulated game(s) ['bazaar']",
    ),
    "missing_policy_folder": (
        ("    tiny:\n", "    policy: ./no/such/model\n    tiny:\n"),
        "bad config: policy='./no/such/model': no such local folder",
    ),
    "fractional_option": (
        ("&listing_range [100, 100]}", "&listing_range [100, 100], max_messages: 2.5}"),
        "bad config: bazaar option max_messages must be a whole number, got 2.5",
    ),
    "infinite_reward": (
        ("&listing_range [100, 100]}", "&listing_range [100, 100], no_deal_reward: .inf}"),
        "bad config: bazaar option no_deal_reward must be a finite number",
    ),
    "huge_listing": (
        ("&listing_range [100, 100]}", "&listing_range [1.0e+308, 1.0e+308]}"),
        "bad config: bazaar option listing_range[0] must be a whole number, got 1e+308",
    ),
    "replay_with_simulation": (
        ("  passes: 1", "  passes: 1\n  replay_dir: rounds"),
        "data.replay_dir=rounds and a SimulationCallback are both configured",
    ),
    "generation_batch_size_with_vllm": (
        ("    sampling:\n", "    generation_batch_size: 8\n    sampling:\n      backend: vllm\n"),
        "bad config: generation_batch_size=8 applies to sampling.backend=hf only",
    ),
    "negative_max_steps": (("  max_steps: ", "  max_steps: -5  # "), "trainer.max_steps=-5: use a positive number"),
}


@pytest.mark.parametrize(("edit", "message"), BAD_AT_START.values(), ids=BAD_AT_START.keys())
def test_a_value_that_cannot_run_fails_at_start_up_in_one_line(tmp_path, capsys, edit, message):
    text = DEMO_CONFIG.read_text()
    assert text.count(edit[0]) == 1, edit
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(*edit))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("maro fit: error: ") and message in lines[-1], lines
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("peft", "message"),
    [
        (False, "model.lora needs the peft package, which is not installed: pip install 'maro-lightning[lora]'"),
        (True, "model.lora needs a pretrained model.policy (a Hugging Face id or folder)"),
    ],
    ids=["without_peft", "on_the_tiny_model"],
)
def test_lora_fails_at_start_up_without_peft_or_a_pretrained_policy(tmp_path, capsys, monkeypatch, peft, message):
    if peft:
        pytest.importorskip("peft", reason="LoRA needs peft: pip install 'maro-lightning[lora]'")
    else:
        monkeypatch.setitem(sys.modules, "peft", None)  # as if not installed: find_spec gives None, import fails
    bad = tmp_path / "lora.yaml"
    bad.write_text(DEMO_CONFIG.read_text().replace("    loss:\n", "    lora: {r: 4}\n    loss:\n"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad)])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("maro fit: error: bad config: ") and message in lines[-1], lines
    assert not (tmp_path / "runs").exists()


def test_fit_then_play_and_validate_the_checkpoint(tmp_path, capsys):
    config = str(tiny_config(tmp_path / "tiny.yaml"))
    assert main(["fit", "-c", config]) == 0
    (checkpoint,) = (tmp_path / "ckpts").glob("*.ckpt")
    capsys.readouterr()

    play = ["play", "--game", "bazaar", "--seats", "policy,linear", "--checkpoint", str(checkpoint), "--seed", "1"]
    assert main(play) == 0
    out = capsys.readouterr().out
    # the policy sees the game as it was trained on it (the checkpoint's options), not the default full prompts
    assert "trained with (--option overrides them): {'listing_range': [100, 100], 'obs_format': 'compact'}" in out
    assert "=== bazaar, seed 1: player 0 = policy, player 1 = linear" in out
    assert "player 0 (seller): " in out and "player 1 (buyer): How about this?" in out  # the transcript
    assert "--- outcome" in out and "player 0 (seller): reward" in out and "metrics: " in out

    logs = tmp_path / "logs"
    args = ["validate", "-c", config, "--ckpt_path", str(checkpoint), "--trainer.limit_val_batches", "null"]
    logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs)]
    assert main(args + logger) == 0
    (metrics,) = logs.glob("**/metrics.csv")
    (row,) = csv.DictReader(metrics.open())
    assert 0 <= float(row["val/invalid_rate/bazaar/linear"]) <= 1
    played = [float(row.get(f"val/bazaar/linear/{role}/n") or 0) for role in ("seller", "buyer")]
    assert sum(played) == 2  # data.evaluation.episodes: the policy takes one seat per game
    assert "val/invalid_rate/bazaar/linear" in capsys.readouterr().out  # Lightning's results table


def test_a_policy_seat_needs_a_checkpoint(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--game", "bazaar", "--seats", "policy,linear"])
    assert exit_info.value.code == 2
    assert "a `policy` seat needs --checkpoint PATH" in capsys.readouterr().err


def test_a_missing_checkpoint_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--game", "bazaar", "--seats", "policy", "--checkpoint", str(tmp_path / "nope.ckpt")])
    assert exit_info.value.code == 2
    assert "nope.ckpt: no such file" in capsys.readouterr().err


def test_the_simulation_refuses_a_tokenizer_that_cannot_write_its_games_actions():
    """The check behind `corpus_misses_the_game` for any tokenizer (run when training starts): a vocabulary built
    from Mafia reads Bazaar's `[Offer: $X]` as <unk>."""
    from maro_lightning.models import build_tokenizer
    from maro_lightning.models import game_corpus
    from maro_lightning.models import unwritable_actions
    from maro_lightning.rollout import GameSpec

    bazaar = [GameSpec("bazaar", opponents={"linear": 1.0})]
    mafia_words = build_tokenizer(game_corpus(["mafia"], episodes=3))
    assert unwritable_actions(mafia_words, bazaar).startswith("bazaar: '[Offer: $")
    assert unwritable_actions(build_tokenizer(game_corpus(["bazaar"], episodes=3)), bazaar) == ""
    assert unwritable_actions(build_tokenizer([], kind="byte"), bazaar) == ""  # bytes write anything
