"""The trajectory data module (docs/design.md#data-flow): a bounded buffer of behaviour samples, as padded batches.

The :class:`~maro_lightning.callbacks.SimulationCallback` pushes each scored rollout round here. The train
loader yields only *tickets*; ``on_before_batch_transfer`` turns each ticket into the next batch of the
current plan right before ``training_step`` (docs/design.md#the-training-loop): a loader that read the buffer itself
would be prefetched one batch early and train on the round before the newest.

A *plan* is the round's batches for ``passes`` passes (PPO epochs) over the buffer, shuffled or
role-balanced (M2 by sampling). Every round can be saved as an Arrow shard (``persist_dir``), and a replay
run (``replay_dir``) trains from saved shards with no simulation at all.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import defaultdict
from collections import deque
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from torch.utils.data import IterableDataset

from maro_lightning import distributed
from maro_lightning import persistence
from maro_lightning.batch import StepTotals
from maro_lightning.batch import TrajectoryBatch
from maro_lightning.batch import collate
from maro_lightning.credit import BehaviourSample
from maro_lightning.errors import ConfigError
from maro_lightning.evaluation import LadderConfig
from maro_lightning.evaluation import LadderMatch
from maro_lightning.evaluation import ladder_matches
from maro_lightning.models import pad_id
from maro_lightning.seeding import root_seed

Sampling = Literal["shuffle", "role_balanced"]


def batch_plan(
    samples: Sequence[BehaviourSample], batch_size: int, passes: int, sampling: Sampling, rng: random.Random
) -> list[list[int]]:
    """Sample indices of every batch of ``passes`` passes over ``samples``: ceil(N / batch_size) batches a pass.

    ``shuffle``: each pass is a permutation. ``role_balanced``: each batch takes its rows in turn from every
    (game, role), cycling through a reshuffled order of each, so a rare role is drawn as often as a
    common one (M2 by sampling).
    """
    n = len(samples)
    per_pass = math.ceil(n / batch_size)
    if sampling == "shuffle":
        plan = []
        for _ in range(passes):
            order = rng.sample(range(n), n)
            plan += [order[i : i + batch_size] for i in range(0, n, batch_size)]
        return plan
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        groups[(sample.game, sample.role)].append(index)
    streams = [_reshuffled(indices, rng) for _, indices in sorted(groups.items())]
    size = min(batch_size, n)
    plan = []
    for _ in range(passes * per_pass):
        offset = rng.randrange(len(streams))  # which role gets the extra rows of an uneven split
        plan.append([next(streams[(offset + j) % len(streams)]) for j in range(size)])
    return plan


def _reshuffled(indices: list[int], rng: random.Random) -> Iterator[int]:
    """The indices forever, in a fresh random order on every cycle."""
    while True:
        yield from rng.sample(indices, len(indices))


class TicketStream(IterableDataset):
    """0, 1, 2, ... forever: the train loader's items; the data module resolves them into batches late."""

    def __iter__(self) -> Iterator[int]:
        return itertools.count()


class TrajectoryDataModule(L.LightningDataModule):
    """Batches of scored behaviour samples for ``MaroModule.training_step``, and the evaluation ladder.

    Args:
        batch_size: behaviours per training batch (a micro-batch under gradient accumulation).
        passes: passes over the buffer per round (PPO epochs): a round gives ``passes · ceil(N / batch_size)``
            batches (topped up to whole optimizer steps under gradient accumulation), after which the
            simulation plays the next round.
        sampling: ``"shuffle"`` or ``"role_balanced"`` (stratified batches per (game, role): M2 by sampling,
            on top of the credit weights or instead of them with ``credit.weighting: none``).
        buffer_rounds: rounds the buffer keeps (1: on-policy, only the newest; more reuse older rounds, whose
            importance ratios the clipped loss then corrects).
        persist_dir: save every pushed round there as an Arrow shard (``round_000001``, ...), or None; under
            data parallelism each rank saves its own rounds in ``persist_dir/rank_NNN``. The folder is locked
            while the run trains: a second run refuses to write into it.
        replay_dir: train from the shards saved there instead of simulating (no SimulationCallback allowed;
            every shard is read before training, and must have been written with the model's tokenizer; a rank
            reads its ``rank_NNN`` subfolder when there is one);
            the rounds are replayed in order, and again from the first once all are used.
        seed: the batch-plan RNG (per rank: the rank is added); None: the run's ``seed_everything`` value.
        evaluation: the scripted ladder played by ``validate``/``test`` (and by fit's validation).
    """

    def __init__(
        self,
        batch_size: int = 32,
        passes: int = 1,
        sampling: Sampling = "shuffle",
        buffer_rounds: int = 1,
        persist_dir: str | None = None,
        replay_dir: str | None = None,
        seed: int | None = None,
        evaluation: LadderConfig | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or passes < 1 or buffer_rounds < 1:
            raise ValueError(
                f"need batch_size, passes, buffer_rounds >= 1; got {batch_size}, {passes}, {buffer_rounds}"
            )
        if sampling not in ("shuffle", "role_balanced"):
            raise ValueError(f"sampling must be 'shuffle' or 'role_balanced', got {sampling!r}")
        if persist_dir is not None and replay_dir is not None and _same_folder(persist_dir, replay_dir):
            raise ValueError(
                f"persist_dir and replay_dir must differ: {persist_dir} and {replay_dir} are one folder, and a replay "
                "would read the shards it writes"
            )
        self.batch_size, self.passes, self.sampling = batch_size, passes, sampling
        self.persist_dir, self.replay_dir, self.seed = persist_dir, replay_dir, seed
        self.evaluation = evaluation or LadderConfig()
        self.rounds: deque[list[BehaviourSample]] = deque(maxlen=buffer_rounds)
        self.round_index = 0
        self.plan: list[list[int]] = []
        self.cursor = 0
        self.rng = random.Random(0)  # re-seeded per rank in setup, before the first round
        self.replay_position = 0  # rounds taken from replay_dir so far
        self._step_totals: StepTotals | None = None  # of the current optimizer step, over all ranks
        self._lock = None if persist_dir is None else persistence.DirectoryLock(persist_dir)
        self._replay_tokenizers: dict[Any, str | None] | None = None  # shard -> fingerprint, checked at setup

    # ------------------------------------------------------------------------------------------ the buffer
    def setup(self, stage: str) -> None:
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if stage == "fit":
            self._check_folders(rank)
        if self.round_index == 0:  # not yet fed: a per-rank stream (a resume restores the saved one after this)
            self.rng = random.Random(root_seed(self.seed) * 1_000_003 + rank)

    def push(self, samples: list[BehaviourSample]) -> None:
        """Add a scored round (replacing the oldest beyond ``buffer_rounds``) and plan its batches."""
        if not samples:
            raise ValueError("an empty round: no policy behaviour was played (check the games' learner seats)")
        self.round_index += 1
        self.rounds.append(samples)
        if self.persist_dir is not None:
            tokenizer = self._tokenizer_fingerprint()
            folder = _rank_folder(self.persist_dir, writing=True)
            persistence.save_round(samples, folder, self.round_index, overwrite=True, tokenizer=tokenizer)
        self._replan()

    @property
    def buffer(self) -> list[BehaviourSample]:
        """Every sample the buffer holds, oldest round first."""
        return [s for r in self.rounds for s in r]

    @property
    def needs_round(self) -> bool:
        """True when the plan of the current buffer is used up (or there is none yet)."""
        return self.cursor >= len(self.plan)

    def next_batch(self) -> TrajectoryBatch:
        """The next planned batch; a replay run loads its next round when the plan is used up."""
        if self.needs_round and self.replay_dir is not None:
            self.push_replayed_round()
        if not self.plan:
            raise RuntimeError("the trajectory buffer is empty: add a SimulationCallback or set replay_dir")
        if self.needs_round:  # the simulation has not refilled yet (e.g. rollout_every > plan): another pass
            self._replan()
        buffer = self.buffer
        k = self._accumulation()
        if self.cursor % k == 0 or self._step_totals is None:  # a new optimizer step (or a resume inside one)
            first = self.cursor - self.cursor % k
            step = [buffer[i] for indices in self.plan[first : first + k] for i in indices]
            self._step_totals = self._sum_over_ranks(StepTotals.of(step))
        batch = collate([buffer[i] for i in self.plan[self.cursor]], pad_id(self.trainer.lightning_module.tokenizer))
        batch.step_totals = self._step_totals
        self.cursor += 1
        return batch

    def push_replayed_round(self) -> None:
        """Push the next saved round of ``replay_dir``, in round order, from the first again after the last."""
        paths = persistence.round_paths(_rank_folder(self.replay_dir, writing=False))
        if self.replay_position == 0 or self._replay_tokenizers is not None:
            self._check_replay_tokenizer(paths)
        path = paths[self.replay_position % len(paths)]
        self.replay_position += 1
        samples = persistence.load_round(path)
        rank_zero_info(f"replaying {path} ({len(samples)} samples)")
        self.push(samples)

    def teardown(self, stage: str) -> None:
        if self._lock is not None:
            self._lock.release()

    def on_exception(self, exception: BaseException) -> None:
        self.teardown("fit")

    def _check_folders(self, rank: int) -> None:
        """Before training: ``persist_dir`` is this run's alone (locked), and every shard of ``replay_dir`` reads.

        Raises:
            ConfigError: naming the folder, the other run or the bad shard.
        """
        if self._lock is not None and rank == 0:
            try:
                self._lock.acquire()
            except RuntimeError as err:
                raise ConfigError(f"data.persist_dir: {err}") from None
        if self.replay_dir is not None:
            try:
                self._replay_tokenizers = persistence.check_rounds(_rank_folder(self.replay_dir, writing=False))
            except (OSError, ValueError) as err:
                raise ConfigError(f"data.replay_dir: {err}") from None

    def _check_replay_tokenizer(self, paths: list[Any]) -> None:
        """Every shard was written with this model's tokenizer: other token ids would train on other words."""
        ours = self._tokenizer_fingerprint()
        recorded = self._replay_tokenizers or {path: persistence.round_tokenizer(path) for path in paths}
        for path, theirs in recorded.items():
            if theirs != ours:
                raise ConfigError(
                    f"data.replay_dir: {path} was recorded with tokenizer {theirs or 'unknown (none recorded)'}, but "
                    f"the model's tokenizer is {ours}: its token ids would be read as other words"
                )
        self._replay_tokenizers = None  # checked

    def _tokenizer_fingerprint(self) -> str | None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        tokenizer = getattr(module, "tokenizer", None)
        return persistence.tokenizer_fingerprint(tokenizer) if hasattr(tokenizer, "get_vocab") else None

    def _replan(self) -> None:
        """Plan the buffer's batches; a whole number of optimizer steps (topped up from another pass), so that
        every round starts an optimizer step and no step mixes two rounds."""
        self.plan = batch_plan(self.buffer, self.batch_size, self.passes, self.sampling, self.rng)
        k = self._accumulation()
        while len(self.plan) % k:
            extra = batch_plan(self.buffer, self.batch_size, 1, self.sampling, self.rng)
            self.plan += extra[: k - len(self.plan) % k]
        self.cursor, self._step_totals = 0, None

    def _accumulation(self) -> int:
        return self.trainer.accumulate_grad_batches if self.trainer is not None else 1

    def _sum_over_ranks(self, totals: StepTotals) -> StepTotals:
        if self.trainer is None or self.trainer.world_size == 1:
            return totals
        summed = self.trainer.strategy.reduce(totals.as_tensor().to(self.trainer.strategy.root_device), reduce_op="sum")
        return StepTotals(*summed.cpu().tolist())

    # --------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        # generator=: the loader's base seed would otherwise draw from the global RNG after a resume restored
        # it, shifting every later draw (docs/design.md#the-training-loop).
        return DataLoader(TicketStream(), batch_size=None, num_workers=0, generator=torch.Generator())

    def val_dataloader(self) -> DataLoader:
        return self._ladder_loader()

    def test_dataloader(self) -> DataLoader:
        return self._ladder_loader()

    def _ladder_loader(self) -> DataLoader:
        """One item per (game, opponent) match of the ladder; ``MaroModule.validation_step`` plays it."""
        matches = ladder_matches(self.evaluation)
        return DataLoader(matches, batch_size=None, collate_fn=_identity)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            return self.next_batch()  # the ticket becomes the newest round's next batch, here and not earlier
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, LadderMatch):
            return batch  # a match is played, not moved: it holds names and seeds
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Every rank's buffer, plan, plan position and RNG (gathered: Lightning saves rank 0's checkpoint, and
        each rank has its own games), so a resumed run trains on the same batches on every rank."""
        return {"ranks": distributed.all_gather_object(self._local_state())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state["ranks"]
        if len(ranks) != distributed.world_size():  # another world size: start with a fresh round instead
            rank_zero_warn(
                f"the checkpoint's buffer is of {len(ranks)} ranks, not {distributed.world_size()}: "
                "it is dropped and the run starts with a new round"
            )
            return
        self._load_local_state(ranks[distributed.rank()])

    def _local_state(self) -> dict[str, Any]:
        version, rng_state, gauss = self.rng.getstate()
        return {
            "rounds": [[_row(s) for s in r] for r in self.rounds],
            "round_index": self.round_index,
            "plan": self.plan,
            "cursor": self.cursor,
            "replay_position": self.replay_position,
            "rng": [version, list(rng_state), gauss],
        }

    def _load_local_state(self, state: dict[str, Any]) -> None:
        self.rounds.clear()
        self.rounds.extend([BehaviourSample(**row) for row in r] for r in state["rounds"])
        self.round_index, self.plan, self.cursor = state["round_index"], state["plan"], state["cursor"]
        self.replay_position = state["replay_position"]
        version, rng_state, gauss = state["rng"]
        self.rng.setstate((version, tuple(rng_state), gauss))
        self._step_totals = None  # recomputed from the plan at the next batch


def _row(sample: BehaviourSample) -> dict[str, Any]:
    """A sample as a dict of plain values and tensors (``torch.load(weights_only=True)`` reads it back)."""
    return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}


def _rank_folder(folder: str, writing: bool) -> Path:
    """This rank's rounds: ``folder/rank_NNN`` when several ranks write (each plays its own games; one folder
    would have them overwrite each other's rounds), and when replaying a folder that has one for this rank."""
    ranked = Path(folder) / f"rank_{distributed.rank():03d}"
    several = distributed.world_size() > 1
    return ranked if (several and writing) or (not writing and ranked.is_dir()) else Path(folder)


def _same_folder(a: str, b: str) -> bool:
    """Whether two folder names are one folder (``runs/x/`` and ``./runs/x``, a symlink and its target)."""
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _identity(match: LadderMatch) -> LadderMatch:
    return match
