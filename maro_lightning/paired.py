"""Paired evaluation (``maro evaluate``): every line plays the same held-out games, and lines are compared
game by game.

A *line* is whoever takes the learner's seat: a trained policy (a checkpoint, or a module in memory) or a
scripted agent (e.g. the teacher the warm start cloned). A *condition* is a game, its options, a scripted
opponent and the learner's seats, labelled by how it relates to training:

- ``train``: an opponent and options the policy trained on (in distribution);
- ``held-out opponent``: a scripted agent the policy never met in training;
- ``held-out options``: game parameters outside the training range (e.g. other listing prices).

Within a condition every line plays the same games: the same seeds give the same deal, seats and opponent
(``RolloutEngine.play_seeds``), and each policy samples from the same torch seed, so two identical
checkpoints play identical games. The seeds are above ``HELD_OUT_SEEDS``: training never plays them.

Per (condition, role, line): success, reward, deal rate (games with an agreement metric) and invalid-action
rate, with 95% intervals (Wilson for rates, mean ± 1.96·s/√n for reward). Per (condition, role) and pair of
lines: the mean paired difference d̄ = mean_i (x_a,i − x_b,i) over the same n games and its standard error
sd(d)/√n, which is much smaller than the unpaired one when the games' difficulty varies (it cancels).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from maro_lightning import envs
from maro_lightning.metrics import Z_95
from maro_lightning.metrics import wilson_interval
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import GenerationBackend
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout import game_seeds
from maro_lightning.seeding import seeded

TRAIN, HELD_OUT_OPPONENT, HELD_OUT_OPTIONS = "train", "held-out opponent", "held-out options"
DEFAULT_SEED = 20_261_130
METRICS = ("reward", "success", "deal")  # compared pairwise


@dataclass(frozen=True)
class Condition:
    """A game against one scripted opponent, with the learner's seats and how it relates to training."""

    game: str
    opponent: str
    split: str = TRAIN
    options: dict[str, Any] = field(default_factory=dict)
    learner_players: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        suffix = " (held-out options)" if self.split == HELD_OUT_OPTIONS else ""
        return f"{self.game} vs {self.opponent}{suffix}"

    def spec(self, teacher: str | None = None) -> GameSpec:
        """The one-game rollout mix of this condition; ``teacher`` plays the learner's seat (a scripted line)."""
        learners = None if self.learner_players is None else list(self.learner_players)
        return GameSpec(
            self.game, options=dict(self.options), opponents={self.opponent: 1.0}, learner_players=learners,
            teacher=teacher,
        )  # fmt: skip


@dataclass
class Line:
    """Who plays the learner's seat: a policy (``backend`` with its tokenizer and decoding) or a scripted
    ``agent``."""

    name: str
    backend: GenerationBackend | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    sampling: SamplingConfig | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        if (self.backend is None) == (self.agent is None):
            raise ValueError(f"line {self.name!r}: give either a policy backend or a scripted agent")


@dataclass(frozen=True)
class Record:
    """The learner of one game: its role, outcome, agreement (None when the game has none) and turns."""

    role: str
    reward: float
    success: bool
    deal: float | None
    invalid: int
    turns: int


def teacher_lines(specs: list[GameSpec]) -> list[Line]:
    """A scripted line for each teacher of a training mix (the agents its warm start cloned)."""
    return [Line(f"{name} (teacher)", agent=name) for name in sorted({s.teacher for s in specs if s.teacher})]


def default_conditions(
    specs: list[GameSpec],
    opponents: dict[str, list[str]] | None = None,
    held_out_options: dict[str, dict[str, Any]] | None = None,
) -> list[Condition]:
    """The conditions of a training mix: each scripted opponent it trained against (``train``), every other
    scripted agent of the game (``held-out opponent``; or only those in ``opponents[game]``), and with
    ``held_out_options[game]`` the training opponents again under those options (``held-out options``)."""
    conditions = []
    for spec in specs:
        learners = None if spec.learner_players is None else tuple(spec.learner_players)
        scripted = envs.agent_names(spec.name)
        trained = [name for name, weight in spec.opponents.items() if weight > 0 and name in scripted]
        chosen = (opponents or {}).get(spec.name) or scripted
        unknown = sorted(set(chosen) - set(scripted))
        if unknown:
            raise ValueError(f"{spec.name}: unknown scripted opponents {unknown}; choose from {', '.join(scripted)}")
        for opponent in chosen:
            split = TRAIN if opponent in trained else HELD_OUT_OPPONENT
            conditions.append(Condition(spec.name, opponent, split, dict(spec.options), learners))
        extra = (held_out_options or {}).get(spec.name)
        if extra:
            options = {**spec.options, **extra}
            for opponent in [o for o in chosen if o in trained] or chosen:
                conditions.append(Condition(spec.name, opponent, HELD_OUT_OPTIONS, options, learners))
    return conditions


def evaluate(
    lines: list[Line],
    conditions: list[Condition],
    episodes: int = 400,
    seed: int = DEFAULT_SEED,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Play ``episodes`` games of every condition with every line (the same games for all lines)."""
    if not lines or not conditions or episodes < 1:
        raise ValueError("the evaluation needs at least one line, one condition and episodes >= 1")
    names = [line.name for line in lines]
    if len(set(names)) != len(names):
        raise ValueError(f"line names must differ, got {names}")
    tokenizer = next((line.tokenizer for line in lines if line.tokenizer is not None), None)
    if tokenizer is None:
        raise ValueError("the evaluation needs at least one policy line (a checkpoint)")
    records: dict[str, dict[str, list[Record]]] = {}
    for condition in conditions:
        seeds = condition_seeds(seed, condition, episodes)
        records[condition.name] = {}
        for line in lines:
            start = time.perf_counter()
            games = _play(line, condition, seeds, tokenizer, torch_seed=_condition_seed(seed, condition))
            records[condition.name][line.name] = [_record(game) for game in games]
            if progress is not None:
                seconds = time.perf_counter() - start
                progress(f"{condition.name}: {line.name} played {len(games)} games in {seconds:.1f} s")
    decoding = {line.name: None if line.sampling is None else line.sampling.temperature for line in lines}
    return Report(conditions, names, records, episodes, seed, decoding)


def condition_seeds(seed: int, condition: Condition, episodes: int) -> list[int]:
    """The held-out game seeds of ``condition`` (all above ``HELD_OUT_SEEDS``), the same for every line."""
    return game_seeds(_condition_seed(seed, condition), episodes, held_out=True)


def _condition_seed(seed: int, condition: Condition) -> int:
    return zlib.crc32(f"{seed}/{condition.name}".encode())  # CRC-32, not hash(): stable across processes


def _play(
    line: Line, condition: Condition, seeds: list[int], tokenizer: PreTrainedTokenizerBase, torch_seed: int
) -> list[PlayedGame]:
    if line.agent is not None:  # a scripted agent in the learner's seat, through the engine's teacher path
        engine = RolloutEngine([condition.spec(teacher=line.agent)], tokenizer, SamplingConfig())
        return engine.play_seeds(seeds, policy=_NoModel(), imitate=True)
    engine = RolloutEngine([condition.spec()], line.tokenizer, line.sampling)
    device = _device_of(line.backend)
    with seeded(torch_seed, device):
        return engine.play_seeds(seeds, policy=line.backend)


def _record(game: PlayedGame) -> Record:
    (player,) = game.policy_players  # the opponent seats are scripted: one learner per game
    outcome = game.env.outcome()
    metric = game.env.agreement_metric
    turns = [turn for turn in game.env.turns if turn.player == player]
    return Record(
        role=outcome.roles[player],
        reward=float(outcome.rewards[player]),
        success=bool(outcome.success[player]),
        deal=None if metric is None else float(outcome.metrics[metric]),
        invalid=sum(not turn.valid for turn in turns),
        turns=len(turns),
    )


class _NoModel:
    """The policy backend of a scripted line: the teacher answers every learner turn, so nothing generates."""

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        raise RuntimeError("a scripted line asked its model for text")


def _device_of(backend: GenerationBackend) -> torch.device:
    model = getattr(backend, "model", None)
    return next(model.parameters()).device if model is not None else torch.device("cpu")


@dataclass
class Report:
    """Per-game records of every (condition, line), and the tables computed from them."""

    conditions: list[Condition]
    lines: list[str]
    records: dict[str, dict[str, list[Record]]]  # condition name -> line name -> one record per game
    episodes: int
    seed: int
    decoding: dict[str, float | None] = field(default_factory=dict)  # line -> sampling temperature (0: greedy)

    def roles(self, condition: Condition) -> list[str]:
        return sorted({r.role for r in next(iter(self.records[condition.name].values()))})

    def _games(self, condition: Condition, line: str, role: str) -> list[Record]:
        return [r for r in self.records[condition.name][line] if r.role == role]

    def rows(self) -> list[dict[str, Any]]:
        """One row per (condition, role, line): n, reward, success, deal rate, invalid rate, with 95% bounds."""
        rows = []
        for condition in self.conditions:
            for role in self.roles(condition):
                for line in self.lines:
                    games = self._games(condition, line, role)
                    rows.append(_condition_fields(condition, role) | {"line": line} | _summary(games))
        return rows

    def pairs(self) -> list[dict[str, Any]]:
        """Per (condition, role), every later line minus every earlier one, game by game: Δ, SE and Δ/SE."""
        rows = []
        for condition in self.conditions:
            for role in self.roles(condition):
                for j, line_a in enumerate(self.lines):
                    for line_b in self.lines[:j]:
                        a, b = self._games(condition, line_a, role), self._games(condition, line_b, role)
                        fields = _condition_fields(condition, role) | {"line": line_a, "baseline": line_b}
                        rows.append(fields | _paired(a, b))
        return rows

    def pooled_pairs(self) -> list[dict[str, Any]]:
        """Per (game, split, role) with more than one opponent, the paired differences over the games of all its
        conditions together (each game still paired with itself): e.g. the held-out ladder as one number a role."""
        groups: dict[tuple[str, str, str], list[Condition]] = {}
        for condition in self.conditions:
            for role in self.roles(condition):
                groups.setdefault((condition.game, condition.split, role), []).append(condition)
        rows = []
        for (game, split, role), conditions in groups.items():
            if len(conditions) < 2:
                continue  # its one condition's pairs say it already
            fields = {"game": game, "split": split, "opponents": "+".join(c.opponent for c in conditions), "role": role}
            for j, line_a in enumerate(self.lines):
                for line_b in self.lines[:j]:
                    a = [r for c in conditions for r in self._games(c, line_a, role)]
                    b = [r for c in conditions for r in self._games(c, line_b, role)]
                    rows.append(fields | {"line": line_a, "baseline": line_b} | _paired(a, b))
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "seed": self.seed,
            "lines": self.lines,
            "decoding": self.decoding,
            "conditions": [dataclasses.asdict(c) | {"name": c.name} for c in self.conditions],
            "rows": self.rows(),
            "pairs": self.pairs(),
            "pooled_pairs": self.pooled_pairs(),
        }

    def save(self, directory: str | Path, stem: str = "evaluation") -> list[Path]:
        """``{stem}.csv`` (the rows), ``{stem}_pairs.csv`` (the paired differences) and ``{stem}.json`` (both,
        with the conditions and seed) in ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{stem}.csv", directory / f"{stem}_pairs.csv", directory / f"{stem}.json"]
        write_csv(paths[0], self.rows())
        write_csv(paths[1], self.pairs())
        paths[2].write_text(json.dumps(self.to_json(), indent=1, default=str) + "\n")
        return paths

    def format(self) -> str:
        """The results and the paired differences as two plain-text tables."""
        head = f"{'condition':<40} {'split':<17} {'role':<8} {'line':<14} {'n':>4}"
        out = [
            f"Paired evaluation: {self.episodes} held-out games per condition (seed {self.seed}); 95% intervals",
            f"{head} {'reward [95%]':>22} {'success [95%]':>22} {'deal':>6} {'invalid':>8}",
        ]
        for row in self.rows():
            deal = "-" if row["deal"] is None else f"{row['deal']:.3f}"
            out.append(
                f"{row['condition']:<40} {row['split']:<17} {row['role']:<8} {row['line']:<14} {row['n']:>4} "
                f"{_interval(row, 'reward'):>22} {_interval(row, 'success'):>22} {deal:>6} {row['invalid_rate']:>8.3f}"
            )
        out += ["", "Paired differences (line − baseline on the same games): Δ ± SE (Δ/SE)"]
        out.append(f"{'condition':<40} {'role':<8} {'line − baseline':<31} {'reward':>24} {'success':>24}")
        for row in self.pairs():
            versus = f"{row['line']} − {row['baseline']}"
            out.append(
                f"{row['condition']:<40} {row['role']:<8} {versus:<31} {_delta(row, 'reward'):>24} "
                f"{_delta(row, 'success'):>24}"
            )
        out += _format_pooled(self.pooled_pairs())
        return "\n".join(out)


def _format_pooled(rows: list[dict[str, Any]]) -> list[str]:
    """The table of :meth:`Report.pooled_pairs` (no lines when nothing was pooled)."""
    if not rows:
        return []
    out = ["", "Pooled over the opponents of a split (every game paired with itself): Δ ± SE (Δ/SE)"]
    out.append(f"{'game, split: opponents':<40} {'role':<8} {'line − baseline':<31} {'reward':>24} {'deal':>24}")
    for row in rows:
        where, versus = f"{row['game']}, {row['split']}: {row['opponents']}", f"{row['line']} − {row['baseline']}"
        out.append(f"{where:<40} {row['role']:<8} {versus:<31} {_delta(row, 'reward'):>24} {_delta(row, 'deal'):>24}")
    return out


def _condition_fields(condition: Condition, role: str) -> dict[str, Any]:
    return {"condition": condition.name, "split": condition.split, "game": condition.game,
            "opponent": condition.opponent, "role": role}  # fmt: skip


def _summary(games: list[Record]) -> dict[str, Any]:
    n = len(games)
    rewards = torch.tensor([g.reward for g in games], dtype=torch.float64)
    mean = rewards.mean().item() if n else math.nan
    half = Z_95 * rewards.std().item() / math.sqrt(n) if n > 1 else 0.0
    wins = sum(g.success for g in games)
    low, high = wilson_interval(float(wins), float(n))
    deals = [g.deal for g in games if g.deal is not None]
    deal_low, deal_high = wilson_interval(float(sum(deals)), float(len(deals)))
    turns = sum(g.turns for g in games)
    return {
        "n": n,
        "reward": mean,
        "reward_low": mean - half,
        "reward_high": mean + half,
        "success": wins / n if n else math.nan,
        "success_low": low.item(),
        "success_high": high.item(),
        "deal": sum(deals) / len(deals) if deals else None,
        "deal_low": deal_low.item() if deals else None,
        "deal_high": deal_high.item() if deals else None,
        "invalid_rate": sum(g.invalid for g in games) / turns if turns else 0.0,
    }


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of ``a[i] − b[i]`` and its standard error sd(d)/√n (0 for n < 2 or identical differences)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired samples need the same, non-zero length; got {len(a)} and {len(b)}")
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    se = d.std().item() / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return d.mean().item(), se


def _paired(a: list[Record], b: list[Record]) -> dict[str, Any]:
    fields: dict[str, Any] = {"n": len(a)}
    for metric in METRICS:
        xa, xb = [_value(r, metric) for r in a], [_value(r, metric) for r in b]
        if not a or xa[0] is None:
            fields |= {f"d_{metric}": None, f"se_{metric}": None, f"z_{metric}": None}
            continue
        diff, se = paired_difference(xa, xb)
        z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        fields |= {f"d_{metric}": diff, f"se_{metric}": se, f"z_{metric}": z}
    return fields


def _value(record: Record, metric: str) -> float | None:
    value = getattr(record, metric)
    return None if value is None else float(value)


def _interval(row: dict[str, Any], metric: str) -> str:
    return f"{row[metric]:.3f} [{row[metric + '_low']:.3f}, {row[metric + '_high']:.3f}]"


def _delta(row: dict[str, Any], metric: str) -> str:
    if row[f"d_{metric}"] is None:
        return "-"
    return f"{row[f'd_{metric}']:+.3f} ± {row[f'se_{metric}']:.3f} ({row[f'z_{metric}']:+.1f})"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys) as CSV at ``path``; an empty file for no rows."""
    with path.open("w", newline="") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
