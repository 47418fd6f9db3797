"""The end of a run: warm_start.ckpt beside last.ckpt, the paired report with plots, `maro evaluate` on the
checkpoints with decoding chosen at evaluation time; and seed_everything moving the rollout games."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from helpers import QUIET
from helpers import data
from helpers import tiny_module
from lightning.pytorch.callbacks import ModelCheckpoint

from maro_lightning.callbacks import WARM_START_CHECKPOINT
from maro_lightning.callbacks import EvaluationReport
from maro_lightning.callbacks import MaroProgressBar
from maro_lightning.callbacks import SimulationCallback
from maro_lightning.cli import main
from maro_lightning.rollout import GameSpec

BUYER = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"linear": 1.0}, learner_players=[1],
                 teacher="linear")  # fmt: skip


@pytest.fixture(autouse=True)
def _hf_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A short run: one cloning round, then RL, checkpoints and the end-of-fit report (few games)."""
    root = tmp_path_factory.mktemp("run")
    L.seed_everything(0, verbose=False)
    sim = SimulationCallback(games=[BUYER], games_per_round=4, imitation_rounds=1)
    report = EvaluationReport(episodes=4, opponents={"bazaar": ["linear", "boulware"]})
    # every 4 steps of 6: Lightning alone would leave last.ckpt at step 4 (refresh_last_checkpoint rewrites it)
    checkpoints = ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=4)
    quiet = QUIET | {"enable_checkpointing": True, "logger": L.pytorch.loggers.CSVLogger(root)}
    trainer = L.Trainer(max_steps=6, callbacks=[sim, checkpoints, report], default_root_dir=root, **quiet)
    steps_at_warm_start = []
    original = trainer.save_checkpoint

    def save(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if str(path).endswith(WARM_START_CHECKPOINT):
            steps_at_warm_start.append((trainer.global_step, sim.rounds))
        return original(path, *args, **kwargs)

    trainer.save_checkpoint = save
    trainer.fit(tiny_module(), datamodule=data())
    return root, trainer, report, steps_at_warm_start


def test_the_warm_start_is_kept_beside_last(finished_run):
    root, trainer, _, saves = finished_run
    warm, last = root / "checkpoints" / WARM_START_CHECKPOINT, root / "checkpoints" / "last.ckpt"
    assert warm.exists() and last.exists()
    assert len(saves) == 1 and saves[0][1] == 1  # saved once, just before the first RL round
    state = torch.load(warm, map_location="cpu", weights_only=True)
    assert state["global_step"] == saves[0][0] < trainer.global_step
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == trainer.global_step == 6  # the final policy, not the last periodic save's
    assert any(not torch.equal(state["state_dict"][k], final["state_dict"][k]) for k in state["state_dict"])


def test_the_report_pairs_teacher_warm_start_and_final_on_the_same_games(finished_run):
    root, _, report, _ = finished_run
    assert report.report is not None and report.report.lines == ["linear (teacher)", "warm_start", "final"]
    pairs = {(p["condition"], p["line"], p["baseline"]) for p in report.report.pairs()}
    assert ("bazaar vs linear", "final", "warm_start") in pairs and (
        "bazaar vs boulware",
        "final",
        "linear (teacher)",
    ) in pairs
    for name in ("evaluation.csv", "evaluation_pairs.csv", "evaluation.json"):
        assert (root / "checkpoints" / name).exists()
    version = next(root.glob("lightning_logs/version_*"))
    assert (version / "outcomes.png").stat().st_size > 0 and (version / "training.png").stat().st_size > 0


def test_maro_evaluate_decodes_as_told_whatever_the_checkpoint_holds(finished_run, tmp_path, capsys):
    root, trainer, _, _ = finished_run
    assert trainer.lightning_module.sampling.temperature == 1.0  # what the checkpoints hold
    warm, last = root / "checkpoints" / WARM_START_CHECKPOINT, root / "checkpoints" / "last.ckpt"
    out = tmp_path / "evaluation"
    args = ["evaluate", str(warm), f"final={last}", "--episodes", "3", "--temperature", "0", "--out", str(out)]
    assert main(args + ["--opponents", "linear"]) == 0
    printed = capsys.readouterr().out
    assert "Paired evaluation" in printed and "final − warm_start" in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert report["decoding"] == {"linear (teacher)": None, "warm_start": 0.0, "final": 0.0}
    assert [c["opponent"] for c in report["conditions"]] == ["linear"]


def test_identical_checkpoints_evaluate_to_a_zero_paired_difference(finished_run, tmp_path):
    root, _, _, _ = finished_run
    last = root / "checkpoints" / "last.ckpt"
    out = tmp_path / "same"
    args = ["evaluate", f"a={last}", f"b={last}", "--scripted", "none", "--episodes", "6", "--out", str(out)]
    assert main(args + ["--opponents", "linear"]) == 0
    (pair,) = json.loads((out / "evaluation.json").read_text())["pairs"]
    assert pair["d_reward"] == 0.0 and pair["se_reward"] == 0.0


def _first_round_games(seed_everything: int, seed: int | None = None) -> list[str]:
    L.seed_everything(seed_everything, verbose=False)
    dm, pushed = data(), []
    push = dm.push
    dm.push = lambda samples: pushed.append(samples) or push(samples)
    sim = SimulationCallback(games=[BUYER], games_per_round=4, imitation_rounds=1, seed=seed)
    L.Trainer(max_steps=1, callbacks=[sim], **QUIET).fit(tiny_module(), datamodule=dm)
    return sorted({s.episode_id for s in pushed[0]})


def test_seed_everything_moves_the_rollout_games_unless_a_seed_is_set():
    assert _first_round_games(0) == _first_round_games(0)
    assert _first_round_games(0) != _first_round_games(1)
    assert _first_round_games(0, seed=7) == _first_round_games(1, seed=7)  # an explicit seed wins


def test_the_progress_bar_counts_steps_and_shows_the_last_round():
    L.seed_everything(0, verbose=False)
    bar = MaroProgressBar()
    sim = SimulationCallback(games=[BUYER], games_per_round=4, imitation_rounds=1)
    trainer = L.Trainer(max_steps=3, callbacks=[sim, bar], **(QUIET | {"enable_progress_bar": True}))
    trainer.fit(tiny_module(), datamodule=data())
    assert bar.train_progress_bar.total == 3 and bar.train_progress_bar.desc.startswith("steps")  # not "Epoch 0/-2"
    items = bar.get_metrics(trainer, trainer.lightning_module)
    assert items["phase"] == "RL" and "v_num" not in items
    metrics = trainer.callback_metrics
    assert items["bazaar/buyer/reward"] == round(metrics["rollout/bazaar/buyer/reward"].item(), 3)
    assert "bazaar/buyer/success" in items and "bazaar/buyer/reward_low" not in items
