"""Checkpoints given on the command line: read safely, and checked against the config that resumes them.

A checkpoint is untrusted input. It is read only from a local file and only with
``torch.load(weights_only=True)`` (plain tensors and containers, no Python objects: nothing in it can run
code); a remote path (``http://``, ``s3://``, ...) is refused, because Lightning would unpickle a URL with
``weights_only=False``. A truncated, empty, random or text file fails with one line naming the file.

When a run resumes (``--ckpt_path``), the config given now is the run's config: its values for the loss,
credit, sampling and the data module apply, whatever the checkpoint was trained with. Settings that shape
the weights (:data:`ARCHITECTURE_KEYS`) must match the checkpoint, and a resumed ``fit`` must play the games
the checkpoint was trained on; otherwise the run is refused, naming the keys.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import torch

from maro_lightning.rollout import GameSpec

ARCHITECTURE_KEYS = ("policy", "tiny", "dtype", "head", "lora")
"""MaroModule arguments that shape the weights or the tokenizer: a checkpoint only loads into the same."""
LIGHTNING_SPECIAL_PATHS = ("last", "best", "hpc")  # `ckpt_path` words Lightning resolves to its own files
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``http://``, ``s3://``, ``file://``, ...) rather than a local path."""
    return bool(_REMOTE.match(str(path)))


def load(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at the local file ``path``, read with ``weights_only=True``; with ``mmap``, its tensors are
    mapped from the file rather than read (cheap when only the metadata is wanted).

    Raises:
        ValueError: ``path`` is remote, missing, or not a readable Lightning checkpoint (one line, naming it).
    """
    if is_remote(path):
        raise ValueError(
            f"{path}: remote checkpoints are refused (loading one could run code from it); "
            "download the file and pass its local path"
        )
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    if file.stat().st_size == 0:
        raise ValueError(f"{path}: the checkpoint file is empty")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # a pickled class or function: what a code-running payload needs
            raise ValueError(
                f"{path}: refused, the checkpoint holds Python objects that are not plain weights "
                "(unpickling them could run code)"
            ) from None
        raise ValueError(f"{path}: not a readable checkpoint (truncated, corrupt or not a torch file)") from None
    except Exception as err:  # noqa: BLE001 - torch reports a bad file with many exception types
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated, corrupt or not a torch file: "
            f"{type(err).__name__}: {_first_line(err)})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


def trained_games(checkpoint: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Game -> env options the checkpoint's policy was trained on (the SimulationCallback's state; {} if none)."""
    for state in checkpoint.get("callbacks", {}).values():
        games = state.get("games") if isinstance(state, dict) else None
        if isinstance(games, dict):  # game -> options
            return games
        if isinstance(games, list):  # the game specs, as dicts
            return {spec["name"]: spec.get("options", {}) for spec in games if isinstance(spec, dict)}
    return {}


def trained_specs(checkpoint: Mapping[str, Any]) -> list[GameSpec]:
    """The game mix (opponents, learner seats, teachers) the checkpoint's SimulationCallback trained on; [] when it
    had none or recorded only the options (older checkpoints)."""
    for state in checkpoint.get("callbacks", {}).values():
        games = state.get("games") if isinstance(state, dict) else None
        if isinstance(games, list):
            return [GameSpec(**spec) for spec in games]
    return []


def architecture_conflicts(hparams: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The dotted keys of :data:`ARCHITECTURE_KEYS` whose value in ``config`` (MaroModule's init arguments,
    plain values) differs from the checkpoint's hyperparameters, e.g. ``["tiny.hidden_size"]``."""
    from maro_lightning.models import TinyModelConfig
    from maro_lightning.module import HeadConfig

    defaults = {
        "policy": None,
        "dtype": "auto",
        "tiny": asdict(TinyModelConfig()),
        "head": asdict(HeadConfig()),
        "lora": None,
    }
    conflicts = []
    for key in ARCHITECTURE_KEYS:
        saved, given = plain(hparams.get(key, defaults[key])), plain(config.get(key))
        if given is None:
            given = plain(defaults[key])
        if isinstance(saved, dict) and isinstance(defaults[key], dict):  # a field added after the checkpoint was
            saved = {**plain(defaults[key]), **saved}  # written: its default reproduces it
        conflicts += _differences(key, saved, given)
    return conflicts


def changed_settings(hparams: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """``key: saved -> given`` for every other MaroModule argument the config changes (they apply)."""
    changes = []
    for key, value in config.items():
        if key in ARCHITECTURE_KEYS or key not in hparams:
            continue
        saved, given = plain(hparams[key]), plain(value)
        if isinstance(saved, dict) and given is None:
            continue  # None: the defaults, which the checkpoint's dict spells out
        for name in _differences(key, saved, given):
            changes.append(f"{name}: {_lookup(saved, name)!r} -> {_lookup(given, name)!r}")
    return changes


def plain(value: Any) -> Any:
    """``value`` as JSON-like data (dataclasses and namespaces as dicts, tuples as lists)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if hasattr(value, "as_dict") and callable(value.as_dict):  # a jsonargparse Namespace
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _differences(prefix: str, saved: Any, given: Any) -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        keys = sorted(set(saved) | set(given))
        return [name for k in keys for name in _differences(f"{prefix}.{k}", saved.get(k), given.get(k))]
    return [] if saved == given else [prefix]


def _lookup(value: Any, dotted: str) -> Any:
    for part in dotted.split(".")[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else "no detail")[:160]
