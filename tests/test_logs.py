"""The run's loggers: CSV always (the plots read metrics.csv), TensorBoard beside it when installed."""

import pytest
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import TensorBoardLogger

from maro_lightning.logs import default_loggers
from maro_lightning.logs import tensorboard_available


def test_without_tensorboard_the_run_logs_csv(tmp_path):
    loggers = default_loggers(tmp_path, tensorboard=False)
    assert [type(logger) for logger in loggers] == [CSVLogger]
    assert loggers[0].log_dir == str(tmp_path / "lightning_logs" / "version_0")


@pytest.mark.skipif(not tensorboard_available(), reason="needs tensorboard (the [tensorboard] extra)")
def test_with_tensorboard_both_write_into_one_version_folder(tmp_path):
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)  # an earlier run: the next one is version_1
    csv, tensorboard = default_loggers(tmp_path)
    assert isinstance(csv, CSVLogger) and isinstance(tensorboard, TensorBoardLogger)
    assert csv.log_dir == tensorboard.log_dir == str(tmp_path / "lightning_logs" / "version_1")
