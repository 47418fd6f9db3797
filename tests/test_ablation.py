"""benchmarks/ablation.py: a two-arm smoke of the MARO ablation harness (train, evaluate, report), its resume (finished
cells and evaluations are not run again), a failed cell, and the arms file's checks."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from maro_lightning import envs
from maro_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("benchmarks_ablation", ROOT / "benchmarks" / "ablation.py")
ablation = sys.modules["benchmarks_ablation"] = importlib.util.module_from_spec(_SPEC)  # dataclasses look it up
_SPEC.loader.exec_module(ablation)

SETTING = {  # the demo's game at a tiny size: one cloning round of 2 games (the warm start), then RL
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "max_steps": 1000,  # the harness's --max-steps 2 replaces it for every arm
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "callbacks": [
            {
                "class_path": "maro_lightning.callbacks.SimulationCallback",
                "init_args": {
                    "games": [
                        {
                            "name": "bazaar",
                            "options": {"obs_format": "compact", "listing_range": [100, 100]},
                            "opponents": {"linear": 1.0},
                            "learner_players": [1],
                            "teacher": "linear",
                        }
                    ],
                    "games_per_round": 2,
                    "imitation_rounds": 1,
                },
            },
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
        ],
    },
    "model": {
        "class_path": "maro_lightning.module.MaroModule",
        "init_args": {
            "tiny": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "num_layers": 1,
                "corpus_games": ["bazaar"],
            },
            "sampling": {"max_new_tokens": 6},
        },
    },
    "data": {"batch_size": 64, "evaluation": {"games": ["bazaar"], "episodes": 1}},
}
ARMS = [{"name": "maro", "overrides": []}, {"name": "no_m2", "overrides": ["--model.init_args.credit.weighting=none"]}]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    setting, arms = tmp_path / "tiny.yaml", tmp_path / "arms.yaml"
    setting.write_text(yaml.safe_dump(SETTING))
    arms.write_text(yaml.safe_dump({"arms": ARMS}))
    out = tmp_path / "out"
    args = ["--seeds", "0", "--max-steps", "2", "--episodes", "2", "--jobs", "2"]  # two cells at once: CI has 2 cores
    return [str(setting), "--arms", str(arms), *args, "--out", str(out)]


def test_two_arms_are_trained_evaluated_and_reported_then_a_rerun_runs_nothing_again(files, capsys):
    out = Path(files[-1])
    assert ablation.main(files) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\[[12]/2\] tiny/seed0/no_m2: trained in", printed) and "| no_m2 | bazaar/buyer |" in printed

    # The arms cloned the same policy, so one warm start is evaluated beside both final policies.
    report = json.loads((out / "tiny" / "seed0" / "evaluation" / "evaluation.json").read_text())
    assert report["lines"] == ["warm_start", "maro", "no_m2"] and report["episodes"] == 2
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    ladder = envs.agent_names("bazaar")  # every scripted opponent of the game
    assert sorted((r["arm"], r["opponent"]) for r in rows) == sorted((a, o) for a in ("maro", "no_m2") for o in ladder)
    for row in rows:
        assert (row["setting"], row["seed"], row["role"], row["n"]) == ("tiny", "0", "buyer", "2")
        assert row["d_warm_start"] != "" and float(row["wall_seconds"]) > 0
        assert float(row["utility_explained_variance"]) <= 1.0
        assert (row["d_maro"] == "") == (row["arm"] == "maro")  # no_m2 − maro, paired on the same games
    table = (out / "ablation.md").read_text()
    assert "| maro | bazaar/buyer |" in table and "| no_m2 | bazaar/buyer |" in table
    # The setting names no ladder (no EvaluationReport), so every held-out opponent is pooled: all but `linear`.
    pooled = list(csv.DictReader((out / "ablation_ladder.csv").open()))
    held_out = [o for o in ladder if o != "linear"]
    assert [(r["arm"], r["baseline"], r["role"], r["opponents"], r["n"]) for r in pooled] == [
        (arm, baseline, "buyer", "+".join(held_out), str(2 * len(held_out)))
        for arm, baseline in (("maro", "warm_start"), ("no_m2", "warm_start"), ("no_m2", "maro"))
    ]
    assert "final − warm start on the held-out ladder" in table and "final − maro on the held-out ladder" in table
    assert (out / "ablation.png").stat().st_size > 0
    cell = json.loads((out / "tiny" / "seed0" / "no_m2" / "cell.json").read_text())
    assert cell["returncode"] == 0 and "--model.init_args.credit.weighting=none" in cell["args"]

    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name in ("cell.json", "last.ckpt", "evaluation.json")}
    assert len(kept) == 5
    assert ablation.main(files) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 2 and "tiny/seed0/evaluation: done before, skipped" in printed
    assert "training" not in printed
    assert {p: p.stat().st_mtime_ns for p in kept} == kept

    # Had the warm starts differed, each arm's own would be evaluated.
    lasts = {arm: next((out / "tiny" / "seed0" / arm).rglob("last.ckpt")) for arm in ("maro", "no_m2")}
    warm = lasts["no_m2"].with_name("warm_start.ckpt")
    checkpoint = torch.load(warm, weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.startswith("policy."))
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key] + 1
    torch.save(checkpoint, warm)
    assert list(ablation.warm_start_lines(lasts)) == ["warm_start_maro", "warm_start_no_m2"]


def test_a_failed_cell_keeps_its_log_is_reported_and_runs_again(files, capsys, monkeypatch):
    monkeypatch.setattr(ablation, "MARO", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    out = Path(files[-1])
    assert ablation.main(files) == 1
    printed = capsys.readouterr().out
    log = out / "tiny" / "seed0" / "maro" / "fit.log"
    assert f"tiny/seed0/maro: FAILED (exit 3), log: {log}" in printed and "tiny/seed0: not evaluated" in printed
    assert log.read_text() == "boom\n" and not (out / "ablation.csv").exists()
    assert ablation.main(files) == 1
    assert capsys.readouterr().out.count(": training") == 2  # failed cells are not skipped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"arms": ARMS, "seed": [0]}, "unknown key 'seed'; allowed: arms, seeds, settings"),
        ({"arms": []}, "`arms` is empty or missing"),
        ({"settings": ["configs/demo.yaml"]}, "`arms` is empty or missing"),
        ([ARMS], "expected a mapping with `arms:`"),
        ({"arms": [{"name": "maro", "override": []}]}, "arm 1: unknown key 'override'; allowed: name, overrides"),
        ({"arms": [{"name": "maro"}, {"name": "maro"}]}, "arm names must differ; repeated: maro"),
        ({"arms": [{"name": "no_m2"}]}, "no arm named `maro`"),
        ({"arms": [{"name": "a=b"}]}, "arm 1: `name` must be letters"),
        ({"arms": [{"name": "maro"}, {"name": "warm_start_x"}]}, "arm 2: `name` must be letters"),
        ({"arms": [{"name": "maro"}, {"name": "evaluation"}]}, "arm 2: `name` must be letters"),
        ({"arms": [{"name": "maro", "overrides": "--x=1"}]}, "arm 1 (maro): `overrides` must be a list of strings"),
        ({"arms": [{"name": "maro", "overrides": ["--trainer.max_steps=5"]}]}, "--trainer.max_steps is set by"),
        ({"arms": ARMS, "seeds": ["0"]}, "`seeds` must be a list of integers"),
    ],
)
def test_a_bad_arms_file_is_refused_naming_the_entry(tmp_path, content, message):
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ValueError) as error:
        ablation.load_plan(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_a_bad_arms_file_stops_the_harness_in_one_line(tmp_path, capsys):
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump({"arms": []}))
    with pytest.raises(SystemExit) as exit_info:
        ablation.main([str(ROOT / "configs" / "demo.yaml"), "--arms", str(path), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"ablation: error: {path}: `arms` is empty or missing; list at least the " \
        "full-MARO arm `maro`\n"  # fmt: skip


def test_only_picks_arms_in_the_files_order_and_refuses_an_unknown_name(tmp_path, capsys):
    arms = ablation.load_plan(ablation.ARMS_FILE).arms
    picked = ablation.select_arms(arms, ["role_baseline", "maro"])
    assert [arm.name for arm in picked] == ["maro", "role_baseline"]
    assert ablation.select_arms(arms, None) == arms
    with pytest.raises(SystemExit) as exit_info:
        ablation.main([str(ROOT / "configs" / "demo.yaml"), "--only", "maro", "spiral", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--only: no arm named spiral (the arms: maro, no_m1," in capsys.readouterr().err


def test_the_shipped_arms_are_maro_and_its_five_ablations_and_baselines():
    plan = ablation.load_plan(ablation.ARMS_FILE)
    credit = "--model.init_args.credit."
    assert {arm.name: arm.overrides for arm in plan.arms} == {
        "maro": (),
        "no_m1": (f"{credit}decompose=false",),
        "no_m2": (f"{credit}weighting=none", "--data.sampling=shuffle"),  # both of M2: weights and batches
        "no_m3": (f"{credit}use_utility=false",),
        "outcome": (f"{credit}mode=outcome",),
        "role_baseline": (f"{credit}mode=role_baseline",),
    }
    assert plan.seeds == (0, 1, 2)


def test_the_table_averages_the_conditions_then_gives_mean_and_se_over_seeds(tmp_path):
    def row(arm, role, seed, opponent, reward, d_maro):  # noqa: ANN001, ANN202
        return {"setting": "s", "arm": arm, "game": "bazaar", "role": role, "seed": seed, "opponent": opponent,
                "reward": reward, "d_warm_start": reward - 0.1, "d_maro": d_maro}  # fmt: skip

    rewards = {("seller", 0): (0.6, 0.4), ("seller", 1): (0.8, 0.6), ("buyer", 0): (0.2, 0.2), ("buyer", 1): (0.4, 0.4)}
    rows = []
    for (role, seed), pair in rewards.items():
        for opponent, reward in zip(("linear", "random"), pair, strict=True):
            rows.append(row("maro", role, seed, opponent, reward, None))
            rows.append(row("no_m2", role, seed, opponent, reward + 0.05 * (seed + 1), 0.05 * (seed + 1)))
    table = ablation.summarise(rows).splitlines()
    assert table[0] == "### s: seeds 0, 1, mean ± SE over seeds"
    # seller: 0.5 and 0.7 over the seeds; buyer: 0.2 and 0.4; the gap, buyer − seller, is −0.3 on both seeds
    assert "| maro | bazaar/seller | 0.600 ± 0.100 | +0.500 ± 0.100 | — | -0.300 ± 0.000 |" in table
    assert "| maro | bazaar/buyer | 0.300 ± 0.100 | +0.200 ± 0.100 | — |  |" in table
    assert "| no_m2 | bazaar/seller | 0.675 ± 0.125 | +0.575 ± 0.125 | +0.075 ± 0.025 | -0.300 ± 0.000 |" in table
    assert ablation.plot(rows, tmp_path / "ablation.png").stat().st_size > 0


def test_the_settings_held_out_options_reach_the_evaluation():
    noisy = ROOT / "configs" / "probes" / "m3_noisy.yaml"
    assert ablation.held_out_option_args(str(noisy)) == ["--held-out-option", "noise=0.0"]  # the clean score
    demo = ROOT / "configs" / "demo.yaml"
    assert ablation.held_out_option_args(str(demo)) == ["--held-out-option", "listing_range=[120, 200]"]
    assert ablation.held_out_option_args(str(ROOT / "configs" / "mafia.yaml")) == []  # no EvaluationReport


def test_the_ladder_pools_the_settings_held_out_opponents_as_independent_strata():
    pairs = [{"n": 100, "d_reward": 0.2, "se_reward": 0.03, "d_deal": -0.1, "se_deal": 0.02},
             {"n": 300, "d_reward": 0.1, "se_reward": 0.02, "d_deal": None, "se_deal": None}]  # fmt: skip
    delta, se = ablation.stratified(pairs, "reward")
    assert delta == pytest.approx((100 * 0.2 + 300 * 0.1) / 400)
    assert se == pytest.approx(((100 * 0.03) ** 2 + (300 * 0.02) ** 2) ** 0.5 / 400)
    assert ablation.stratified(pairs, "deal") == (None, None)  # a condition without deals: no pooled deal rate
    assert ablation.ladder(str(ROOT / "configs" / "bazaar_selfplay.yaml")) == {
        "bazaar": ["linear", "boulware", "conceder"]
    }

    rows = [{"setting": "s", "seed": seed, "arm": "maro", "baseline": "warm_start", "game": "bazaar", "role": "seller",
             "opponents": "a+b", "n": 400, "d_reward": d, "se_reward": 0.02, "d_deal": -0.01, "se_deal": 0.01}
            for seed, d in ((1, 0.10), (0, 0.06))]  # fmt: skip
    table = ablation.summarise_ladder(rows).splitlines()
    assert table[0] == "### s: final − warm start on the held-out ladder (a, b), pooled"
    assert table[4] == (
        "| maro | bazaar/seller | +0.060 (+3.0), +0.100 (+5.0) | +0.080 ± 0.020 | -0.010 (-1.0), -0.010 (-1.0) "
        "| -0.010 ± 0.000 |"
    )
    one_seed = ablation.summarise_ladder(rows[1:]).splitlines()  # no SE over one seed: the value alone
    assert one_seed[4] == "| maro | bazaar/seller | +0.060 (+3.0) | +0.060 | -0.010 (-1.0) | -0.010 |"
    no_deals = [row | {"game": "mafia", "role": "doctor", "d_deal": None, "se_deal": None} for row in rows]
    table = ablation.summarise_ladder(no_deals).splitlines()  # a game without deals: no deal-rate columns
    assert table[2:5] == [
        "| arm | role | Δ reward per seed (Δ/SE) | mean ± SE |",
        "|---|---|---|---:|",
        "| maro | mafia/doctor | +0.060 (+3.0), +0.100 (+5.0) | +0.080 ± 0.020 |",
    ]


@pytest.mark.parametrize("arm", ["no_m1", "outcome"])
def test_an_arms_credit_switch_keeps_the_settings_reward_scheme(arm, capsys):
    """bazaar_selfplay's credit is NoDealCost (an assigner with a cost): the switch goes to its config, and the cost
    stays; the plain-mapping settings take the arms as written."""
    plan = {a.name: a for a in ablation.load_plan(ablation.ARMS_FILE).arms}
    setting, plain = str(ROOT / "configs" / "bazaar_selfplay.yaml"), str(ROOT / "configs" / "mafia_selfplay.yaml")
    assert ablation.setting_overrides(plain, plan[arm].overrides) == list(plan[arm].overrides)
    args = ablation.Cell(setting, 0, plan[arm], Path("/tmp/unused")).fit_args(max_steps=None)
    assert all(".credit.init_args.config." in token for token in args if ".credit." in token)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    credit = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["credit"]
    assert credit["class_path"] == "maro_lightning.credit.shaping.NoDealCost" and credit["init_args"]["cost"] == 1.0
    switch, value = plan[arm].overrides[0].removeprefix("--model.init_args.credit.").split("=")
    assert str(credit["init_args"]["config"][switch]).lower() == value
