"""The simulation callback (docs/design.md#data-flow): plays rollout rounds between optimizer steps, feeds the buffer.

A round: the :class:`~maro_lightning.rollout.RolloutEngine` plays ``games_per_round`` games of the mix on
this rank (its own seeds), the module scores them in one no-grad forward, credit is assigned over the
round of every rank, and the samples go to :class:`~maro_lightning.data.TrajectoryDataModule`. The first
``imitation_rounds`` rounds are a behaviour-cloning warm start: each game's scripted ``teacher`` plays the
learner's seat and its turns are trained on with advantage 1 (docs/design.md#tiny-model: the tiny model has no RL signal
before it writes valid actions). The frozen opponent is a snapshot of the policy, refreshed every
``opponent_refresh`` rounds and at the end of the warm start (when the KL reference is taken too).
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_warn

from maro_lightning import checkpoints
from maro_lightning import distributed
from maro_lightning import envs
from maro_lightning import fsdp
from maro_lightning.credit import BehaviourSample
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditConfig
from maro_lightning.data import TrajectoryDataModule
from maro_lightning.errors import ConfigError
from maro_lightning.evaluation import game_roles
from maro_lightning.metrics import OutcomeMetric
from maro_lightning.metrics import explained_variance
from maro_lightning.models import unwritable_actions
from maro_lightning.module import OPPONENT
from maro_lightning.module import REFERENCE
from maro_lightning.module import MaroModule
from maro_lightning.paired import DEFAULT_SEED
from maro_lightning.paired import Line
from maro_lightning.paired import Report
from maro_lightning.paired import default_conditions
from maro_lightning.paired import evaluate
from maro_lightning.paired import teacher_lines
from maro_lightning.rollout import FROZEN
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import GenerationBackend
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout.engine import RolloutInterrupted
from maro_lightning.rollout.league import League
from maro_lightning.rollout.league import LeagueConfig
from maro_lightning.seeding import root_seed
from maro_lightning.seeding import seeded
from maro_lightning.signals import RunStopped
from maro_lightning.signals import StopSignals
from maro_lightning.signals import signal_name

WARM_START_CHECKPOINT = "warm_start.ckpt"  # the policy at the end of the warm start, beside last.ckpt


def default_games() -> list[GameSpec]:
    """Bazaar in compact form against the linear seller/buyer, which also teaches the warm start."""
    return [GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"linear": 1.0}, teacher="linear")]


class SimulationCallback(L.Callback):
    """Plays a round of games whenever the buffer's batches are used up (or every ``rollout_every`` steps).

    Args:
        games: the game mix: games, options, opponent mix per game, teachers for the warm start.
        games_per_round: games each rank plays per round.
        rollout_every: optimizer steps between rounds; None: a new round as soon as the data module's plan
            (``passes`` over the round) is used up, on any rank.
        imitation_rounds: warm-start rounds of behaviour cloning on the games' teachers (0: none).
        opponent_refresh: rounds between the policy's joining the league of frozen opponents.
        league: how many past policies the frozen seats play, and how a game draws one (default: one, the newest
            snapshot). Scripted anchors are the other names of a game's ``opponents`` mix.
        rl_lr: the learning rate from the end of the warm start on (docs/design.md#tiny-model: cloning at 3e-3, policy
            gradient needs about 1e-4 or the action format drifts); None keeps the optimizer's. Schedulers
            continue from it (their base rates are set to it too).
        seed: the root of every round's seed (games, seats, scripted agents and sampling), per rank; None: the
            run's ``seed_everything`` value.
    """

    def __init__(
        self,
        games: list[GameSpec] | None = None,
        games_per_round: int = 64,
        rollout_every: int | None = None,
        imitation_rounds: int = 0,
        opponent_refresh: int = 10,
        rl_lr: float | None = None,
        seed: int | None = None,
        league: LeagueConfig | None = None,
    ) -> None:
        self.games = games or default_games()
        if games_per_round < 1 or opponent_refresh < 1 or imitation_rounds < 0:
            raise ValueError("need games_per_round >= 1, opponent_refresh >= 1, imitation_rounds >= 0")
        if rollout_every is not None and rollout_every < 1:
            raise ValueError(f"rollout_every must be >= 1 optimizer steps or None, got {rollout_every}")
        if imitation_rounds and any(spec.teacher is None for spec in self.games):
            raise ValueError(f"imitation_rounds={imitation_rounds} needs a teacher for every game")
        self.games_per_round, self.rollout_every = games_per_round, rollout_every
        self.imitation_rounds, self.opponent_refresh, self.seed = imitation_rounds, opponent_refresh, seed
        self.rl_lr = rl_lr
        self.uses_opponent = any(spec.opponents.get(FROZEN, 0) > 0 for spec in self.games)
        self.league = League(league)
        self.rounds = 0  # rounds played (state)
        self.last_step = 0  # global step of the last round (state)
        self.imitation_credit = CreditAssigner(CreditConfig(mode="imitation", weighting="none"))
        keys = sorted({f"{s.name}/{role}" for s in self.games for role in game_roles(s.name, s.options)})
        self.outcomes = OutcomeMetric(keys)
        self.engine: RolloutEngine | None = None
        self.signals = StopSignals()
        self._round_end = time.perf_counter()

    def check_compatible(self, module: MaroModule, datamodule: TrajectoryDataModule) -> None:
        """The simulation and the other pieces agree: no replay_dir (replay trains without simulating), and a
        tiny word vocabulary built from every simulated game (other words are ``<unk>``).

        Raises:
            ConfigError: naming the keys that disagree.
        """
        if getattr(datamodule, "replay_dir", None) is not None:
            raise ConfigError(
                f"data.replay_dir={datamodule.replay_dir} and a SimulationCallback are both configured: a replay "
                "run trains on the saved rounds only; remove one of them"
            )
        tiny = module.tiny_config
        missing = sorted({s.name for s in self.games} - set(tiny.corpus_games))
        if module.policy_name is None and tiny.tokenizer == "word" and missing:
            raise ConfigError(
                f"model.tiny.corpus_games={list(tiny.corpus_games)} does not cover the simulated game(s) "
                f"{missing}: the word vocabulary would turn their actions into <unk>; add them to corpus_games"
            )

    # ------------------------------------------------------------------------------------------- hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, MaroModule):
            raise TypeError(f"SimulationCallback needs a MaroModule, got {type(pl_module).__name__}")
        if not isinstance(trainer.datamodule, TrajectoryDataModule):
            raise TypeError(
                "SimulationCallback feeds a TrajectoryDataModule: pass one as trainer.fit(..., datamodule=...), got "
                f"{type(trainer.datamodule).__name__}"
            )
        self.check_compatible(pl_module, trainer.datamodule)
        if stage == "fit" and self.uses_opponent:
            pl_module.add_snapshot(OPPONENT)  # before configure_model: made there, restored by a resume
        if isinstance(trainer.strategy, FSDPStrategy):
            raise ConfigError(
                "trainer.strategy FSDPStrategy (FSDP1) is not supported: shard with FSDP2 through "
                "lightning.pytorch.strategies.ModelParallelStrategy (data_parallel_size: <processes>, "
                "tensor_parallel_size: 1), as configs/gpu_fsdp.yaml does"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: MaroModule) -> None:
        uncovered = unwritable_actions(pl_module.tokenizer, self.games)
        if uncovered:
            raise ConfigError(f"the tokenizer cannot write the actions of the trained games: {uncovered}")

    def on_train_start(self, trainer: L.Trainer, pl_module: MaroModule) -> None:
        self.outcomes.to(pl_module.device)
        self.signals.install()  # after Lightning's own handlers (set up once on_fit_start has run): ours chain to them
        if trainer.datamodule.needs_round:  # not after a resume: the checkpoint holds the current round
            self._play_or_stop(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: MaroModule, *args: Any) -> None:
        self._stop_if_signalled(trainer)  # a signal during the step: stop before the next round
        if self._due(trainer):
            self._play_or_stop(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        refresh_last_checkpoint(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.signals.uninstall()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.signals.uninstall()  # Lightning skips teardown hooks when the run ends by an exception

    def _play_or_stop(self, trainer: L.Trainer, module: MaroModule) -> None:
        """Play a round; a stop signal gives it up between sweeps (a resume replays it with the same seeds)."""
        try:
            self.play_round(trainer, module)
        except RolloutInterrupted:
            pass
        self._stop_if_signalled(trainer)

    def _stop_if_signalled(self, trainer: L.Trainer) -> None:
        """After SIGTERM/SIGINT: save a checkpoint of the state between rounds and end the run."""
        signum = self.signals.received
        if signum is None:
            return
        path = checkpoint_dir(trainer) / "interrupted.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint: a run resumes from it
        message = (
            f"stopped by {signal_name(signum)} at global step {trainer.global_step}; saved {path} "
            f"(resume: maro fit -c CONFIG --ckpt_path {path})"
        )
        rank_zero_warn(message)
        raise RunStopped(128 + signum)

    def _due(self, trainer: L.Trainer) -> bool:
        if self.rollout_every is not None:
            return trainer.global_step - self.last_step >= self.rollout_every  # not %: accumulation repeats steps
        return trainer.strategy.reduce_boolean_decision(trainer.datamodule.needs_round, all=False)  # any rank

    # ------------------------------------------------------------------------------------------- a round
    def play_round(self, trainer: L.Trainer, module: MaroModule) -> dict[str, float]:
        """Play, score and credit one round, push it to the data module; returns the round's metrics."""
        imitate = self.rounds < self.imitation_rounds
        self._refresh_snapshots(trainer, module)
        train_seconds = time.perf_counter() - self._round_end
        start = time.perf_counter()
        engine = self._engine(module)
        seed = self.round_seed(trainer.global_rank)
        opponents = _LeaguePool(self.league, module) if self.uses_opponent else None
        with seeded(seed, module.device), fsdp.full_parameters(module):  # sharded: gathered once for the round
            games = engine.play(self.games_per_round, seed, module.policy_backend(), opponents, imitate=imitate)
        played = time.perf_counter()
        self._record_league(games)
        samples = module.credit_round(
            module.score(games, forward=not imitate), self.imitation_credit if imitate else None
        )
        trainer.datamodule.push(samples)  # an unscored (cloning) round has no old or reference log-probs: ratio 1
        self.rounds, self.last_step = self.rounds + 1, trainer.global_step
        self._round_end = time.perf_counter()
        timing = {"rollout/play_seconds": played - start, "rollout/score_seconds": self._round_end - played}
        metrics = (
            timing | {"rollout/train_seconds": train_seconds} | self._metrics(games, samples, engine, imitate, module)
        )
        _log_once(trainer, metrics)
        return metrics

    def round_seed(self, rank: int) -> int:
        """The seed of the coming round on ``rank``: distinct per (seed, rank, round), and reproducible."""
        return ((root_seed(self.seed) * 1_000_003 + rank) * 1_000_033 + self.rounds) % 2**31

    def _engine(self, module: MaroModule) -> RolloutEngine:
        if self.engine is None:
            self.engine = RolloutEngine(self.games, module.tokenizer, module.sampling, should_stop=self.signals)
        return self.engine

    def _refresh_snapshots(self, trainer: L.Trainer, module: MaroModule) -> None:
        """Before a round: the first RL round after a warm start anchors the KL reference to the cloned policy
        (docs/design.md#tiny-model) and switches to ``rl_lr``; the policy joins the league of frozen opponents at
        the first round, at the end of the warm start and every ``opponent_refresh`` rounds."""
        warm_start_over = self.imitation_rounds > 0 and self.rounds == self.imitation_rounds
        if warm_start_over and trainer.checkpoint_callback is not None:  # beside last.ckpt, kept for evaluation
            trainer.save_checkpoint(checkpoint_dir(trainer) / WARM_START_CHECKPOINT, weights_only=False)
        if warm_start_over and REFERENCE in module.snapshots:
            module.refresh_snapshot(REFERENCE)
        if warm_start_over and self.rl_lr is not None:
            _set_learning_rate(trainer, self.rl_lr)
        refresh = not self.league.members or warm_start_over or self.rounds % self.opponent_refresh == 0
        if self.uses_opponent and refresh:
            self.league.add(module.policy_weights(), joined=self.rounds)

    def _record_league(self, games: list[PlayedGame]) -> None:
        """The learner's success against the member it met, for PFSP; over the games of every rank, so that the
        league draws alike everywhere and a resume from rank 0's checkpoint is exact."""
        results = [
            (game.member, sum(game.env.outcome().success[p] for p in game.policy_players) / len(game.policy_players))
            for game in games
            if game.member is not None
        ]
        if distributed.world_size() > 1:
            results = [result for part in distributed.all_gather_object(results) for result in part]
        for member, success in results:
            self.league.record(member, success)

    def _metrics(
        self,
        games: list[PlayedGame],
        samples: list[BehaviourSample],
        engine: RolloutEngine,
        imitate: bool,
        module: MaroModule,
    ) -> dict[str, float]:
        """The round's numbers: throughput, invalid actions, per-role outcomes (synced over ranks), credit."""
        keys, rewards, success = [], [], []
        for game in games:
            outcome = game.env.outcome()
            for player in sorted(game.policy_players):
                keys.append(f"{game.env.name}/{outcome.roles[player]}")
                rewards.append(outcome.rewards[player])
                success.append(outcome.success[player])
        self.outcomes.update(keys, torch.tensor(rewards), torch.tensor(success))
        per_role = {f"rollout/{k}": float(v) for k, v in self.outcomes.compute().items() if not k.endswith("/n")}
        self.outcomes.reset()
        invalid = sum(not s.valid for s in samples) / len(samples)
        return (
            per_role
            | ({} if imitate else utility_explained_variance(samples))
            | {f"credit/{k}": v for k, v in module.credit.metrics().items()}
            | self.league.metrics()
            | {
                "rollout/round": float(self.rounds),
                "rollout/imitation": float(imitate),
                "rollout/episodes": float(len(games)),
                "rollout/behaviours": float(len(samples)),
                "rollout/invalid_rate": invalid,
                "rollout/generated_tokens_per_second": engine.stats.tokens_per_second,
            }
        )

    # -------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Rounds played and the step of the last; also the game mix (``maro play`` shows a checkpoint's policy
        the game as it was trained on it; ``maro evaluate`` tells training opponents from held-out ones)."""
        games = [dataclasses.asdict(spec) for spec in self.games]
        return {"rounds": self.rounds, "last_step": self.last_step, "games": games, "league": self.league.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trained = sorted(checkpoints.trained_games({"callbacks": {"simulation": state}}))
        playing = sorted({spec.name for spec in self.games})
        if trained and trained != playing:
            raise ConfigError(
                f"the checkpoint was trained on {', '.join(trained)}, but the SimulationCallback plays "
                f"{', '.join(playing)}: a resumed run must play the games it was trained on"
            )
        self.rounds, self.last_step = state["rounds"], state["last_step"]
        if "league" in state:
            self.league.load_state_dict(state["league"])


class _LeaguePool:
    """The engine's pool of frozen opponents: the league's members, played through the module's opponent snapshot."""

    def __init__(self, league: League, module: MaroModule) -> None:
        self.league, self.module = league, module

    def sample(self, rng: random.Random) -> int:
        return self.league.sample(rng)

    def backend(self, member: int) -> GenerationBackend:
        return self.module.policy_backend(model=self.league.load(member, self.module.snapshot(OPPONENT)))


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where the run's checkpoints go: the ModelCheckpoint's folder, else ``checkpoints/`` in the log folder."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"


def utility_explained_variance(samples: list[BehaviourSample]) -> dict[str, float]:
    """Per (game, role), the share of the outcome's variance that the utility head's V and Q explained
    (:func:`~maro_lightning.metrics.explained_variance`), measured on a round before it is trained on it."""
    groups: dict[str, list[BehaviourSample]] = {}
    for sample in samples:
        groups.setdefault(f"{sample.game}/{sample.role}", []).append(sample)
    metrics = {}
    for key, group in sorted(groups.items()):
        values, q_values, targets = (
            torch.tensor([getattr(s, name) for s in group], dtype=torch.float64)
            for name in ("value", "q_value", "utility_target")
        )
        explained = explained_variance(values, q_values, targets)
        if explained is not None:
            metrics[f"utility/{key}/explained_variance"] = float(explained)
    return metrics


def refresh_last_checkpoint(trainer: L.Trainer) -> None:
    """``last.ckpt`` at the final step. Lightning's ModelCheckpoint writes it with every periodic save, and at the
    end of training only when it never wrote one: a run whose ``max_steps`` is not a multiple of
    ``every_n_train_steps`` kept a ``last.ckpt`` of an earlier step. Rank 0 reads the step of the file (mapped,
    not read) and every rank saves when it is stale."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path", "") if getattr(callback, "save_last", False) else ""
    stale = bool(path) and trainer.is_global_zero and Path(path).is_file()
    stale = stale and checkpoints.load(path, mmap=True)["global_step"] != trainer.global_step
    if trainer.strategy.broadcast(stale, src=0):
        trainer.save_checkpoint(path, weights_only=False)  # a full checkpoint: a run resumes from it


def _log_once(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """One row per round in the loggers (``LightningModule.log`` would repeat the value at every step until
    the next round), and the values in ``callback_metrics`` for the progress bar and checkpoint monitors."""
    trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)


def _set_learning_rate(trainer: L.Trainer, lr: float) -> None:
    """Every optimizer's rate to ``lr``, and every scheduler's base rate (they scale from it)."""
    for optimizer in trainer.optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr
    for config in trainer.lr_scheduler_configs:
        config.scheduler.base_lrs = [lr] * len(config.scheduler.base_lrs)


class MaroProgressBar(TQDMProgressBar):
    """The progress bar of ``maro fit``: optimizer steps out of ``max_steps`` (a run is one endless epoch, so
    an epoch count says nothing), the phase (cloning or RL), and the last round's reward and success per role."""

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        if trainer.max_steps > 0:
            self.train_progress_bar.reset(total=trainer.max_steps * trainer.accumulate_grad_batches)
            self.train_progress_bar.initial = trainer.global_step * trainer.accumulate_grad_batches
        self.train_progress_bar.set_description("steps")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        metrics = trainer.callback_metrics
        if "rollout/imitation" in metrics:
            items["phase"] = "clone" if metrics["rollout/imitation"].item() else "RL"
        for key, value in metrics.items():
            if key.startswith("rollout/") and key.endswith(("/reward", "/success")):
                items[key.removeprefix("rollout/")] = round(value.item(), 3)
        return items


class EvaluationReport(L.Callback):
    """At the end of ``fit``, the run's story: the paired evaluation (:mod:`maro_lightning.paired`) of the teachers,
    the warm start and the final policy on the same held-out games, the training curves as PNG plots in the log
    folder, and where the checkpoint is with the ``maro play`` line to watch it.

    Args:
        episodes: games per condition for every line (>= 400 to back a claim).
        temperature: the policies' decoding in the evaluation; None: their training sampling; 0: greedy.
        opponents: per game, the scripted opponents to evaluate against; None (or a game left out): every one.
        held_out_options: per game, env options of the held-out-options conditions (e.g. other listing prices).
        seed: the evaluation's root seed (the same for every run, so runs are compared on the same games).
    """

    def __init__(
        self,
        episodes: int = 400,
        temperature: float | None = None,
        opponents: dict[str, list[str]] | None = None,
        held_out_options: dict[str, dict[str, Any]] | None = None,
        seed: int = DEFAULT_SEED,
    ) -> None:
        if episodes < 1 or (temperature is not None and temperature < 0):
            raise ValueError(f"need episodes >= 1 and temperature >= 0 or None; got {episodes}, {temperature}")
        self.episodes, self.temperature, self.seed = episodes, temperature, seed
        self.opponents, self.held_out_options = opponents, held_out_options
        self.report: Report | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if fsdp.data_parallel_mesh(trainer) is not None:
            raise ConfigError(
                "EvaluationReport does not run under FSDP (it plays on rank 0 alone, and a sharded policy plays on "
                "every rank): remove it and evaluate the saved checkpoint with `maro evaluate`"
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: MaroModule) -> None:
        if not trainer.is_global_zero:  # the games and files of one process suffice; on_fit_end is not collective
            return
        simulation = next((cb for cb in trainer.callbacks if isinstance(cb, SimulationCallback)), None)
        if simulation is None:
            raise TypeError("EvaluationReport evaluates the games of a SimulationCallback; the trainer has none")
        directory = checkpoint_dir(trainer)
        conditions = default_conditions(simulation.games, self.opponents, self.held_out_options)
        lines = self._lines(pl_module, directory, simulation.games)
        self.report = evaluate(lines, conditions, self.episodes, self.seed, print)
        paths = self.report.save(directory)
        print(self.report.format())
        print("results: " + ", ".join(str(p) for p in paths))
        for logger in trainer.loggers:
            logger.save()  # metrics.csv is otherwise flushed only every 100 steps
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if (log_dir / "metrics.csv").exists():
            from maro_lightning.plots import plot_run  # matplotlib: only where a run draws its plots

            print("plots: " + ", ".join(str(p) for p in plot_run(log_dir / "metrics.csv", log_dir)))
        _print_watch_line(simulation.games[0], directory / "last.ckpt")

    def _lines(self, module: MaroModule, directory: Path, games: list[GameSpec]) -> list[Line]:
        """The teachers (scripted), the warm start (when this run saved one) and the final policy."""
        sampling = module.sampling
        if self.temperature is not None:
            sampling = dataclasses.replace(sampling, temperature=self.temperature)
        lines = teacher_lines(games)
        warm_start = directory / WARM_START_CHECKPOINT
        if warm_start.exists():
            policy = module.policy_from_checkpoint(warm_start)
            lines.append(Line("warm_start", module.policy_backend(model=policy), module.tokenizer, sampling))
        lines.append(Line("final", module.policy_backend(), module.tokenizer, sampling))
        return lines


def _print_watch_line(spec: GameSpec, checkpoint: Path) -> None:
    """Where the final checkpoint is, and the ``maro play`` line that shows its policy in a game."""
    env = envs.make(spec.name, **spec.options)
    env.reset(0)
    learner = (spec.learner_players or sorted(env.roles))[0]
    scripted = [name for name in spec.opponents if name in envs.agent_names(spec.name)] or envs.agent_names(spec.name)
    seats = ",".join("policy" if player == learner else scripted[0] for player in sorted(env.roles))
    print(f"checkpoint: {checkpoint}")
    print(f"watch it play: maro play --game {spec.name} --seats {seats} --seed 1 --checkpoint {checkpoint}")
