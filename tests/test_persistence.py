"""Rollout rounds saved as Arrow dataset folders and read back (maro_lightning.persistence)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
from dataclasses import fields
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from maro_lightning.credit import BehaviourSample
from maro_lightning.persistence import META_FILE
from maro_lightning.persistence import load_round
from maro_lightning.persistence import load_rounds
from maro_lightning.persistence import round_paths
from maro_lightning.persistence import save_round


@pytest.fixture(autouse=True)
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep anything ``datasets`` caches inside the test's folder, not under ~/.cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def sample(
    turn: int = 0, *, tensors: bool = True, prompt: str | None = "you are player 0", **changes
) -> BehaviourSample:
    """A behaviour sample with distinct values per field; ``tensors`` fills the four tensor fields."""
    base = BehaviourSample(
        episode_id=f"mafia/{turn}",
        game="mafia",
        seed=12345 + turn,
        player=turn % 3,
        role="villager",
        turn=turn,
        step=1,
        num_steps=3,
        valid=turn % 2 == 0,
        prompt=prompt,
        response=f"<think>vote</think> vote {turn}",
        z=-1.0,
        success=False,
        value=0.1 + turn,  # not dyadic: float64 must survive exactly
        q_value=-0.375,
        utility=1 / 3,
        reward=0.0,
        weight=1.25,
        advantage=-2.5e-7,
        utility_target=0.7,
    )
    if tensors:
        base = replace(
            base,
            prompt_ids=torch.arange(5, dtype=torch.int64) + 2**40,  # [P], beyond int32
            response_ids=torch.tensor([7, 8, 9]),  # [R]
            old_logprobs=torch.tensor([-0.1, -2.0, -30.5]),  # [R]
            ref_logprobs=torch.tensor([-0.2, -1.5, -29.0]),  # [R]
        )
    return replace(base, **changes)


def assert_same(actual: list[BehaviourSample], expected: list[BehaviourSample]) -> None:
    """Field-by-field equality: tensors by value, dtype and shape, the rest by ==."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        for f in fields(BehaviourSample):
            got, want = getattr(a, f.name), getattr(e, f.name)
            if isinstance(want, torch.Tensor):
                assert isinstance(got, torch.Tensor), f.name
                assert got.dtype == want.dtype and got.shape == want.shape, f.name
                assert torch.equal(got, want), f.name
            else:
                assert got == want and type(got) is type(want), f.name


def test_round_trip_with_tensors(tmp_path: Path) -> None:
    samples = [
        sample(0),
        sample(1, prompt=None, response="Ça va — 投票 🐺"),
        sample(2, response_ids=torch.zeros(0, dtype=torch.int64), old_logprobs=torch.zeros(0)),  # [R = 0]
    ]
    path = save_round(samples, tmp_path / "rounds", 4)
    assert path == tmp_path / "rounds" / "round_000004"
    assert json.loads((path / META_FILE).read_text()) == {"version": 1, "round": 4, "rows": 3, "tokenizer": None}
    assert_same(load_round(path), samples)


def test_round_trip_without_tensors(tmp_path: Path) -> None:
    samples = [sample(0, tensors=False), sample(1, old_logprobs=None, ref_logprobs=None)]
    loaded = load_round(save_round(samples, tmp_path, 0))
    assert_same(loaded, samples)
    assert loaded[0].prompt_ids is None and loaded[1].ref_logprobs is None


def test_tensors_are_stored_in_the_field_dtype(tmp_path: Path) -> None:
    ids = torch.tensor([1, 2], dtype=torch.int32)
    logprobs = torch.tensor([-0.5, -1.0], dtype=torch.float64)
    loaded = load_round(save_round([sample(0, response_ids=ids, old_logprobs=logprobs)], tmp_path, 0))[0]
    assert loaded.response_ids.dtype == torch.int64 and loaded.old_logprobs.dtype == torch.float32


def test_bad_tensor_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prompt_ids: expected a 1-D torch.int64"):
        save_round([sample(0, prompt_ids=torch.zeros(3))], tmp_path, 0)
    with pytest.raises(ValueError, match=r"old_logprobs: .* shape \[1, 3\]"):
        save_round([sample(0, old_logprobs=torch.zeros(1, 3))], tmp_path, 0)
    assert not list(tmp_path.glob("*round*"))  # not even a temporary folder


def test_empty_round(tmp_path: Path) -> None:
    assert load_round(save_round([], tmp_path, 0)) == []


def test_rounds_in_index_order(tmp_path: Path) -> None:
    for index in (2, 10, 1):
        save_round([sample(index), sample(100 + index)], tmp_path / "rounds", index)
    (tmp_path / "rounds" / ".round_000003.abc.tmp").mkdir()  # an unfinished save
    (tmp_path / "rounds" / "notes.txt").write_text("not a round")
    assert [p.name for p in round_paths(tmp_path / "rounds")] == ["round_000001", "round_000002", "round_000010"]
    rounds = list(load_rounds(tmp_path / "rounds"))
    assert [index for index, _ in rounds] == [1, 2, 10]
    assert [[s.turn for s in samples] for _, samples in rounds] == [[1, 101], [2, 102], [10, 110]]


def test_load_rounds_is_lazy(tmp_path: Path) -> None:
    save_round([sample(0)], tmp_path, 0)
    save_round([sample(1)], tmp_path, 1)
    (tmp_path / "round_000001" / META_FILE).unlink()  # only reading round 1 fails
    rounds = load_rounds(tmp_path)
    assert next(rounds)[0] == 0
    with pytest.raises(ValueError, match="no maro_round.json"):
        next(rounds)


def test_a_round_is_written_once(tmp_path: Path) -> None:
    save_round([sample(0)], tmp_path, 7)
    with pytest.raises(FileExistsError, match="round_000007: round 7 is already saved"):
        save_round([sample(1)], tmp_path, 7)
    with pytest.raises(ValueError, match="round_index must be >= 0"):
        save_round([sample(1)], tmp_path, -1)


def test_round_paths_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing'}: no such rounds directory"):
        round_paths(tmp_path / "missing")
    (tmp_path / "rounds" / ".round_000000.x.tmp").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="rounds: holds no rounds"):
        round_paths(tmp_path / "rounds")
    with pytest.raises(FileNotFoundError, match="holds no rounds"):
        load_rounds(tmp_path / "rounds")  # fails at the call, not at the first next()


def test_load_round_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: not a round folder"):
        load_round(tmp_path / "nowhere")
    path = save_round([sample(0)], tmp_path, 0)
    meta = path / META_FILE
    meta.write_text(json.dumps({"version": 2, "round": 0, "rows": 1}))
    with pytest.raises(ValueError, match="round_000000: format version 2, this code reads version 1"):
        load_round(path)
    meta.write_text("{not json")
    with pytest.raises(ValueError, match="maro_round.json: not valid JSON"):
        load_round(path)
    meta.write_text(json.dumps({"version": 1, "round": 0, "rows": 5}))
    with pytest.raises(ValueError, match="1 rows, but maro_round.json says 5"):
        load_round(path)
    meta.unlink()
    with pytest.raises(ValueError, match="round_000000: no maro_round.json"):
        load_round(path)


def test_load_round_names_missing_and_unknown_columns(tmp_path: Path) -> None:
    import datasets

    path = save_round([sample(0)], tmp_path, 0)
    changes = [
        (lambda d: d.remove_columns(["ref_logprobs", "z"]), "missing column(s) z, ref_logprobs"),
        (lambda d: d.add_column("kl", [0.5]), "unknown column(s) kl"),
    ]
    for change, message in changes:
        edited = tmp_path / "edited"
        change(datasets.load_from_disk(str(path))).save_to_disk(str(edited))
        shutil.copy(path / META_FILE, edited / META_FILE)
        with pytest.raises(ValueError, match=re.escape(message)):
            load_round(edited)
        shutil.rmtree(edited)


def test_import_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # any `import datasets` now raises ImportError
    monkeypatch.delitem(sys.modules, "maro_lightning.persistence")
    module = importlib.import_module("maro_lightning.persistence")
    assert module.round_paths is not None
