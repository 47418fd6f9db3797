"""The ``maro`` console script.

    maro fit [-c configs/bazaar.yaml] [--trainer.max_steps 100 ...]   train (LightningCLI; no -c: the demo)
    maro validate|test -c CONFIG --ckpt_path CKPT                       play the evaluation ladder
    maro play --game bazaar --seats policy,linear --checkpoint CKPT     watch games, turn by turn
    maro evaluate warm_start.ckpt last.ckpt                             paired evaluation on held-out games
    maro transfer --checkpoint CKPT --tasks gsm8k [--base MODEL]        standard benchmarks (lm-eval)

``fit``/``validate``/``test`` are LightningCLI subcommands: ``-c`` YAML files, dotted overrides,
``--print_config``. ``play``, ``evaluate`` and ``transfer`` have their own small parsers: seats are scripted agents
or ``policy`` (a trained policy from ``--checkpoint``).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maro_lightning import envs
from maro_lightning import transfer


def _demo_config() -> Path:
    """configs/demo.yaml: beside the package when installed from a wheel (package data ``maro_lightning.configs``),
    at the top of the source tree in a checkout or an editable install."""
    installed = Path(__file__).resolve().parent / "configs" / "demo.yaml"
    return installed if installed.is_file() else Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


DEMO_CONFIG = _demo_config()
LIGHTNING_COMMANDS = ("fit", "validate", "test")
POLICY_SEAT = "policy"


def main(args: Sequence[str] | None = None) -> int:
    """Entry point; ``args`` defaults to ``sys.argv[1:]`` (a list, so that tests can call it)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] and argv[0] in LIGHTNING_COMMANDS:
        return _lightning(argv, args)
    parser = _parser()
    ns = parser.parse_args(argv)
    try:
        return ns.run(ns)
    except (ValueError, TypeError) as err:  # bad names and options: one clear line, no traceback
        parser.exit(2, f"maro {ns.command}: error: {err}\n")
    except BrokenPipeError:  # `maro play ... | head`: the reader left; stop quietly (Python docs, SIGPIPE note)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _lightning(argv: list[str], args: Sequence[str] | None) -> int:
    """``fit``/``validate``/``test`` through LightningCLI; without ``-c``, the demo config is the default."""
    from jsonargparse import set_parsing_settings
    from lightning.pytorch.cli import LightningCLI  # heavy: only for the training commands

    from maro_lightning import imports
    from maro_lightning import preflight
    from maro_lightning.data import TrajectoryDataModule
    from maro_lightning.errors import ConfigError
    from maro_lightning.module import MaroModule

    class MaroCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:
            """Replaces LightningCLI's, which would load the checkpoint's hyperparameters over the config given
            now: here the config applies, the checkpoint is read safely, and one that cannot resume under this
            config (another architecture, tokenizer or game) is refused in one line."""
            subcommand = self.config.get("subcommand")
            if subcommand:
                self._preflight(preflight.check_ckpt_path, self.config[subcommand], subcommand)

        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.add_argument(
                "--imports",
                type=list[str],
                default=[],
                help="Modules to import before the config is parsed: where your registered advantage modes, "
                "weightings, games and scripted agents, and your class_path classes, live (docs/design.md#extending).",
            )

        def before_instantiate_classes(self) -> None:
            self._preflight(preflight.check_config, self.config[self.subcommand], self.subcommand)

        def after_instantiate_classes(self) -> None:
            self._preflight(preflight.check_objects, self.model, self.datamodule, self.trainer)

        def instantiate_classes(self) -> None:
            """A value that type-checks but that a class rejects (an unknown game or agent in a GameSpec, a bad
            option, fsdp on a CPU) fails here, before anything is built or played: one line naming the problem
            and exit status 2, as for a parse error, instead of jsonargparse's chained tracebacks."""
            try:
                super().instantiate_classes()
            except (ValueError, TypeError) as err:
                self.parser.exit(2, f"maro {self.subcommand}: error: bad config: {_root_cause(err)}\n")

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            """Adds maro's progress bar (steps out of max_steps, the last round's outcomes per role) unless the
            config brings its own or turns the bar off; and, unless the config names its loggers, the CSV logger
            plus TensorBoard when it is installed (:func:`maro_lightning.logs.default_loggers`)."""
            from lightning.pytorch.callbacks import ProgressBar

            from maro_lightning.callbacks import MaroProgressBar
            from maro_lightning.logs import default_loggers

            config = self.config_init.get(self.subcommand, self.config_init).get("trainer") or {}
            if config.get("logger") in (None, True):
                kwargs["logger"] = default_loggers(config.get("default_root_dir") or os.getcwd())
            callbacks = list(config.get("callbacks") or [])
            wanted = config.get("enable_progress_bar") is not False
            if wanted and not any(isinstance(callback, ProgressBar) for callback in callbacks):
                kwargs["callbacks"] = [*callbacks, MaroProgressBar()]
            return super().instantiate_trainer(**kwargs)

        def _preflight(self, check: Any, *args: Any) -> None:
            try:
                check(*args)
            except ValueError as err:
                self.parser.exit(2, f"maro {getattr(self, 'subcommand', None) or argv[0]}: error: {err}\n")

        def _run_subcommand(self, subcommand: str) -> None:
            try:
                super()._run_subcommand(subcommand)
            except ConfigError as err:  # found by a hook once the run started (before any update): one line
                self.parser.exit(2, f"maro {subcommand}: error: {err}\n")

    configured = [a for a in argv if a in ("-c", "--config") or a.startswith("--config=")]
    defaults = {} if configured or not DEMO_CONFIG.exists() else {"default_config_files": [str(DEMO_CONFIG)]}
    try:
        preflight.check_config_files(argv)
        preflight.check_credit_switches(argv, defaults.get("default_config_files", []))
    except ValueError as err:
        sys.stderr.write(f"maro {argv[0]}: error: {err}\n")
        return 2
    try:  # before parsing: class paths and registered names must exist when the config is checked
        imports.import_all(
            imports.requested(argv, preflight.config_paths(argv) or defaults.get("default_config_files", []))
        )
    except (ImportError, ValueError) as err:
        sys.stderr.write(f"maro {argv[0]}: error: {err}\n")
        return 2
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # the config dataclasses' docs in --help
    MaroCLI(
        MaroModule,
        TrajectoryDataModule,
        subclass_mode_model=True,  # `model: class_path: my_package.MyModule` trains a subclass
        args=None if args is None else argv,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={command: defaults for command in LIGHTNING_COMMANDS},
        parser_class=preflight.OneLineParser,
    )
    return 0


def _root_cause(err: BaseException) -> BaseException:
    """The exception at the bottom of a ``raise ... from`` chain (jsonargparse wraps a class's own error in
    "Does not validate against any of the Union subtypes" once per enclosing type)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maro", description="MARO: train language models in social games.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in LIGHTNING_COMMANDS:  # listed in --help; LightningCLI parses them
        commands.add_parser(command, help=f"{command} a MaroModule (LightningCLI: -c CONFIG, --help for options)")
    play = commands.add_parser("play", help="watch games between seats, turn by turn")
    play.add_argument("--game", required=True, help=f"one of: {', '.join(envs.names())}, or textarena:ID")
    play.add_argument(
        "--seats",
        required=True,
        help="comma-separated seats, one per player in player order (one name fills every seat): scripted "
        "agents, or `policy` for the trained policy of --checkpoint; `maro play --game G --seats list` lists them",
    )
    play.add_argument("--checkpoint", help="a `maro fit` checkpoint (.ckpt) whose policy plays the `policy` seats")
    play.add_argument("--temperature", type=float, help="the policy's sampling temperature (default: its config's)")
    play.add_argument("--seed", type=int, default=0, help="seed of the first game (default 0)")
    play.add_argument("--episodes", type=int, default=1, help="games to play, seeds seed, seed+1, ... (default 1)")
    play.add_argument("--show-private", action="store_true", help="print each player's prompt and raw text too")
    play.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a game option, e.g. --option max_messages=12 --option obs_format=compact (repeatable)",
    )
    play.set_defaults(run=_play)
    _add_evaluate(commands)
    _add_transfer(commands)
    return parser


def _add_evaluate(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="paired evaluation: checkpoints and scripted agents on the same held-out games",
        description="Every line (a checkpoint's policy, or a scripted agent in the learner's seat) plays the same "
        "held-out games of every condition: the training opponents, the game's other scripted agents (held out) "
        "and, with --held-out-option, other game parameters. Prints per-line results with 95% intervals and "
        "paired differences with standard errors; writes evaluation.csv, evaluation_pairs.csv and evaluation.json.",
    )
    evaluate.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT", help="checkpoints of `maro fit` runs")
    evaluate.add_argument(
        "--scripted",
        action="append",
        metavar="AGENT",
        help="a scripted agent as a line in the learner's seat (repeatable; default: the teachers of the first "
        "checkpoint's warm start; `--scripted none` for no scripted line)",
    )
    evaluate.add_argument("--episodes", type=int, default=400, help="games per condition for every line (400)")
    evaluate.add_argument(
        "--temperature", type=float, help="decoding of every policy line (0: greedy; default: its training config)"
    )
    evaluate.add_argument("--opponents", help="comma-separated scripted opponents (default: every one of the game)")
    evaluate.add_argument(
        "--held-out-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a game option of the held-out-options conditions, e.g. listing_range=(150,300) (repeatable)",
    )
    evaluate.add_argument("--seed", type=int, help="root seed of the evaluation games (default: a fixed one)")
    evaluate.add_argument("--out", help="folder for the result files (default: the last checkpoint's folder)")
    evaluate.set_defaults(run=_evaluate)


def _add_transfer(commands: Any) -> None:
    parser = commands.add_parser(
        "transfer",
        help="standard benchmarks (lm-evaluation-harness) on a checkpoint's policy, optionally against a base model",
        description="Exports the checkpoint's policy as a Hugging Face folder and evaluates it with "
        "lm-evaluation-harness (its `hf` model) on the given tasks; with --base, evaluates a base model on the same "
        "tasks and prints the difference. Writes the export, results.json (lm-eval's results), base_results.json and "
        f"a Markdown table to the output folder. Needs the transfer extra: {transfer.INSTALL_HINT}.",
    )
    parser.add_argument(
        "--checkpoint", required=True, metavar="CKPT", help="a `maro fit` checkpoint (.ckpt): its policy is evaluated"
    )
    parser.add_argument(
        "--tasks",
        required=True,
        metavar="TASK[,TASK...]",
        help="comma-separated lm-eval task names (e.g. gsm8k,minerva_math500,ifeval,mmlu) or task YAML files; "
        "`lm-eval ls tasks` lists the names",
    )
    parser.add_argument(
        "--num_fewshot",
        type=int,
        metavar="N",
        help="few-shot examples in each prompt, for every task not fixed at 0 (default: each task's own)",
    )
    parser.add_argument(
        "--limit", type=float, metavar="N", help="at most N examples per task (below 1: this fraction); quick checks"
    )
    parser.add_argument(
        "--batch_size",
        metavar="N|auto",
        help="examples per forward, or auto (the largest that fits; auto:K re-checks K times) (default: 1)",
    )
    parser.add_argument("--device", help="cuda, cuda:1, cpu, ... (default: cuda when available, else cpu)")
    parser.add_argument(
        "--include_path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a folder of your own task YAMLs, searched besides lm-eval's (repeatable)",
    )
    parser.add_argument(
        "--base",
        metavar="MODEL",
        help="a Hugging Face id or folder (e.g. the model the run started from) evaluated on the same tasks; "
        "the table adds its scores and the difference checkpoint - base",
    )
    parser.add_argument(
        "--out",
        metavar="FOLDER",
        help="folder for the export (model/) and the results (default: RUN/transfer/CKPT_STEM, where RUN is the "
        "folder holding checkpoints/)",
    )
    parser.set_defaults(run=_transfer)


def _transfer(ns: argparse.Namespace) -> int:
    tasks = tuple(task for task in _split(ns.tasks) if task)
    if not tasks or (ns.num_fewshot is not None and ns.num_fewshot < 0) or (ns.limit is not None and ns.limit <= 0):
        raise ValueError(f"need tasks, --num_fewshot >= 0, --limit > 0; got {ns.tasks!r}, {ns.num_fewshot}, {ns.limit}")
    harness = transfer.Harness(tasks, ns.num_fewshot, ns.limit, ns.batch_size, ns.device, tuple(ns.include_path))
    table, written = transfer.run(ns.checkpoint, harness, base=ns.base, out=ns.out)
    print(table)
    print("results: " + ", ".join(str(path) for path in written))
    return 0


def _evaluate(ns: argparse.Namespace) -> int:
    from maro_lightning import paired  # heavy: torch and transformers

    if ns.episodes < 1 or (ns.temperature is not None and ns.temperature < 0):
        raise ValueError(f"need --episodes >= 1 and --temperature >= 0; got {ns.episodes}, {ns.temperature}")
    lines, specs = [], []
    for item in ns.checkpoints:
        name, path = _named_path(item)
        line, games = _checkpoint_line(name, path, ns.temperature)
        lines.append(line)
        specs = specs or games
    if not specs:
        raise ValueError(f"{ns.checkpoints[0]}: the checkpoint records no SimulationCallback games to evaluate on")
    if ns.scripted is None:
        lines = paired.teacher_lines(specs) + lines
    else:
        lines = [paired.Line(name, agent=name) for name in ns.scripted if name != "none"] + lines
    opponents = None if ns.opponents is None else {s.name: _split(ns.opponents) for s in specs}
    held_out = {s.name: _options(ns.held_out_option) for s in specs} if ns.held_out_option else None
    conditions = paired.default_conditions(specs, opponents, held_out)
    seed = paired.DEFAULT_SEED if ns.seed is None else ns.seed
    report = paired.evaluate(lines, conditions, ns.episodes, seed, progress=lambda m: print(m, file=sys.stderr))
    print(report.format())
    out = ns.out or str(Path(_named_path(ns.checkpoints[-1])[1]).parent)
    print("results: " + ", ".join(str(p) for p in report.save(out)))
    return 0


def _named_path(item: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named by its file stem)."""
    name, sep, path = item.partition("=")
    return (name, path) if sep and not Path(item).exists() else (Path(item).stem, item)


def _checkpoint_line(name: str, path: str, temperature: float | None) -> tuple[Any, list[Any]]:
    """The policy line of a checkpoint (its decoding, or ``temperature``) and the game mix it trained on."""
    import dataclasses

    from maro_lightning import checkpoints
    from maro_lightning.module import MaroModule
    from maro_lightning.paired import Line

    games = checkpoints.trained_specs(checkpoints.load(path))  # a remote, missing or unreadable file fails here
    module = MaroModule.load_from_checkpoint(path, map_location="cpu")
    sampling = module.sampling if temperature is None else dataclasses.replace(module.sampling, temperature=temperature)
    return Line(name, module.policy_backend(), module.tokenizer, sampling), games


def _play(ns: argparse.Namespace) -> int:
    if ns.seats == "list":
        envs.make(ns.game, **_options(ns.option))  # a bad game or option fails here, naming the valid ones
        print(f"scripted agents for {ns.game}: {', '.join(envs.agent_names(ns.game))}")
        return 0
    if ns.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {ns.episodes}")
    policy = _load_policy_seat(ns) if POLICY_SEAT in _split(ns.seats) else None
    if policy is not None and policy.game_options and ns.game not in policy.game_options:
        sys.stderr.write(
            f"maro play: warning: the checkpoint's policy was trained on {', '.join(sorted(policy.game_options))}, "
            f"not {ns.game}: expect it to play {ns.game} badly\n"
        )
    trained = policy.game_options.get(ns.game, {}) if policy is not None else {}
    if trained:
        print(f"game options the policy was trained with (--option overrides them): {trained}")
    env = envs.make(ns.game, **{**trained, **_options(ns.option)})
    env.reset(ns.seed)  # to learn the number of players
    names = _seat_names(ns.game, ns.seats, len(env.roles))
    agents = {
        player: policy.seat(env, player) if name == POLICY_SEAT else envs.agent(name, game=ns.game)
        for player, name in enumerate(names)
    }
    for seed in range(ns.seed, ns.seed + ns.episodes):
        print(f"=== {env.name}, seed {seed}: " + ", ".join(f"player {p} = {name}" for p, name in enumerate(names)))
        _play_one(env, agents, seed, show_private=ns.show_private)
    return 0


def _load_policy_seat(ns: argparse.Namespace) -> Any:
    if not ns.checkpoint:
        raise ValueError("a `policy` seat needs --checkpoint PATH (a .ckpt written by `maro fit`)")
    from maro_lightning import checkpoints

    checkpoints.load(ns.checkpoint)  # a remote, missing or unreadable file fails here in one line
    from maro_lightning.play import PolicyPlayer  # heavy: torch and transformers

    return PolicyPlayer.from_checkpoint(ns.checkpoint, temperature=ns.temperature, seed=ns.seed)


def _play_one(env: envs.SocialEnv, agents: dict[int, envs.ScriptedAgent], seed: int, *, show_private: bool) -> None:
    prompts: dict[int, str] = {}

    def capture(player: int) -> None:
        prompts[player] = env.observation(player)

    def show(turn: envs.Turn) -> None:
        _print_turn(turn, prompts.get(turn.player), show_role=show_private or not env.hidden_roles)

    outcome = envs.play_episode(env, agents, seed, on_turn=show, before_step=capture if show_private else None)
    _print_outcome(outcome)


def _print_turn(turn: envs.Turn, prompt: str | None, *, show_role: bool) -> None:
    """One line per turn; hidden roles stay hidden until the outcome unless private views are asked for."""
    if prompt is not None:
        print(f"--- prompt of player {turn.player} ---\n{prompt}\n--- raw: {turn.raw!r}")
    flag = "" if turn.valid else f"  (invalid: {turn.info.get('invalid_reason')})"
    who = f"player {turn.player} ({turn.role})" if show_role else f"player {turn.player}"
    print(f"[{turn.index:3d}] {turn.phase:9s} {who}: {turn.public or '-'}{flag}")


def _print_outcome(outcome: envs.Outcome) -> None:
    print("--- outcome (roles revealed)")
    for player, role in outcome.roles.items():
        won = "success" if outcome.success[player] else "no success"
        print(f"  player {player} ({role}): reward {outcome.rewards[player]:+.3f}, {won}")
    print("  metrics: " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(outcome.metrics.items())))


def _split(seats: str) -> list[str]:
    return [name.strip() for name in seats.split(",")]


def _seat_names(game: str, seats: str, players: int) -> list[str]:
    names = _split(seats)
    if len(names) == 1:
        names = names * players
    if len(names) != players:
        raise ValueError(f"{game} has {players} players but --seats names {len(names)}: {seats}")
    return names


def _options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        options[key.strip()] = _literal(value.strip())
    return options


def _literal(text: str) -> Any:
    """``12`` -> 12, ``(20, 200)`` -> a tuple, ``compact`` -> the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


if __name__ == "__main__":
    sys.exit(main())
