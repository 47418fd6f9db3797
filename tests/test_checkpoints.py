"""Checkpoints on the command line: remote and unreadable files are refused in one line (nothing in them runs),
and a resume applies the config given now, refusing one whose architecture or games differ from the checkpoint."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from pathlib import Path

import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from test_configs import tiny_config

from maro_lightning.callbacks import SimulationCallback
from maro_lightning.cli import main
from maro_lightning.models import TinyModelConfig
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("bazaar",))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["maro"])


class Payload:
    """Unpickling this creates a folder: the proof that code from the checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return os.mkdir, (self.marker,)


def malicious(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload(marker)}, path)
    return path


class Served:
    """Serves one file's bytes on 127.0.0.1 (any path) and counts the requests; shut down on exit."""

    def __init__(self, body: bytes) -> None:
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                served.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/model.ckpt"

    def __enter__(self) -> Served:
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_a_remote_checkpoint_is_refused_and_never_fetched(tmp_path, capsys, command):
    marker = tmp_path / "payload_ran"
    body = malicious(tmp_path / "evil.ckpt", marker).read_bytes()
    config = tiny_config(tmp_path / "tiny.yaml")
    with Served(body) as served, pytest.raises(SystemExit) as exit_info:
        main([command, "-c", str(config), "--ckpt_path", served.url])
    assert exit_info.value.code == 2 and not marker.exists() and served.requests == 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"maro {command}: error: {served.url}: remote checkpoints are refused (loading one could run code from it); "
        "download the file and pass its local path"
    )


def test_play_refuses_a_remote_checkpoint_too(tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    with (
        Served(malicious(tmp_path / "evil.ckpt", marker).read_bytes()) as served,
        pytest.raises(SystemExit) as exit_info,
    ):
        main(["play", "--game", "bazaar", "--seats", "policy,linear", "--checkpoint", served.url])
    assert exit_info.value.code == 2 and not marker.exists() and served.requests == 0
    assert "remote checkpoints are refused" in capsys.readouterr().err


def test_a_local_checkpoint_with_python_objects_is_refused(tmp_path, capsys):
    marker = tmp_path / "payload_ran"
    checkpoint = malicious(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "-c", str(tiny_config(tmp_path / "tiny.yaml")), "--ckpt_path", str(checkpoint)])
    assert exit_info.value.code == 2 and not marker.exists()
    assert "evil.ckpt: refused, the checkpoint holds Python objects" in capsys.readouterr().err


def bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 3\nstate_dict: weights\n")
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 64)
    else:  # a real torch file cut in half, as by a full disk or an interrupted copy
        torch.save({"state_dict": {"w": torch.arange(4096.0)}}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("kind", ["empty", "text", "random", "truncated"])
def test_an_unreadable_checkpoint_fails_in_one_line_naming_the_file(tmp_path, capsys, kind):
    path = bad_file(tmp_path, kind)
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--game", "bazaar", "--seats", "policy,linear", "--checkpoint", str(path)])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"maro play: error: {path}: ")
    assert ("is empty" if kind == "empty" else "not a readable checkpoint") in line

    if kind == "truncated":  # the same check behind --ckpt_path (one kind is enough: each costs a CLI parse)
        with pytest.raises(SystemExit) as exit_info:
            main(["validate", "-c", str(tiny_config(tmp_path / "tiny.yaml")), "--ckpt_path", str(path)])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"maro validate: error: {path}: ")


# ------------------------------------------------------------------------------------------------- resume
def checkpoint_of(tmp_path: Path, games: tuple[str, ...] = ("bazaar",)) -> Path:
    """What `maro fit` saves, less the weights (not read here): the module's hyperparameters, as LightningCLI
    stores them, and the simulation's state with the games it trained on."""
    module = MaroModule(tiny=TINY, loss=LossConfig(beta=0.05))
    hparams = {"_class_path": "maro_lightning.module.MaroModule", **module.hparams}
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    specs = [GameSpec(game, options={"obs_format": "compact"}) for game in games]
    state = SimulationCallback(games=specs).state_dict()
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "callbacks": {"SimulationCallback": state}}, path)
    return path


@pytest.fixture
def started(monkeypatch):
    """The modules the CLI would run (the run itself is skipped: these tests are about the config)."""
    modules: list[MaroModule] = []
    monkeypatch.setattr(LightningCLI, "_run_subcommand", lambda self, subcommand: modules.append(self.model))
    return modules


@pytest.mark.parametrize("command", ["fit", "validate"])
def test_a_resume_applies_the_safe_overrides(tmp_path, capsys, started, command):
    """Credit, loss, sampling and evaluation settings given now win over the checkpoint's (LightningCLI alone
    would put the checkpoint's back: weighting role, temperature 1)."""
    overrides = ["--model.init_args.credit.weighting", "none", "--model.init_args.sampling.temperature", "0"]
    overrides += ["--model.init_args.loss.beta", "0.1", "--data.evaluation.episodes", "3"]
    config = tiny_config(tmp_path / "tiny.yaml")
    assert main([command, "-c", str(config), "--ckpt_path", str(checkpoint_of(tmp_path)), *overrides]) == 0
    (module,) = started
    assert module.credit_config.weighting == "none" and module.sampling.temperature == 0
    assert module.loss_config.beta == 0.1 and module.hparams["credit"]["weighting"] == "none"
    err = capsys.readouterr().err
    assert "the config changes the checkpoint's " in err and "credit.weighting: 'role' -> 'none'" in err
    assert "sampling.temperature: 1.0 -> 0.0" in err


def test_a_resume_refuses_another_architecture_naming_the_keys(tmp_path, capsys, started):
    config = tiny_config(tmp_path / "tiny.yaml")
    args = ["fit", "-c", str(config), "--ckpt_path", str(checkpoint_of(tmp_path))]
    args += ["--model.init_args.tiny.hidden_size", "64", "--model.init_args.tiny.corpus_games", "[bazaar, deal]"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and not started
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the config's model.tiny.corpus_games, model.tiny.hidden_size differ from the checkpoint's" in line


def test_the_lora_config_is_part_of_the_architecture():
    """Adapters only load into the same adapters: another rank, or LoRA switched on or off, is a conflict."""
    from maro_lightning.checkpoints import architecture_conflicts

    adapters = {"r": 4, "alpha": None, "dropout": 0.0, "target_modules": "all-linear"}
    assert architecture_conflicts({"lora": adapters}, {"lora": adapters}) == []
    assert architecture_conflicts({"lora": adapters}, {"lora": {**adapters, "r": 8}}) == ["lora.r"]
    assert architecture_conflicts({"lora": adapters}, {}) == ["lora"]
    assert architecture_conflicts({}, {"lora": adapters}) == ["lora"]  # a checkpoint of full fine-tuning


def test_an_older_checkpoint_without_head_inputs_resumes_and_head_inputs_is_architecture(tmp_path, capsys, started):
    """``head.inputs`` came after some checkpoints were written: absent, it reads as its default (what those runs
    did); a config that changes it is refused (the head's input size is another)."""
    path = checkpoint_of(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["hyper_parameters"]["head"]["inputs"]
    torch.save(checkpoint, path)
    config = tiny_config(tmp_path / "tiny.yaml")
    assert main(["fit", "-c", str(config), "--ckpt_path", str(path)]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(config), "--ckpt_path", str(path), "--model.init_args.head.inputs", "last_mean"])
    assert exit_info.value.code == 2 and len(started) == 1
    assert "the config's model.head.inputs differ from the checkpoint's" in capsys.readouterr().err


def test_a_resume_on_other_games_is_refused_and_play_warns(tmp_path, capsys, started):
    config = tiny_config(tmp_path / "tiny.yaml")  # plays bazaar
    checkpoint = checkpoint_of(tmp_path, games=("deal",))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(config), "--ckpt_path", str(checkpoint)])
    assert exit_info.value.code == 2 and not started
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith(
        "trained on deal, but the config plays bazaar: a resumed run must play the games it was trained on"
    )
    assert main(["validate", "-c", str(config), "--ckpt_path", str(checkpoint)]) == 0  # evaluation may differ
    assert len(started) == 1


def test_validate_without_a_checkpoint_warns(tmp_path, capsys, started):
    assert main(["validate", "-c", str(tiny_config(tmp_path / "tiny.yaml"))]) == 0
    assert "maro validate: warning: no --ckpt_path: this evaluates an untrained model" in capsys.readouterr().err


def test_play_warns_about_a_policy_trained_on_another_game(tmp_path, capsys, monkeypatch):
    from maro_lightning import cli

    class Policy:
        game_options = {"deal": {"obs_format": "compact"}}

        def seat(self, env, player):  # noqa: ANN001, ANN201
            from maro_lightning import envs

            return envs.agent("linear", game="bazaar")

    monkeypatch.setattr(cli, "_load_policy_seat", lambda ns: Policy())
    assert main(["play", "--game", "bazaar", "--seats", "policy,linear", "--checkpoint", "x.ckpt"]) == 0
    assert "warning: the checkpoint's policy was trained on deal, not bazaar" in capsys.readouterr().err


def test_play_refuses_a_negative_number_of_episodes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["play", "--game", "bazaar", "--seats", "linear", "--episodes", "-2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "maro play: error: --episodes must be >= 1, got -2"
