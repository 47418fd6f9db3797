"""Checks ``maro fit|validate|test`` runs before anything is built: every problem is one line naming the key.

The LightningCLI subclass of :mod:`maro_lightning.cli` calls these at its stages: the config files before
parsing (:func:`check_config_files`), the checkpoint once parsed (:func:`check_ckpt_path`), the parsed values
(:func:`check_config`) and the instantiated objects (:func:`check_objects`). A parse error is condensed to
one line too (:class:`OneLineParser`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningArgumentParser

from maro_lightning import checkpoints

_PARSER_KEY = re.compile(r'Parser key "([^"]+)":\s*(.*)')
# The assigner class of MaroModule's `credit` Union: over a plain mapping it parses as given; a subclass does not.
_BASE_ASSIGNER = ("maro_lightning.credit.CreditAssigner", "maro_lightning.credit.assigner.CreditAssigner")


class OneLineParser(LightningArgumentParser):
    """jsonargparse's parser, but a parse error is one line: the innermost key and why, not the usage text
    and a tree of every Union subtype it tried (70 lines for a wrong type inside a game entry)."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error:
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {condense(message)} (see {prog} --help)\n")
        self.exit(2)


def condense(message: str) -> str:
    """A jsonargparse error tree as one line: ``Parser key "a.b.c": reasons (given: value)``, where a.b.c is
    the path to the innermost key that failed."""
    lines = message.rstrip().splitlines()
    keys = [(len(line) - len(line.lstrip()), index) for index, line in enumerate(lines) if _PARSER_KEY.search(line)]
    if not keys:
        return " ".join(line.strip() for line in lines if line.strip())
    depth, deepest = max(keys, key=lambda k: (k[0], -k[1]))
    path, level = [], depth + 1
    for indent, index in reversed([k for k in keys if k[1] <= deepest]):
        if indent < level:
            path.insert(0, _PARSER_KEY.search(lines[index]).group(1))
            level = indent
    inline = _PARSER_KEY.search(lines[deepest]).group(2).strip()
    block = []
    for line in lines[deepest + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        block.append(line.strip())
    noise = ("Does not validate against any of", "Subtypes:", "Errors:", "Given value")
    reasons = [inline] if inline else [b.removeprefix("- ") for b in block if b and not b.startswith(noise)]
    given = next((b.removeprefix("Given value:").strip() for b in block if b.startswith("Given value:")), None)
    text = f'Parser key "{".".join(path)}": {"; ".join(reasons) or "invalid value"}'
    return text if given is None or inline else f"{text} (given: {given[:80]})"


def check_config_files(argv: Sequence[str]) -> None:
    """Every ``-c`` file exists and holds a YAML mapping (an empty file is an error, not the defaults)."""
    for path in config_paths(argv):
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"-c {path}: no such config file")
        try:
            content = yaml.safe_load(file.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"-c {path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
        if content is None:
            raise ValueError(f"-c {path}: the config file is empty (expected trainer:, model: and data: sections)")
        if not isinstance(content, dict):
            raise ValueError(f"-c {path}: a config file is a YAML mapping of sections, got a {type(content).__name__}")


def check_credit_switches(argv: Sequence[str], default_paths: Sequence[str] = ()) -> None:
    """The command line and config files, in order, never give ``credit:`` in a form jsonargparse would lose:
    - a switch ``--model.init_args.credit.X`` over an assigner (a reward scheme with its own arguments, such as
      ``NoDealCost``) would replace the assigner by a plain mapping of switches and drop the scheme without a word;
    - an assigner subclass (``credit: {class_path: ...}``, from a later ``-c`` file or the command line) over a plain
      mapping of switches keeps the mapping's type: the class is dropped, or fails to build with a message about
      ``config`` (the base ``CreditAssigner`` itself parses as given).
    ``default_paths`` are the config files read when the command line names none."""
    credit: str | bool | None = None  # so far: unset, a plain mapping of switches (True) or an assigner's class path
    for key, value, source in _credit_settings(argv, default_paths):
        if key is not None and key.split(".")[0] in ("init_args", "help"):
            continue  # the assigner's own arguments
        if key is None or key == "class_path":
            given = value if key == "class_path" else _credit_kind(value)
            if isinstance(given, str) and credit is True and given not in _BASE_ASSIGNER:
                raise ValueError(
                    f"{source}: an assigner ({given}) over a config whose credit is a plain mapping of switches is "
                    "dropped in parsing; write credit: {class_path: ..., init_args: {config: {...switches}}} in the "
                    "config, in place of the mapping"
                )
            credit = given
        elif isinstance(credit, str):
            raise ValueError(
                f"{source}: the config's credit is an assigner ({credit}); give its switches as "
                f"--model.init_args.credit.init_args.config.{key}"
            )
        else:
            credit = True


def _credit_kind(value: Any) -> str | bool | None:
    """A ``credit:`` value as :func:`check_credit_switches` tracks it: an assigner's class path, True for a plain
    mapping of switches, None for unset."""
    if isinstance(value, dict):
        return value.get("class_path") or True
    return None


def _credit_settings(argv: Sequence[str], default_paths: Sequence[str]) -> Iterator[tuple[str | None, Any, str]]:
    """Every place that sets the model's credit, in parsing order, as (key below ``credit``, value, where): a
    config file's or ``--model.init_args.credit`` value has key None; ``--model.init_args.credit.X=v`` has key X."""
    for path in [] if config_paths(argv) else default_paths:
        if (credit := _file_credit(path)) is not None:
            yield None, credit, f"-c {path}"
    for index, arg in enumerate(argv):
        if arg in ("-c", "--config") and index + 1 < len(argv) or arg.startswith("--config="):
            path = argv[index + 1] if "=" not in arg else arg.split("=", 1)[1]
            if (credit := _file_credit(path)) is not None:
                yield None, credit, f"-c {path}"
            continue
        key, has_value, value = arg.partition("=")
        if not has_value and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            value = argv[index + 1]
        for prefix in ("--model.init_args.credit", "--model.credit"):
            if key == prefix:
                yield None, _yaml_or_none(value), key
            elif key.startswith(prefix + "."):
                yield key.removeprefix(prefix + "."), value, key


def _yaml_or_none(text: str) -> Any:
    """``text`` parsed as YAML; None when it does not parse (jsonargparse then names the problem)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _file_credit(path: str) -> Any:
    """A config file's ``model.credit`` (under ``init_args`` or not); None when it sets none."""
    model = (yaml.safe_load(Path(path).read_text()) or {}).get("model") or {}
    return (model.get("init_args") or model).get("credit") if isinstance(model, dict) else None


def configured_assigner(paths: Sequence[str]) -> str | None:
    """The class path of the credit assigner the config files give (the last that sets ``credit:`` decides); None
    when ``credit:`` is a plain mapping of switches, or unset."""
    assigner = None
    for path in paths:
        credit = _file_credit(path)
        if credit is not None:
            assigner = credit.get("class_path") if isinstance(credit, dict) else None
    return assigner


def config_paths(argv: Sequence[str]) -> list[str]:
    """The ``-c`` / ``--config`` files of a command line, in order."""
    paths = []
    for index, arg in enumerate(argv):
        if arg in ("-c", "--config") and index + 1 < len(argv):
            paths.append(argv[index + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def check_config(config: Any, subcommand: str) -> None:
    """Values that type-check but cannot run, and a warning for an evaluation without a checkpoint."""
    max_steps = config.get("trainer.max_steps")
    if max_steps is not None and max_steps < -1:
        raise ValueError(f"trainer.max_steps={max_steps}: use a positive number of steps, or -1 for no limit")
    if subcommand in ("validate", "test") and not config.get("ckpt_path"):
        sys.stderr.write(
            f"maro {subcommand}: warning: no --ckpt_path: this evaluates an untrained model "
            "(the config's freshly initialised weights)\n"
        )


def check_ckpt_path(config: Any, subcommand: str) -> None:
    """A ``--ckpt_path`` is a local file that reads as a checkpoint with ``weights_only=True``, was trained
    with this config's architecture and, for ``fit``, on this config's games. The config's other module
    arguments apply: the changes from the checkpoint's values are listed on stderr."""
    path = config.get("ckpt_path")
    if not path or (str(path) in checkpoints.LIGHTNING_SPECIAL_PATHS and not Path(path).exists()):
        return  # no checkpoint, or one Lightning resolves itself ("last", "best") among its own files
    checkpoint = checkpoints.load(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    given = checkpoints.plain(config.get("model.init_args")) or {}
    conflicts = checkpoints.architecture_conflicts(hparams, given)
    if conflicts:
        raise ValueError(
            f"--ckpt_path {path}: the config's {', '.join(f'model.{k}' for k in conflicts)} differ from the "
            "checkpoint's; weights only load into the architecture and tokenizer they were trained with "
            "(pass -c with the config of the run that saved it)"
        )
    if subcommand == "fit":
        _check_resumed_games(path, checkpoints.trained_games(checkpoint), config)
    changes = checkpoints.changed_settings(hparams, given)
    if changes:
        sys.stderr.write(f"maro {subcommand}: the config changes the checkpoint's {'; '.join(changes)}\n")


def _check_resumed_games(path: str, trained: dict[str, Any], config: Any) -> None:
    playing = set()
    for callback in config.get("trainer.callbacks") or []:
        if str(callback.get("class_path", "")).endswith("SimulationCallback"):
            games = callback.get("init_args.games")
            playing |= {str(g.get("name") if hasattr(g, "get") else g.name) for g in games} if games else {"bazaar"}
    if trained and playing and set(trained) != playing:
        raise ValueError(
            f"--ckpt_path {path} was trained on {', '.join(sorted(trained))}, but the config plays "
            f"{', '.join(sorted(playing))}: a resumed run must play the games it was trained on"
        )


def check_objects(model: Any, datamodule: Any, trainer: Any) -> None:
    """Checks that need the instantiated classes (the same ones their ``setup`` hooks run)."""
    from maro_lightning.callbacks import SimulationCallback

    for callback in trainer.callbacks:
        if isinstance(callback, SimulationCallback):
            callback.check_compatible(model, datamodule)
