"""A non-editable install works away from the source tree: the wheel ships the configs as package data, so
``maro fit`` finds the demo config from any folder (slow: builds a wheel, makes a venv and trains 3 steps)."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1", "HF_HOME": str(cwd / "hf")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_maro_fit_trains_the_demo_after_a_non_editable_install(tmp_path):
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The wheel, built with this environment's setuptools (no network); then a fresh venv that takes the
    # dependencies from this environment's site-packages (a .pth line) and the project only from the wheel.
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    (Path(site) / "deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(wheels.glob("maro_lightning-*.whl"))
    installed = run(python, "-m", "pip", "install", "--no-deps", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    where = run(python, "-c", "import maro_lightning.cli as c; print(c.__file__); print(c.DEMO_CONFIG)", cwd=elsewhere)
    module, demo = where.stdout.split()
    assert Path(module).is_relative_to(venv) and Path(demo).is_relative_to(venv) and Path(demo).is_file()

    fit = run(venv / "bin" / "maro", "fit", "--trainer.max_steps", "3", cwd=elsewhere)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=3` reached." in fit.stderr
    assert (elsewhere / "runs" / "demo" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()
