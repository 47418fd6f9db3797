"""The README's MaroModule subclass example trains for a few steps and shapes the rewards as it says."""

import re
from pathlib import Path

import lightning as L
import torch
from helpers import QUIET
from helpers import data
from helpers import simulation
from helpers import tiny_module

README = Path(__file__).resolve().parents[2] / "README.md"


def _talk_cost() -> type:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    namespace: dict = {}
    exec(compile(next(b for b in blocks if "class TalkCost(MaroModule)" in b), "README", "exec"), namespace)
    return namespace["TalkCost"]


def test_readme_module_subclass_trains_with_its_rewards(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    L.seed_everything(0, verbose=False)
    module, dm = tiny_module(module_class=_talk_cost()), data()
    rounds = []
    push = dm.push
    dm.push = lambda samples: rounds.append(samples) or push(samples)
    L.Trainer(max_steps=3, callbacks=[simulation()], **QUIET).fit(module, datamodule=dm)
    first = rounds[0]
    by_agent: dict = {}
    for s in first:
        by_agent.setdefault((s.episode_id, s.player), []).append(s)
    for behaviours in by_agent.values():
        # outcome target = return-to-go of the shaped rewards: z − 0.02 per behaviour from t on
        expected = [b.z - 0.02 * (len(behaviours) - t) for t, b in enumerate(behaviours)]
        torch.testing.assert_close([b.utility_target for b in behaviours], expected)
