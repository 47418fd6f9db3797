"""The README's "MARO as implemented" subclass example runs and does what it says."""

import re
from pathlib import Path

import pytest

from maro_lightning.credit import CreditConfig

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
