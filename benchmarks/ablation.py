"""The MARO mechanism ablation: every arm trained on the same settings and seeds with the same budget, then all of a
(setting, seed)'s final policies and its warm start evaluated paired, on the same held-out games.

    .venv/bin/python benchmarks/ablation.py                       # the settings and seeds of the arms file
    .venv/bin/python benchmarks/ablation.py configs/demo.yaml --seeds 0 --out runs/ablation_demo --jobs 2
    .venv/bin/python benchmarks/ablation.py configs/demo.yaml --max-steps 2 --episodes 8 --out /tmp/smoke  # smoke

Arms: ``--arms`` (default benchmarks/ablation_arms.yaml): ``arms:``, a list of ``{name, overrides}`` (dotted
``maro fit`` arguments such as ``--model.init_args.credit.weighting=none``; an arm named ``maro``, the full method,
is required), and optionally ``settings:`` (config files) and ``seeds:``; the command line's take precedence (seeds
0 1 2 by default). Over a setting whose ``credit:`` is an assigner with its own arguments (a reward scheme such as
``NoDealCost``), a credit switch ``--model.init_args.credit.X`` is passed as ``...credit.init_args.config.X``, so the
scheme stays. Cells are settings × seeds × arms, each a ``maro fit -c SETTING --seed_everything SEED`` in
``OUT/SETTING/seedSEED/ARM`` (``fit.log``; ``cell.json``: the arguments, exit status, wall time), run one at a time
or ``--jobs N`` at once, with OMP_NUM_THREADS=1 unless the environment sets it. Every arm trains for the setting's
own max_steps; ``--max-steps N`` replaces it for all arms alike (smoke runs).

Resumable: a cell is skipped when its ``cell.json`` records a successful run of the same arguments and its
``last.ckpt`` exists; any other cell (failed, interrupted, never run, or run with other arguments) is run again from
scratch. Once every arm of a (setting, seed) has finished, one ``maro evaluate`` (``OUT/SETTING/seedSEED/
evaluation``; skipped when its ``evaluation.json`` is newer than the arms' checkpoints and has as many episodes)
plays the warm start and every arm's ``last.ckpt`` on ``--episodes`` (400) held-out games against every scripted
opponent of the setting's games, and under the held-out game options its ``EvaluationReport`` names (if any). The
arms share one warm start when their ``warm_start.ckpt`` policies are equal (cloning does not depend on the credit
switches; this is checked), otherwise each arm's own is evaluated.

Outputs in OUT: ``ablation.csv`` (per setting, seed, arm, condition and role: reward, success, deal and invalid
rates, Δ vs the warm start and vs ``maro`` with their paired SE, the run's last ``train/utility_explained_variance``
and ``utility/GAME/ROLE/explained_variance``, wall time), ``ablation_ladder.csv`` (per setting, seed, arm and role:
the final policy minus its warm start, and minus full MARO, on the setting's held-out ladder pooled, in reward and
deal rate, as the setting's learning claim is judged), ``ablation.md`` (per setting, arm and role: mean ± SE over
seeds of the final reward and of both Δ, each seed's values averaged over the conditions first; each arm's
weak-role gap, its weakest role's reward minus its strongest's; and the ladder table, per seed and over seeds) and
``ablation.png`` (the final rewards). The markdown is printed at the end. Exit status 1 when a cell or an
evaluation failed (its log is named), 2 for bad arguments or a bad arms file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from maro_lightning import preflight

ARMS_FILE = Path(__file__).resolve().with_name("ablation_arms.yaml")
REFERENCE_ARM = "maro"  # full MARO: the arm every other is compared with, and whose warm start is evaluated
DEFAULT_SEEDS = (0, 1, 2)
MARO = [sys.executable, "-m", "maro_lightning.cli"]  # `maro` of the interpreter that runs this script
RESERVED = ("-c", "--config", "--seed_everything", "--trainer.max_steps", "--trainer.default_root_dir")  # set here
WARM_START = "warm_start"  # the evaluation line of the shared warm start; per arm: warm_start_ARM
EVALUATION = "evaluation"  # the folder of a (setting, seed)'s evaluation, beside its arms' folders
NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # a folder name, and an evaluation line's name (no `=`)
CREDIT = "--model.init_args.credit."  # the prefix of an arm's credit switches (an assigner's: setting_overrides)


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What the arms file says: the arms, and the settings and seeds when it lists them."""

    arms: tuple[Arm, ...]
    settings: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()


def load_plan(path: str | Path) -> Plan:
    """The arms file at ``path``, checked: a ValueError names the file, the entry and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such arms file")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with `arms:` (and optionally `settings:`, `seeds:`)")
    _check_keys(data, {"arms", "settings", "seeds"}, str(path))
    arms = data.get("arms")
    if not isinstance(arms, list) or not arms:
        raise ValueError(f"{path}: `arms` is empty or missing; list at least the full-MARO arm `{REFERENCE_ARM}`")
    parsed = tuple(_arm(entry, f"{path}: arm {i + 1}") for i, entry in enumerate(arms))
    names = [arm.name for arm in parsed]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"{path}: arm names must differ; repeated: {', '.join(duplicated)}")
    if REFERENCE_ARM not in names:
        raise ValueError(f"{path}: no arm named `{REFERENCE_ARM}` (full MARO), with which the other arms are compared")
    settings, seeds = data.get("settings") or [], data.get("seeds") or []
    if not isinstance(settings, list) or not all(isinstance(s, str) for s in settings):
        raise ValueError(f"{path}: `settings` must be a list of config files, got {settings!r}")
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{path}: `seeds` must be a list of integers, got {seeds!r}")
    return Plan(parsed, tuple(settings), tuple(seeds))


def _arm(entry: Any, where: str) -> Arm:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with `name` and `overrides`, got {entry!r}")
    _check_keys(entry, {"name", "overrides"}, where)
    name, overrides = entry.get("name"), entry.get("overrides") or []
    if not isinstance(name, str) or not NAME.match(name) or name == EVALUATION or name.startswith(WARM_START):
        raise ValueError(
            f"{where}: `name` must be letters, digits, `_` or `-`, not {EVALUATION} or {WARM_START}..., got {name!r}"
        )
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f"{where} ({name}): `overrides` must be a list of strings, got {overrides!r}")
    arguments = tuple(token for override in overrides for token in shlex.split(override))
    for token in arguments:
        key = token.split("=", 1)[0]
        if key in RESERVED:
            raise ValueError(f"{where} ({name}): {key} is set by the harness, the same for every arm")
    if arguments and not arguments[0].startswith("--"):
        raise ValueError(f"{where} ({name}): overrides are `maro fit` arguments (--key=value); got {arguments[0]!r}")
    return Arm(name, arguments)


def _check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class Cell:
    """One training run: an arm on a setting with a seed."""

    setting: str
    seed: int
    arm: Arm
    out: Path

    @property
    def label(self) -> str:
        return f"{Path(self.setting).stem}/seed{self.seed}/{self.arm.name}"

    @property
    def directory(self) -> Path:
        return self.out / self.label

    def fit_args(self, max_steps: int | None) -> list[str]:
        budget = [] if max_steps is None else ["--trainer.max_steps", str(max_steps)]
        seed = ["--seed_everything", str(self.seed), "--trainer.default_root_dir", str(self.directory)]
        return ["fit", "-c", self.setting, *seed, *budget, *setting_overrides(self.setting, self.arm.overrides)]


def setting_overrides(setting: str, overrides: tuple[str, ...]) -> list[str]:
    """The arm's overrides as the setting takes them. Over a setting whose ``credit:`` is an assigner (``{class_path:
    ..., init_args: {config: {...}}}``: a reward scheme such as ``NoDealCost``), a credit switch
    ``--model.init_args.credit.X`` becomes ``--model.init_args.credit.init_args.config.X`` (given as it is, it would
    replace the assigner with a plain mapping of switches and drop the reward scheme, which ``maro fit`` refuses)."""
    if preflight.configured_assigner([setting]) is None:
        return list(overrides)
    own = (f"{CREDIT}init_args.", f"{CREDIT}class_path")  # the assigner's own arguments stay as they are
    return [
        f"{CREDIT}init_args.config.{token[len(CREDIT) :]}" if token.startswith(CREDIT) and not token.startswith(own)
        else token
        for token in overrides
    ]  # fmt: skip


def finished(cell: Cell, max_steps: int | None) -> Path | None:
    """The cell's ``last.ckpt`` when its recorded run of the same arguments succeeded; else None."""
    record = _read_json(cell.directory / "cell.json")
    if record is None or record.get("returncode") != 0 or record.get("args") != cell.fit_args(max_steps):
        return None
    return next(iter(sorted(cell.directory.rglob("last.ckpt"))), None)


def run_cell(cell: Cell, max_steps: int | None, env: dict[str, str]) -> bool:
    """Train the cell from scratch (its folder emptied first); record its arguments, exit status and wall time."""
    shutil.rmtree(cell.directory, ignore_errors=True)
    cell.directory.mkdir(parents=True)
    args = cell.fit_args(max_steps)
    start = time.monotonic()
    with (cell.directory / "fit.log").open("w") as log:
        returncode = subprocess.run([*MARO, *args], stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    record = {"setting": cell.setting, "seed": cell.seed, "arm": cell.arm.name, "args": args,
              "returncode": returncode, "wall_seconds": round(time.monotonic() - start, 1)}  # fmt: skip
    (cell.directory / "cell.json").write_text(json.dumps(record, indent=1) + "\n")
    return finished(cell, max_steps) is not None


def evaluation_dir(out: Path, setting: str, seed: int) -> Path:
    return out / Path(setting).stem / f"seed{seed}" / EVALUATION


def warm_start_lines(lasts: dict[str, Path]) -> dict[str, Path]:
    """Line name -> warm_start.ckpt: one shared ``warm_start`` when every arm cloned the same policy (equal
    weights), else each arm's own as ``warm_start_ARM``; {} when the runs saved no warm start."""
    paths = {arm: last.with_name(f"{WARM_START}.ckpt") for arm, last in lasts.items()}
    if not all(path.is_file() for path in paths.values()):
        return {}
    import torch

    from maro_lightning import checkpoints

    def policy(path: Path) -> dict[str, torch.Tensor]:
        state = checkpoints.load(path)["state_dict"]
        return {key: value for key, value in state.items() if key.startswith("policy.")}

    reference = policy(paths[REFERENCE_ARM])
    for arm, path in paths.items():
        weights = policy(path) if arm != REFERENCE_ARM else reference
        if weights.keys() != reference.keys() or not all(torch.equal(weights[k], reference[k]) for k in reference):
            say(f"warm starts differ ({arm} vs {REFERENCE_ARM}): each arm's own is evaluated")
            return {f"{WARM_START}_{name}": p for name, p in paths.items()}
    return {WARM_START: paths[REFERENCE_ARM]}


def run_evaluation(group: list[Cell], max_steps: int | None, episodes: int, env: dict[str, str]) -> bool:
    """The paired evaluation of a (setting, seed) once all its arms have finished: the warm start and every arm's
    final policy on the same games."""
    setting, seed = group[0].setting, group[0].seed
    label = f"{Path(setting).stem}/seed{seed}"
    lasts = {cell.arm.name: finished(cell, max_steps) for cell in sorted(group, key=_reference_first)}
    if not all(lasts.values()):
        say(f"{label}: not evaluated, an arm failed")
        return False
    directory = evaluation_dir(group[0].out, setting, seed)
    result = _read_json(directory / "evaluation.json")
    newest = max(path.stat().st_mtime for path in lasts.values())
    if result is not None and result["episodes"] == episodes and result["lines"][-len(lasts) :] == list(lasts):
        if (directory / "evaluation.json").stat().st_mtime > newest:
            say(f"{label}/evaluation: done before, skipped")
            return True
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "evaluation.json").unlink(missing_ok=True)  # a stale result must not outlive a failed evaluation
    lines = warm_start_lines(lasts) | lasts  # the warm starts first: every arm's Δ vs its warm start is a pair
    command = [*MARO, "evaluate", *(f"{name}={path}" for name, path in lines.items())]
    command += ["--scripted", "none", "--episodes", str(episodes), "--out", str(directory)]
    command += held_out_option_args(setting)
    say(f"{label}/evaluation: {len(lines)} lines × {episodes} games per condition")
    start = time.monotonic()
    with (directory / "evaluate.log").open("w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    status = "done" if returncode == 0 else f"FAILED (exit {returncode}), log: {directory / 'evaluate.log'}"
    say(f"{label}/evaluation: {status} in {time.monotonic() - start:.0f} s")
    return returncode == 0


def report_arguments(setting: str) -> dict[str, Any]:
    """The ``init_args`` of the setting's ``EvaluationReport`` callback ({} when it has none)."""
    config = yaml.safe_load(Path(setting).read_text()) or {}
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("EvaluationReport"):
            return callback.get("init_args") or {}
    return {}


def held_out_option_args(setting: str) -> list[str]:
    """``--held-out-option KEY=VALUE`` for each held-out game option of the setting's ``EvaluationReport`` (e.g. the
    M3 probe's ``noise: 0``, the clean score of the same decisions), so the ablation is judged as the setting is."""
    args: list[str] = []
    for options in (report_arguments(setting).get("held_out_options") or {}).values():
        args += [arg for key, value in options.items() for arg in ("--held-out-option", f"{key}={value!r}")]
    return args


def ladder(setting: str) -> dict[str, list[str]]:
    """Game -> the opponents of the setting's own ``EvaluationReport`` (its ladder, by which the setting's claims are
    judged); {} when it names none."""
    return {game: list(names) for game, names in (report_arguments(setting).get("opponents") or {}).items()}


def run_all(cells: list[Cell], max_steps: int | None, episodes: int, jobs: int) -> bool:
    """Train every cell not finished before (``jobs`` at once) and evaluate each (setting, seed) once its arms have
    all finished; True when nothing failed."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    groups: dict[tuple[str, int], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[cell.setting, cell.seed].append(cell)
    waiting = {key: len(group) for key, group in groups.items()}
    start, done, ok, queue = time.monotonic(), 0, True, iter(cells)
    pending: dict[Future, Cell | None] = {}  # a training cell, or None for an evaluation

    def train(cell: Cell) -> tuple[bool, bool]:  # (finished, skipped)
        if finished(cell, max_steps) is not None:
            return True, True
        say(f"{cell.label}: training")
        return run_cell(cell, max_steps, env), False

    with ThreadPoolExecutor(max_workers=jobs) as pool:

        def next_cell() -> None:  # cells go to the pool one by one, so that a ready evaluation runs before them
            cell = next(queue, None)
            if cell is not None:
                pending[pool.submit(train, cell)] = cell

        try:
            for _ in range(jobs):
                next_cell()
            while pending:
                for future in wait(pending, return_when=FIRST_COMPLETED).done:
                    cell = pending.pop(future)
                    if cell is None:
                        ok = future.result() and ok
                        continue
                    (succeeded, skipped), done = future.result(), done + 1
                    ok = ok and succeeded
                    elapsed = timedelta(seconds=round(time.monotonic() - start))
                    say(f"[{done}/{len(cells)}] {cell.label}: {_status(cell, succeeded, skipped)} ({elapsed} elapsed)")
                    waiting[cell.setting, cell.seed] -= 1
                    if waiting[cell.setting, cell.seed] == 0:
                        group = groups[cell.setting, cell.seed]
                        pending[pool.submit(run_evaluation, group, max_steps, episodes, env)] = None
                    next_cell()
        except BaseException:  # Ctrl-C: the running cells stop on their own SIGINT; start no other
            pool.shutdown(cancel_futures=True)
            raise
    return ok


def _status(cell: Cell, succeeded: bool, skipped: bool) -> str:
    record = _read_json(cell.directory / "cell.json") or {}
    if skipped:
        return "finished before, skipped"
    if succeeded:
        return f"trained in {record['wall_seconds']} s"
    if record.get("returncode") == 0:
        return "FAILED: no last.ckpt (the setting needs a ModelCheckpoint with save_last: true)"
    return f"FAILED (exit {record.get('returncode')}), log: {cell.directory / 'fit.log'}"


def _reference_first(cell: Cell) -> bool:
    return cell.arm.name != REFERENCE_ARM


# ------------------------------------------------------------------------------------------------------ results
def evaluated(cells: list[Cell]) -> list[tuple[str, int, list[Cell], dict[str, Any]]]:
    """(setting, seed, its cells, its evaluation report) of every (setting, seed) whose evaluation finished."""
    groups: dict[tuple[str, int], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[cell.setting, cell.seed].append(cell)
    found = []
    for (setting, seed), group in groups.items():
        report = _read_json(evaluation_dir(group[0].out, setting, seed) / "evaluation.json")
        if report is not None:
            found.append((setting, seed, group, report))
    return found


def warm_start_line(report: dict[str, Any], arm: str) -> str:
    """The evaluation line of ``arm``'s warm start: the shared one, or the arm's own."""
    return WARM_START if WARM_START in report["lines"] else f"{WARM_START}_{arm}"


def collect(cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per (setting, seed, arm, condition, role) of every finished evaluation."""
    from maro_lightning.plots import read_metrics

    rows = []
    for setting, seed, group, report in evaluated(cells):
        pairs = {(p["condition"], p["role"], p["line"], p["baseline"]): p for p in report["pairs"]}
        for cell in group:
            arm = cell.arm.name
            warm = warm_start_line(report, arm)
            metrics = read_metrics(next(cell.directory.rglob("metrics.csv")))
            last = {key: values[-1] for key, (_, values) in metrics.items()}  # each metric's last logged value
            wall = _read_json(cell.directory / "cell.json")["wall_seconds"]
            for result in (r for r in report["rows"] if r["line"] == arm):
                key = (result["condition"], result["role"], arm)
                vs_warm, vs_maro = pairs.get((*key, warm), {}), pairs.get((*key, REFERENCE_ARM), {})
                per_role = f"utility/{result['game']}/{result['role']}/explained_variance"
                rows.append({
                    "setting": Path(setting).stem, "seed": seed, "arm": arm,
                    **{k: result[k] for k in ("game", "condition", "split", "opponent", "role", "n", "reward")},
                    **{k: result[k] for k in ("success", "deal", "invalid_rate")},
                    "d_warm_start": vs_warm.get("d_reward"), "se_warm_start": vs_warm.get("se_reward"),
                    "d_maro": vs_maro.get("d_reward"), "se_maro": vs_maro.get("se_reward"),
                    "utility_explained_variance": last.get("train/utility_explained_variance"),
                    "role_utility_explained_variance": last.get(per_role), "wall_seconds": wall,
                })  # fmt: skip
    return rows


def collect_ladder(cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per (setting, seed, arm, baseline, game, role), the baseline being the arm's warm start or full MARO:
    the final policy minus the baseline over the held-out opponents of the setting's ladder (:func:`ladder`; every
    held-out opponent when it names none) together, in reward and deal rate: Δ = Σ n_c Δ_c / N with SE =
    √(Σ (n_c SE_c)²) / N over the conditions c (each condition's games are its own, so the strata are independent).
    This is how a setting's learning claim is judged."""
    from maro_lightning.paired import HELD_OUT_OPPONENT

    rows = []
    for setting, seed, group, report in evaluated(cells):
        opponents = ladder(setting)
        for cell, baseline in itertools.product(group, (WARM_START, REFERENCE_ARM)):
            arm = cell.arm.name
            if arm == baseline:
                continue
            line = warm_start_line(report, arm) if baseline == WARM_START else baseline
            strata: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            for pair in report["pairs"]:
                held_out = pair["split"] == HELD_OUT_OPPONENT
                on_ladder = pair["game"] not in opponents or pair["opponent"] in opponents[pair["game"]]
                if pair["line"] == arm and pair["baseline"] == line and held_out and on_ladder:
                    strata[pair["game"], pair["role"]].append(pair)
            for (game, role), pairs in strata.items():
                opponents_played = "+".join(p["opponent"] for p in pairs)
                row = {"setting": Path(setting).stem, "seed": seed, "arm": arm, "baseline": baseline, "game": game,
                       "role": role, "opponents": opponents_played, "n": sum(p["n"] for p in pairs)}  # fmt: skip
                for metric in ("reward", "deal"):
                    row[f"d_{metric}"], row[f"se_{metric}"] = stratified(pairs, metric)
                rows.append(row)
    return rows


def stratified(pairs: list[dict[str, Any]], metric: str) -> tuple[float | None, float | None]:
    """The paired Δ and SE of ``metric`` over the games of several conditions, from each condition's own (None
    when a condition has none, e.g. no deal rate in a game without deals)."""
    if any(p[f"d_{metric}"] is None for p in pairs):
        return None, None
    total = sum(p["n"] for p in pairs)
    delta = sum(p["n"] * p[f"d_{metric}"] for p in pairs) / total
    return delta, sum((p["n"] * p[f"se_{metric}"]) ** 2 for p in pairs) ** 0.5 / total


def seed_means(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[int, dict[str, float | None]]]:
    """(setting, arm, game/role) -> seed -> reward, d_warm_start and d_maro averaged over the conditions (None
    where a condition has none: no warm start, or the maro arm itself)."""
    groups: dict[tuple[tuple[str, str, str], int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["setting"], row["arm"], f"{row['game']}/{row['role']}"), row["seed"]].append(row)
    means: dict[tuple[str, str, str], dict[int, dict[str, float | None]]] = defaultdict(dict)
    for (key, seed), group in groups.items():
        means[key][seed] = {
            name: None if any(r[name] is None for r in group) else sum(r[name] for r in group) / len(group)
            for name in ("reward", "d_warm_start", "d_maro")
        }
    return means


def mean_se(values: list[float]) -> tuple[float, float]:
    """The mean over seeds and its standard error sd/√n (0 for one seed)."""
    from maro_lightning.paired import paired_difference

    return paired_difference(values, [0.0] * len(values))  # the mean of x − 0 and its SE


def weak_role_gaps(means: dict[tuple[str, str, str], dict[int, dict[str, float | None]]]) -> dict[tuple, list]:
    """(setting, arm) -> per seed, the weakest role's reward minus the strongest's (0 with one role)."""
    by_seed: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (setting, arm, _), seeds in means.items():
        for seed, values in seeds.items():
            by_seed[setting, arm][seed].append(values["reward"])
    return {key: [min(r) - max(r) for _, r in sorted(seeds.items())] for key, seeds in by_seed.items()}


def summarise(rows: list[dict[str, Any]]) -> str:
    """The markdown tables: per setting, arm and role, mean ± SE over seeds of the final reward, of Δ vs the warm
    start and of Δ vs full MARO (each seed's values averaged over the conditions first), and each arm's weak-role
    gap."""
    means, out = seed_means(rows), []
    gaps = weak_role_gaps(means)
    for setting in dict.fromkeys(row["setting"] for row in rows):
        seeds = sorted({row["seed"] for row in rows if row["setting"] == setting})
        out += [f"### {setting}: seeds {', '.join(map(str, seeds))}, mean ± SE over seeds", ""]
        out += ["| arm | role | final reward | Δ vs warm start | Δ vs maro | weak-role gap |"]
        out += ["|---|---|---:|---:|---:|---:|"]
        shown: set[str] = set()
        for (where, arm, role), by_seed in means.items():
            if where != setting:
                continue
            cells = [_format([v[name] for v in by_seed.values()], sign) for name, sign in _COLUMNS]
            gap = "" if arm in shown else _format(gaps[setting, arm], "+")
            shown.add(arm)
            out.append(f"| {arm} | {role} | {' | '.join(cells)} | {gap} |")
        out.append("")
    return "\n".join(out)


_COLUMNS = (("reward", ""), ("d_warm_start", "+"), ("d_maro", "+"))


def summarise_ladder(rows: list[dict[str, Any]]) -> str:
    """The markdown tables of :func:`collect_ladder`: per setting and baseline (the warm start, full MARO), per arm
    and role, each seed's Δ (Δ/SE) and their mean ± SE over seeds, in reward and (in a game with deals) deal rate."""
    out = []
    for setting, baseline in dict.fromkeys((row["setting"], row["baseline"]) for row in rows):
        mine = [row for row in rows if (row["setting"], row["baseline"]) == (setting, baseline)]
        opponents = ", ".join(dict.fromkeys(o for row in mine for o in row["opponents"].split("+")))
        title = "warm start" if baseline == WARM_START else baseline
        with_deals = any(row["d_deal"] is not None for row in mine)  # Mafia has none: no deal-rate columns
        metrics = ("reward", "deal") if with_deals else ("reward",)
        out += [f"### {setting}: final − {title} on the held-out ladder ({opponents}), pooled", ""]
        headers = [f"Δ {_LADDER_NAMES[metric]} per seed (Δ/SE) | mean ± SE" for metric in metrics]
        out += [f"| arm | role | {' | '.join(headers)} |"]
        out += ["|---|---|" + "---|---:|" * len(metrics)]
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in sorted(mine, key=lambda r: r["seed"]):
            groups[row["arm"], f"{row['game']}/{row['role']}"].append(row)
        for (arm, role), seeds in groups.items():
            cells = []
            for metric in metrics:
                each = [_per_seed(row[f"d_{metric}"], row[f"se_{metric}"]) for row in seeds]
                cells += [", ".join(each), _format([row[f"d_{metric}"] for row in seeds], "+")]
            out.append(f"| {arm} | {role} | {' | '.join(cells)} |")
        out.append("")
    return "\n".join(out)


_LADDER_NAMES = {"reward": "reward", "deal": "deal rate"}


def _per_seed(delta: float | None, se: float | None) -> str:
    if delta is None:
        return "—"
    return f"{delta:+.3f} ({delta / se:+.1f})" if se else f"{delta:+.3f}"


def _format(values: list[float | None], sign: str) -> str:
    if not values or any(v is None for v in values):
        return "—"
    if len(values) == 1:  # one seed: no spread over seeds to show
        return f"{values[0]:{sign}.3f}"
    mean, se = mean_se(values)
    return f"{mean:{sign}.3f} ± {se:.3f}"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Per setting, the final reward of every arm and role: mean over seeds with ± SE error bars."""
    from maro_lightning.plots import plt  # matplotlib, with the plots' file-only backend

    means = seed_means(rows)
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    figure, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.5), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        arms = list(dict.fromkeys(arm for (s, arm, _) in means if s == setting))
        roles = list(dict.fromkeys(role for (s, _, role) in means if s == setting))
        width = 0.8 / len(roles)
        for j, role in enumerate(roles):
            stats = [mean_se([v["reward"] for v in means.get((setting, arm, role), {}).values()]) for arm in arms]
            x = [i + (j - (len(roles) - 1) / 2) * width for i in range(len(arms))]
            ax.bar(x, [m for m, _ in stats], width, yerr=[se for _, se in stats], capsize=3, label=role)
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=8)
        ax.set_title(f"{setting}: final reward per arm and role (± SE over seeds)", fontsize=10)
        ax.set_ylabel("reward (mean over the held-out conditions)")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_results(cells: list[Cell], out: Path) -> str | None:
    """ablation.csv, ablation_ladder.csv, ablation.md and ablation.png in ``out``; the markdown (None when nothing was
    evaluated)."""
    rows = collect(cells)
    if not rows:
        return None
    from maro_lightning.paired import write_csv

    ladder_rows = collect_ladder(cells)
    write_csv(out / "ablation.csv", rows)
    write_csv(out / "ablation_ladder.csv", ladder_rows)
    markdown = summarise(rows) + "\n" + summarise_ladder(ladder_rows)
    (out / "ablation.md").write_text(markdown)
    plot(rows, out / "ablation.png")
    return markdown


_PRINT_LOCK = threading.Lock()


def say(message: str) -> None:
    """One line of progress, whole even when cells run in parallel threads."""
    with _PRINT_LOCK:
        print(message, flush=True)


def select_arms(arms: tuple[Arm, ...], only: list[str] | None) -> tuple[Arm, ...]:
    """The arms named in ``only`` (all of them for None), in the file's order; an unknown name is an error."""
    if only is None:
        return arms
    unknown = sorted(set(only) - {arm.name for arm in arms})
    if unknown:
        raise ValueError(f"--only: no arm named {', '.join(unknown)} (the arms: {', '.join(a.name for a in arms)})")
    return tuple(arm for arm in arms if arm.name in only)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", help="setting configs (default: the arms file's `settings`)")
    parser.add_argument("--arms", default=str(ARMS_FILE), help="the arms file (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the arms file's, else 0 1 2)")
    parser.add_argument("--out", default="runs/ablation", help="output folder (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained at once, each a process (default: 1)")
    parser.add_argument("--max-steps", type=int, help="trainer.max_steps of every arm (default: the setting's)")
    parser.add_argument("--episodes", type=int, default=400, help="evaluation games per condition (default: 400)")
    parser.add_argument("--only", nargs="+", metavar="ARM", help="run these arms of the file only (default: all)")
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.arms)
        settings = args.settings or list(plan.settings)
        missing = [s for s in settings if not Path(s).is_file()]
        if not settings or missing:
            raise ValueError(f"no such setting config: {', '.join(missing)}" if missing else "no setting given")
        stems = [Path(s).stem for s in settings]
        if len(set(stems)) != len(stems):
            raise ValueError(f"settings need distinct file names (their output folders): {', '.join(settings)}")
        arms = select_arms(plan.arms, args.only)
        if args.jobs < 1 or args.episodes < 1 or (args.max_steps is not None and args.max_steps < 1):
            raise ValueError("--jobs, --episodes and --max-steps must be at least 1")
    except ValueError as err:
        parser.exit(2, f"ablation: error: {err}\n")
    out = Path(args.out).resolve()
    seeds = args.seeds or list(plan.seeds) or list(DEFAULT_SEEDS)
    cells = [Cell(str(Path(s)), seed, arm, out) for s in settings for seed in seeds for arm in arms]
    print(f"{len(cells)} cells: {len(settings)} settings × {len(seeds)} seeds × {len(arms)} arms, in {out}")
    try:
        ok = run_all(cells, args.max_steps, args.episodes, args.jobs)
    except KeyboardInterrupt:
        print("interrupted: the same command resumes (the unfinished cells run again from scratch)")
        return 130
    markdown = write_results(cells, out)
    if markdown is None:
        print("no evaluation finished yet: no results written")
    else:
        print(f"\n{markdown}\nresults: {out / 'ablation.csv'}, {out / 'ablation.md'}, {out / 'ablation.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
