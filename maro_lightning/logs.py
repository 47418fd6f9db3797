"""The run's loggers: CSV always (the run's plots read ``metrics.csv``), TensorBoard as well when it is installed
(``pip install "maro-lightning[tensorboard]"``), both writing into the same ``lightning_logs/version_N`` folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import TensorBoardLogger


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def default_loggers(root_dir: str | Path, tensorboard: bool | None = None) -> list[Logger]:
    """A ``CSVLogger`` under ``root_dir/lightning_logs`` and, with ``tensorboard`` (default: when installed), a
    ``TensorBoardLogger`` in the same version folder (Lightning alone would pick TensorBoard *instead* of CSV)."""
    csv = CSVLogger(root_dir)
    if not (tensorboard_available() if tensorboard is None else tensorboard):
        return [csv]
    return [csv, TensorBoardLogger(root_dir, version=csv.version, default_hp_metric=False)]
