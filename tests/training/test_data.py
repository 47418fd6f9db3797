"""Unit tests of the trajectory data: batch plans, collation, and the data module's resumable state."""

from __future__ import annotations

import io
import math
import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from maro_lightning.batch import TrajectoryBatch
from maro_lightning.batch import collate
from maro_lightning.credit import BehaviourSample
from maro_lightning.data import TrajectoryDataModule
from maro_lightning.data import batch_plan

PAD = 0


def sample(
    prompt: list[int] | None,
    response: list[int] | None,
    *,
    role: str = "seller",
    game: str = "bazaar",
    advantage: float = 0.5,
    weight: float = 1.0,
    old: bool = True,
    ref: bool = False,
    episode_id: str = "bazaar/1",
) -> BehaviourSample:
    """A scored behaviour built by hand (no game, no model); ids >= 1 so that padding (0) is recognisable."""
    n = len(response or [])
    return BehaviourSample(
        episode_id=episode_id,
        game=game,
        seed=1,
        player=0,
        role=role,
        turn=0,
        step=0,
        num_steps=1,
        valid=True,
        prompt="p",
        response="r",
        z=advantage / 2,
        success=advantage > 0,
        value=0.0,
        q_value=0.0,
        utility=0.0,
        reward=0.0,
        weight=weight,
        advantage=advantage,
        utility_target=-advantage,
        prompt_ids=None if prompt is None else torch.tensor(prompt),
        response_ids=None if response is None else torch.tensor(response),
        old_logprobs=-torch.arange(1, n + 1, dtype=torch.float32) / 10 if old else None,
        ref_logprobs=-torch.arange(1, n + 1, dtype=torch.float32) / 20 if ref else None,
    )


def rows(n: int, **kwargs) -> list[BehaviourSample]:
    """``n`` samples with distinct ids and lengths."""
    return [sample(list(range(1, 2 + i % 3)), [10 + i] * (1 + i % 4), advantage=i / n, **kwargs) for i in range(n)]


# ------------------------------------------------------------------------------------------------ plans
def test_shuffle_covers_every_index_once_per_pass_and_is_seeded():
    samples = rows(10)
    plan = batch_plan(samples, batch_size=4, passes=3, sampling="shuffle", rng=random.Random(5))
    per_pass = math.ceil(10 / 4)
    assert len(plan) == 3 * per_pass
    passes = [plan[i * per_pass : (i + 1) * per_pass] for i in range(3)]
    for batches in passes:
        assert sorted(i for batch in batches for i in batch) == list(range(10))
        assert [len(b) for b in batches] == [4, 4, 2]
    assert passes[0] != passes[1]  # a fresh permutation every pass
    assert plan == batch_plan(samples, 4, 3, "shuffle", random.Random(5))
    assert plan != batch_plan(samples, 4, 3, "shuffle", random.Random(6))


def test_role_balanced_draws_rare_and_common_roles_alike():
    samples = rows(18, role="buyer") + rows(2, role="seller")  # 9:1
    plan = batch_plan(samples, batch_size=5, passes=3, sampling="role_balanced", rng=random.Random(0))
    assert len(plan) == 3 * math.ceil(20 / 5) and all(len(batch) == 5 for batch in plan)
    roles = [Counter(samples[i].role for i in batch) for batch in plan]
    assert all(abs(c["buyer"] - c["seller"]) <= 1 for c in roles)  # 3/2 or 2/3 in every batch
    total = sum(roles, Counter())
    assert abs(total["buyer"] - total["seller"]) <= len(plan)
    assert total["seller"] >= 0.4 * sum(total.values())  # not the 10% a shuffle gives
    assert set(i for batch in plan for i in batch) == set(range(20))  # every row appears
    assert {c["buyer"] for c in roles} == {2, 3}  # the extra row goes to either role


def test_role_balanced_keys_roles_by_game():
    samples = rows(6, game="bazaar", role="p0") + rows(2, game="deal", role="p0")
    plan = batch_plan(samples, batch_size=4, passes=2, sampling="role_balanced", rng=random.Random(1))
    assert all(Counter(samples[i].game for i in batch) == {"bazaar": 2, "deal": 2} for batch in plan)


# -------------------------------------------------------------------------------------------- collation
def test_collate_pads_on_the_right_and_lines_up_predictions():
    prompts, responses = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 10]], [[11, 12], [13], [14, 15, 16, 17]]
    advantages, weights, roles = [1.0, -2.0, 0.5], [0.5, 1.0, 2.0], ["seller", "buyer", "seller"]
    samples = [
        sample(p, r, advantage=a, weight=w, ref=True, role=role)
        for p, r, a, w, role in zip(prompts, responses, advantages, weights, roles, strict=True)
    ]
    batch = collate(samples, pad_id=PAD)
    assert isinstance(batch, TrajectoryBatch) and batch.size == 3
    assert batch.input_ids.shape == (3, 6) and batch.input_ids.dtype == torch.long
    for row, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        n = len(p) + len(r)
        assert batch.input_ids[row].tolist() == p + r + [PAD] * (6 - n)
        assert batch.attention_mask[row].tolist() == [1] * n + [0] * (6 - n)
    assert batch.targets.tolist() == [11, 12, 13, 14, 15, 16, 17]
    assert batch.token_rows.tolist() == [0, 0, 1, 2, 2, 2, 2]
    assert batch.token_cols.tolist() == [2, 3, 4, 1, 2, 3, 4]
    assert torch.equal(batch.input_ids[batch.token_rows, batch.token_cols + 1], batch.targets)
    assert batch.prompt_last.tolist() == [2, 4, 1] and batch.response_last.tolist() == [4, 5, 5]
    assert batch.response_lengths.tolist() == [2, 1, 4]
    assert batch.advantages.tolist() == [1.0, 1.0, -2.0, 0.5, 0.5, 0.5, 0.5]
    assert batch.token_weights.tolist() == [0.5, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert batch.weights.tolist() == [0.5, 1.0, 2.0] and batch.utility_targets.tolist() == [-1.0, 2.0, -0.5]
    assert torch.equal(batch.old_logprobs, torch.cat([s.old_logprobs for s in samples]))
    assert torch.equal(batch.ref_logprobs, torch.cat([s.ref_logprobs for s in samples]))
    assert batch.keys == ["bazaar/seller", "bazaar/buyer", "bazaar/seller"]
    assert batch.success.tolist() == [True, False, True] and batch.valid.tolist() == [True] * 3


def test_collate_pad_id_is_the_one_given():
    batch = collate([sample([1], [2]), sample([3, 4, 5], [6])], pad_id=77)
    assert batch.input_ids[0].tolist() == [1, 2, 77, 77]


def test_collate_log_probs_all_or_none():
    batch = collate([sample([1], [2], old=False), sample([3], [4, 5], old=False)], PAD)
    assert batch.old_logprobs is None and batch.ref_logprobs is None
    with pytest.raises(ValueError, match="old_logprobs"):
        collate([sample([1], [2]), sample([3], [4], old=False)], PAD)
    with pytest.raises(ValueError, match="ref_logprobs"):
        collate([sample([1], [2], ref=True), sample([3], [4])], PAD)


def test_collate_names_unscored_samples():
    with pytest.raises(ValueError, match=r"unscored: \['deal/42'\] of 2"):
        collate([sample([1], [2]), sample(None, None, episode_id="deal/42")], PAD)
    with pytest.raises(ValueError, match="unscored"):
        collate([], PAD)


# -------------------------------------------------------------------------------------- the data module
def attach(dm: TrajectoryDataModule, pad: int = PAD, accumulate: int = 1) -> TrajectoryDataModule:
    """``next_batch`` reads the pad id from ``trainer.lightning_module.tokenizer`` and the accumulation and world
    size from the trainer: a stand-in trainer, one process."""
    module = SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=pad))
    dm.trainer = SimpleNamespace(lightning_module=module, accumulate_grad_batches=accumulate, world_size=1)
    return dm


def same(a: TrajectoryBatch, b: TrajectoryBatch) -> bool:
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, torch.Tensor) and not torch.equal(value, other):
            return False
        if not isinstance(value, torch.Tensor) and value != other:
            return False
    return True


@pytest.mark.parametrize("sampling", ["shuffle", "role_balanced"])
def test_state_round_trip_gives_the_same_next_batches(sampling):
    first = rows(7, role="seller")
    second = rows(5, role="buyer")
    dm = attach(TrajectoryDataModule(batch_size=5, passes=1, sampling=sampling, buffer_rounds=2, seed=3))
    dm.push(first)
    dm.push(second)
    assert len(dm.buffer) == 12 and len(dm.plan) == 3
    taken = [dm.next_batch() for _ in range(2)]
    assert all(b.size == 5 for b in taken)

    buffer = io.BytesIO()
    torch.save(dm.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = attach(TrajectoryDataModule(batch_size=5, passes=1, sampling=sampling, buffer_rounds=2, seed=3))
    fresh.load_state_dict(state)

    assert fresh.round_index == 2 and fresh.cursor == 2 and len(fresh.buffer) == 12
    expected = [dm.next_batch() for _ in range(6)]  # the rest of this plan, then a new plan from the RNG
    restored = [fresh.next_batch() for _ in range(6)]
    assert all(same(a, b) for a, b in zip(expected, restored, strict=True))
    assert dm.rng.getstate() == fresh.rng.getstate()
    unrestored = attach(TrajectoryDataModule(batch_size=5, passes=1, sampling=sampling, buffer_rounds=2, seed=3))
    unrestored.push(first)
    unrestored.push(second)
    assert not all(same(a, unrestored.next_batch()) for a in expected)  # the state is what made them equal


def test_buffer_keeps_the_newest_rounds():
    dm = attach(TrajectoryDataModule(batch_size=4, buffer_rounds=2))
    rounds = [rows(3, episode_id=f"bazaar/{r}") for r in range(3)]
    for r in rounds:
        dm.push(r)
    assert [s.episode_id for s in dm.buffer] == ["bazaar/1"] * 3 + ["bazaar/2"] * 3 and dm.round_index == 3


def test_next_batch_replans_when_the_plan_is_used_up():
    dm = attach(TrajectoryDataModule(batch_size=4, passes=1))
    with pytest.raises(RuntimeError, match="buffer is empty"):
        dm.next_batch()
    dm.push(rows(6))
    batches = [dm.next_batch() for _ in range(5)]  # 2 a plan: the third batch starts another pass
    assert [b.size for b in batches] == [4, 2, 4, 2, 4] and dm.cursor == 1
    with pytest.raises(ValueError, match="empty round"):
        dm.push([])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size, passes, buffer_rounds >= 1; got 0, 1, 1"),
        ({"passes": 0}, "got 32, 0, 1"),
        ({"buffer_rounds": 0}, "got 32, 1, 0"),
        ({"sampling": "stratified"}, "sampling must be 'shuffle' or 'role_balanced', got 'stratified'"),
        ({"persist_dir": "runs/x", "replay_dir": "runs/x"}, "persist_dir and replay_dir must differ"),
    ],
)
def test_constructor_errors_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        TrajectoryDataModule(**kwargs)


def test_a_buffer_saved_by_another_world_size_is_dropped_with_a_warning():
    dm = attach(TrajectoryDataModule(batch_size=4))
    dm.push(rows(6, role="seller"))
    state = dm.state_dict()
    assert len(state["ranks"]) == 1  # one process: its own state
    two_ranks = {"ranks": state["ranks"] * 2}
    fresh = attach(TrajectoryDataModule(batch_size=4))
    with pytest.warns(UserWarning, match="of 2 ranks, not 1"):
        fresh.load_state_dict(two_ranks)
    assert fresh.needs_round and not fresh.buffer


def test_plans_are_whole_optimizer_steps_and_batches_carry_the_steps_totals():
    dm = attach(TrajectoryDataModule(batch_size=4, seed=1), accumulate=3)
    samples = rows(10, role="seller")  # ceil(10 / 4) = 3 batches a pass: already whole steps of 3
    dm.push(samples)
    assert len(dm.plan) == 3
    dm = attach(TrajectoryDataModule(batch_size=4, seed=1), accumulate=2)
    dm.push(samples)
    assert len(dm.plan) == 4  # 3 batches topped up to 2 whole steps from another pass
    batches = [dm.next_batch() for _ in range(4)]
    for step in (batches[:2], batches[2:]):
        tokens = sum(b.targets.numel() for b in step)
        weights = sum(b.weights.sum().item() for b in step)
        expected = torch.tensor([tokens, sum(b.size for b in step), weights], dtype=torch.float64)
        for batch in step:
            torch.testing.assert_close(batch.step_totals.as_tensor(), expected)  # the whole step's, on each micro-batch


# ------------------------------------------------------------------------------- persist_dir and replay_dir
def with_tokenizer(dm: TrajectoryDataModule, words: list[str]) -> TrajectoryDataModule:
    """A stand-in trainer whose module has a real (tiny, word-level) tokenizer of ``words``."""
    from maro_lightning.models import build_tokenizer

    module = SimpleNamespace(tokenizer=build_tokenizer(words))
    dm.trainer = SimpleNamespace(lightning_module=module, accumulate_grad_batches=1, world_size=1, global_rank=0)
    return dm


@pytest.mark.parametrize("same", ["{d}/", "./{d}", "{d}/../{d}", "link"], ids=["slash", "dot", "dotdot", "symlink"])
def test_persist_and_replay_dir_are_compared_as_folders(tmp_path, monkeypatch, same):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rounds").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "rounds")
    with pytest.raises(ValueError, match="persist_dir and replay_dir must differ: .* are one folder"):
        TrajectoryDataModule(persist_dir="rounds", replay_dir=same.format(d="rounds"))


def test_a_second_writer_of_a_persist_dir_refuses_to_start(tmp_path):
    from maro_lightning.errors import ConfigError

    first = with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds")), ["hello"])
    second = with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds/")), ["hello"])
    first.setup("fit")
    with pytest.raises(ConfigError, match=r"data.persist_dir: .*rounds is in use by another run \(pid \d+ on "):
        second.setup("fit")
    first.push(rows(3))  # the first run writes on
    first.teardown("fit")
    second.setup("fit")  # free again once the first run ends
    assert (tmp_path / "rounds" / ".maro.lock").exists()
    second.teardown("fit")
    assert not (tmp_path / "rounds" / ".maro.lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    from maro_lightning.errors import ConfigError

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "rounds" / ".maro.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout), "token": "x"}))
    dm = with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds")), ["hello"])
    with pytest.warns(
        UserWarning, match=f"taking over the lock of a run that no longer exists \\(pid {gone.stdout.strip()}"
    ):
        dm.setup("fit")
    dm.teardown("fit")
    lock.write_text(json.dumps({"host": "another-host", "pid": 1, "token": "x"}))  # cannot be checked: honoured
    with pytest.raises(ConfigError, match="in use by another run \\(pid 1 on another-host"):
        dm.setup("fit")


def test_replay_refuses_rounds_recorded_under_another_tokenizer(tmp_path):
    from maro_lightning import persistence
    from maro_lightning.errors import ConfigError

    recorder = with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds")), ["offer", "accept"])
    recorder.setup("fit")
    recorder.push(rows(4))
    recorder.push(rows(5))
    recorder.teardown("fit")
    fingerprint = persistence.tokenizer_fingerprint(recorder.trainer.lightning_module.tokenizer)
    assert persistence.round_tokenizer(tmp_path / "rounds" / "round_000002") == fingerprint

    same = with_tokenizer(TrajectoryDataModule(replay_dir=str(tmp_path / "rounds")), ["offer", "accept"])
    same.setup("fit")
    same.push_replayed_round()
    assert same.replay_position == 1 and len(same.buffer) == 4

    other = with_tokenizer(TrajectoryDataModule(replay_dir=str(tmp_path / "rounds")), ["vote", "player"])
    other.setup("fit")
    with pytest.raises(ConfigError, match=f"round_000001 was recorded with tokenizer {fingerprint}, but the model's"):
        other.push_replayed_round()
    assert not other.buffer


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_every_replay_shard_is_checked_before_training_and_a_bad_one_is_named(tmp_path, damage):
    from maro_lightning.errors import ConfigError

    recorder = with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds")), ["hello"])
    for size in (3, 4, 5):
        recorder.push(rows(size))
    (arrow,) = (tmp_path / "rounds" / "round_000003").glob("*.arrow")
    data = arrow.read_bytes()
    arrow.write_bytes(
        {"truncated": data[: len(data) // 2], "random": random.randbytes(len(data)), "empty": b""}[damage]
    )
    replay = with_tokenizer(TrajectoryDataModule(replay_dir=str(tmp_path / "rounds")), ["hello"])
    with pytest.raises(ConfigError) as error:
        replay.setup("fit")  # before the first batch: rounds 1 and 2 are fine, round 3 is not
    assert f"round_000003 ({arrow.name}): unreadable Arrow data, truncated or corrupt" in str(error.value)
    assert "\n" not in str(error.value) and not replay.buffer


def test_under_data_parallelism_each_rank_persists_and_replays_its_own_rounds(tmp_path, monkeypatch):
    from maro_lightning import distributed
    from maro_lightning import persistence

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    for rank, size in ((0, 3), (1, 5)):  # the same round index on both ranks, different games
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        with_tokenizer(TrajectoryDataModule(persist_dir=str(tmp_path / "rounds")), ["hello"]).push(rows(size))
    saved = {p.parent.name: len(persistence.load_round(p)) for p in (tmp_path / "rounds").glob("rank_*/round_*")}
    assert saved == {"rank_000": 3, "rank_001": 5}  # neither overwrote the other
    for rank, size in ((0, 3), (1, 5)):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        replay = with_tokenizer(TrajectoryDataModule(replay_dir=str(tmp_path / "rounds")), ["hello"])
        replay.setup("fit")
        replay.push_replayed_round()
        assert len(replay.buffer) == size
