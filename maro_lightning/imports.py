"""A config's ``imports:``: the user's modules, imported before anything is parsed or built.

A registry name (an advantage mode, a weighting, a game, a scripted agent) exists only once the module that
registers it has been imported, and a ``class_path`` must be importable while the config is parsed. So
``maro fit|validate|test`` reads the top-level ``imports:`` list of every config file (and ``--imports``)
first and imports those modules, with the current folder on ``sys.path`` as ``python -m`` would have it::

    imports: [my_rewards]            # my_rewards.py registers @register_advantage("sign") and a game
    model:
      init_args:
        credit: {mode: sign}
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path

import yaml


def requested(argv: Sequence[str], config_files: Iterable[str | Path]) -> list[str]:
    """The module names of the config files' ``imports:`` lists, then of ``--imports`` (a name or a YAML list)."""
    names: list[str] = []
    for path in config_files:
        content = yaml.safe_load(Path(path).read_text()) or {}
        if isinstance(content, dict):
            names += _names(content.get("imports"), f"imports: in {path}")
    for index, arg in enumerate(argv):
        if arg == "--imports" and index + 1 < len(argv):
            names += _names(yaml.safe_load(argv[index + 1]), "--imports")
        elif arg.startswith("--imports="):
            names += _names(yaml.safe_load(arg.split("=", 1)[1]), "--imports")
    return list(dict.fromkeys(names))


def import_all(names: Iterable[str]) -> None:
    """Import every module of ``names`` (the current folder first on the path).

    Raises:
        ImportError: one module cannot be imported; the message names it and the reason.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # a missing module, or one that fails while registering: one line either way
            raise ImportError(f"imports: cannot import {name!r} ({type(err).__name__}: {err})") from err


def _names(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a list of module names, got {value!r}")
    return value
