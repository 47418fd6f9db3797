"""FSDP2 on CPU: two gloo ranks through Lightning's ModelParallelStrategy (docs/design.md#fsdp). The two ranks are one
test, one launch of ``fsdp_run.py`` (a straight run and a resume in the same two processes), as every start of two
ranks costs seconds. Lightning launches the second rank by running the script again, so it cannot run inside pytest's
process; ``timeout -k`` bounds it, because a rank blocked in a collective ignores SIGTERM."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import data
from helpers import simulation
from helpers import tiny_module
from lightning.pytorch.strategies import FSDPStrategy

from maro_lightning.cli import main
from maro_lightning.errors import ConfigError

SCRIPT = Path(__file__).with_name("fsdp_run.py")
LIMIT_S = 240  # 30-70 s on 2 busy cores (45 s of CPU); a hang (a rank alone in a collective) ends here


def test_two_fsdp_ranks_play_in_lockstep_clip_globally_and_resume(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK"}}
    env.pop("LOCAL_RANK", None)  # set, Lightning would not start the second rank
    command = ["timeout", "-k", "10", str(LIMIT_S), sys.executable, str(SCRIPT), str(tmp_path)]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    if run.returncode:
        tail = run.stdout[-3000:] + run.stderr[-3000:]
        pytest.fail(f"the two ranks failed (rc {run.returncode}; 124: timed out, a rank hung):\n{tail}")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    straight, resumed = [r["straight"] for r in ranks], [r["resumed"] for r in ranks]

    assert [r["games_per_round"] for r in straight] == [3, 5]  # uneven work per rank
    assert resumed[0]["validated"] and resumed[0]["validated"] != resumed[1]["validated"]  # a ladder match each
    for runs in (straight, resumed):  # lock-step: as many policy forwards and generate calls on every rank
        assert runs[0]["forwards"] == runs[1]["forwards"] > 0
        assert runs[0]["generates"] == runs[1]["generates"] > 0
    for record in straight:
        assert record["all_sharded"] and record["local_numel"] < record["numel"] and record["checkpointing"]
        assert record["refreshed_reference_equal"] and not record["snapshot_sharded"]
        assert all(norm > 0.05 for norm in record["grad_norms"])  # clipping on: every step is clipped ...
        assert record["clipped_norms"] == pytest.approx([0.05] * 4, rel=1e-4)  # ... to the global norm's 0.05
    assert straight[0]["grad_norms"] == straight[1]["grad_norms"]  # the global norm, the same on both ranks
    assert straight[0]["losses"] != straight[1]["losses"]  # each rank its own games
    assert straight[0]["snapshot_sum"] == straight[1]["snapshot_sum"]  # the full snapshots agree

    for straight_rank, resumed_rank in zip(straight, resumed, strict=True):  # the checkpoint at step 2 resumes exactly
        assert resumed_rank["losses"] == straight_rank["losses"][2:]
        assert resumed_rank["grad_norms"] == straight_rank["grad_norms"][2:]
        assert resumed_rank["params_equal"]
    # the single-file checkpoint holds the whole policy: one process plays it, unsharded
    checkpoint = tmp_path / "straight" / "step=4.ckpt"
    assert main(["play", "--game", "bazaar", "--seats", "policy,linear", "--checkpoint", str(checkpoint)]) == 0


def test_fsdp1_is_refused_with_the_way_to_fsdp2():
    trainer = SimpleNamespace(strategy=FSDPStrategy(), datamodule=data())
    with pytest.raises(ConfigError, match="ModelParallelStrategy"):
        simulation().setup(trainer, tiny_module(), "fit")
