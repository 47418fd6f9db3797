"""The training batch: scored behaviour samples right-padded into the tensors ``MaroModule.training_step`` reads.

Also :func:`right_pad`, which the scoring forward shares, and :func:`response_positions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from maro_lightning.credit import BehaviourSample

Pair = tuple[list[int], list[int]]  # (prompt ids, response ids) of one behaviour


class StepTotals(NamedTuple):
    """What one whole optimizer step holds, over all its micro-batches and ranks. The losses divide by these, so
    that gradient accumulation and data parallelism give the gradient of one big batch."""

    tokens: float
    """Response tokens (the token-mean normaliser)."""
    behaviours: float
    """Behaviours (the sequence-mean normaliser)."""
    weight: float
    """The sum of the behaviours' M2 weights (the utility loss's normaliser)."""

    @classmethod
    def of(cls, samples: Sequence[BehaviourSample]) -> StepTotals:
        tokens = sum(len(s.response_ids) for s in samples)
        return cls(float(tokens), float(len(samples)), float(sum(s.weight for s in samples)))

    def as_tensor(self) -> Tensor:
        """``[3]`` float64 (tokens, behaviours, weight), e.g. to sum over ranks."""
        return torch.tensor(self, dtype=torch.float64)


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """``[B, L]`` int64 ids and attention mask, padded on the right (training and scoring read positions from
    the left). Generation pads on the left instead: :func:`maro_lightning.rollout.left_pad`."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    ids = torch.full((len(rows), max(map(len, rows), default=0)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, (torch.arange(ids.shape[1]) < lengths[:, None]).long()


def response_positions(pairs: Sequence[Pair]) -> tuple[Tensor, Tensor]:
    """``([T], [T])`` int64: the row and the position *predicting* each response token (one before it)."""
    rows = torch.cat([torch.full((len(r),), b, dtype=torch.long) for b, (_, r) in enumerate(pairs)])
    cols = torch.cat([torch.arange(len(p) - 1, len(p) - 1 + len(r)) for p, r in pairs])
    return rows, cols


@dataclass
class TrajectoryBatch:
    """B behaviours (prompt + response, right-padded) with their T response tokens, ready for the loss.

    Attributes:
        input_ids: [B, L] int64, prompt + response, padded on the right.
        attention_mask: [B, L] int64.
        token_rows: [T] int64, the row of each response token.
        token_cols: [T] int64, the position that *predicts* each response token (one before it).
        targets: [T] int64, the response tokens.
        advantages: [T] float32, the behaviour's advantage on each of its tokens.
        token_weights: [T] float32, the behaviour's M2 weight on each of its tokens.
        old_logprobs: [T] float32 under the rollout policy, or None (on-policy ratio 1: imitation rounds).
        ref_logprobs: [T] float32 under the frozen reference, or None.
        prompt_last: [B] int64, position of the last prompt token (V is read there).
        response_last: [B] int64, position of the last response token (Q).
        utility_targets: [B] float32, what the utility head regresses.
        weights: [B] float32, the M2 weights.
        response_lengths: [B] int64.
        keys: B labels ``"game/role"``.
        rewards: [B] float32, the outcome z of the behaving player.
        success: [B] bool.
        valid: [B] bool, whether the behaviour was a legal action.
        step_totals: the totals of the whole optimizer step this batch belongs to: all its micro-batches, on all
            ranks (``collate`` gives the batch's own; the data module the step's).
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_rows: Tensor
    token_cols: Tensor
    targets: Tensor
    advantages: Tensor
    token_weights: Tensor
    old_logprobs: Tensor | None
    ref_logprobs: Tensor | None
    prompt_last: Tensor
    response_last: Tensor
    utility_targets: Tensor
    weights: Tensor
    response_lengths: Tensor
    keys: list[str]
    rewards: Tensor
    success: Tensor
    valid: Tensor
    step_totals: StepTotals

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]


def collate(samples: Sequence[BehaviourSample], pad_id: int) -> TrajectoryBatch:
    """Pad B scored samples into one :class:`TrajectoryBatch`."""
    missing = [s.episode_id for s in samples if s.prompt_ids is None or s.response_ids is None]
    if missing or not samples:
        raise ValueError(f"collate needs scored samples with token ids; unscored: {missing[:3]} of {len(samples)}")
    pairs = [(s.prompt_ids.tolist(), s.response_ids.tolist()) for s in samples]
    ids, mask = right_pad([prompt + response for prompt, response in pairs], pad_id)
    lengths = mask.sum(1)
    response_lengths = torch.tensor([len(r) for _, r in pairs])
    rows, cols = response_positions(pairs)
    per_token = lambda name: torch.tensor([getattr(s, name) for s in samples], dtype=torch.float32)[rows]  # noqa: E731
    return TrajectoryBatch(
        input_ids=ids,
        attention_mask=mask,
        token_rows=rows,
        token_cols=cols,
        targets=torch.cat([s.response_ids for s in samples]).long(),
        advantages=per_token("advantage"),
        token_weights=per_token("weight"),
        old_logprobs=_tokens(samples, "old_logprobs"),
        ref_logprobs=_tokens(samples, "ref_logprobs"),
        prompt_last=torch.tensor([len(p) - 1 for p, _ in pairs]),
        response_last=lengths - 1,
        utility_targets=torch.tensor([s.utility_target for s in samples], dtype=torch.float32),
        weights=torch.tensor([s.weight for s in samples], dtype=torch.float32),
        response_lengths=response_lengths,
        keys=[f"{s.game}/{s.role}" for s in samples],
        rewards=torch.tensor([s.z for s in samples], dtype=torch.float32),
        success=torch.tensor([s.success for s in samples]),
        valid=torch.tensor([s.valid for s in samples]),
        step_totals=StepTotals.of(samples),
    )


def _tokens(samples: Sequence[BehaviourSample], name: str) -> Tensor | None:
    """[T] float32 concatenation of a per-token field, or None when no sample has it; a mix is an error."""
    values = [getattr(s, name) for s in samples]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise ValueError(f"a batch mixes samples with and without {name}; keep imitation and RL rounds apart")
    return torch.cat(values).float()
