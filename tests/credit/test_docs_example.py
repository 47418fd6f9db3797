"""The README's "MARO as implemented" subclass example runs and does what it says."""

import re
from pathlib import Path

import pytest

from maro_lightning.credit import CreditConfig
from maro_lightning.credit import advantage_mode
from maro_lightning.credit.advantages import MODES

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    """The python block that defines InvalidPenalty in the README's "MARO as implemented" section."""
    text = (ROOT / "README.md").read_text()
    if "## MARO as implemented" not in text:
        pytest.fail("README.md has no 'MARO as implemented' section")
    blocks = re.findall(r"```python\n(.*?)```", text.split("## MARO as implemented", 1)[1], re.S)
    return next(block for block in blocks if "class InvalidPenalty" in block)


def test_readme_subclass_example_penalises_invalid_attempts(make_episode):
    namespace: dict = {}
    exec(compile(_example(), "README example", "exec"), namespace)
    episode = make_episode("bazaar", 0, {1: ("buyer", 0.5, True, 2)}, infos={(1, 0): {"invalid_reason": "bad"}})
    samples = namespace["InvalidPenalty"](CreditConfig(lam=1.0, normalize_per_role=False)).assign([episode])
    # ρ = (−.25, .5), V = 0, λ = γ = 1: r = return-to-go = (.25, .5).
    assert [s.reward for s in samples] == [0.25, 0.5]


def test_readme_credit_example_runs_as_written():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text.split("## MARO as implemented", 1)[1], re.S)
    block = next(b for b in blocks if "assigner.assign(episodes, values, q_values)" in b)
    namespace: dict = {}
    exec(compile(block, "README credit example", "exec"), namespace)
    samples, rows = namespace["samples"], namespace["rows"]
    assert len(samples) == len(rows) > 8  # every buyer behaviour of the eight games, in flattening order
    assert {s.player for s in samples} == {1} and {s.role for s in samples} == {"buyer"}
    assert [(s.episode_id, s.turn) for s in samples] == [(e.episode_id, b.index) for e, b in rows]
    # V = Q = 0 and λ < 1: the reward of a game's last behaviour is its outcome; the weights have mean 1.
    last = [s for s in samples if s.step == s.num_steps - 1]
    assert all(abs(s.reward - s.z) < 1e-12 for s in last)
    assert abs(sum(s.weight for s in samples) / len(samples) - 1) < 1e-9


def test_readme_registered_mode_example_registers_a_mode():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text.split("## MARO as implemented", 1)[1], re.S)
    namespace: dict = {}
    exec(compile(next(b for b in blocks if "utility_only" in b), "README mode example", "exec"), namespace)
    try:
        assert advantage_mode("utility_only").fn is namespace["utility_only"]
    finally:
        MODES.remove("utility_only")  # later tests see the library's modes only
