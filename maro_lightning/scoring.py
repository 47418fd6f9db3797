"""Scoring a rollout round (docs/design.md#data-flow): played games -> behaviour samples.

One no-grad forward of the policy trunk over every policy behaviour's prompt + response gives the old
log-probs of the response tokens (through ``maro_kernels.selective_logprobs``: no ``[tokens × vocab]``
tensor) and the hidden states the utility head reads for V (last prompt token) and Q (last response
token); with a frozen reference, a second forward gives the reference log-probs of the KL term. The
credit assigner then turns episodes, V and Q into :class:`BehaviourSample` rows, over the whole round of
every rank when training is distributed (so that its baselines and role counts agree on every rank).

A reference that shares the policy's trunk (LoRA's base) could be scored in the policy's own forward (peft's
mixed-adapter batch): measured on CPU, that one forward of 2B rows took 1.17-1.29× the time of the two forwards
of B rows, so there are two (benchmarks/RESULTS.md, "Rollout and scoring throughput").
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from maro_kernels import selective_logprobs
from maro_lightning import distributed
from maro_lightning.batch import Pair
from maro_lightning.batch import response_positions
from maro_lightning.batch import right_pad
from maro_lightning.credit import BehaviourSample
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditHooks
from maro_lightning.credit import Episode
from maro_lightning.credit import flatten
from maro_lightning.models import UtilityHead
from maro_lightning.models import trunk_and_head
from maro_lightning.rollout import PlayedGame


@dataclass
class ScoredRound:
    """A played round after the scoring forward, in ``credit.flatten`` order over its N behaviours.

    Attributes:
        episodes: the finished games, reduced to the policy players' behaviours.
        values: [N] float32, V_t.
        q_values: [N] float32, Q_t.
        pairs: N (prompt ids, response ids).
        old_logprobs: N tensors [R_n] float32, the response tokens' log-probs under the rollout policy (None
            when the round was not scored: behaviour cloning).
        ref_logprobs: the same under the frozen reference, or None without one.
    """

    episodes: list[Episode]
    values: Tensor
    q_values: Tensor
    pairs: list[Pair]
    old_logprobs: list[Tensor | None]
    ref_logprobs: list[Tensor] | None = None

    def attach(self, samples: list[BehaviourSample]) -> list[BehaviourSample]:
        """Put the token ids and log-probs on the credited samples of this round (same order)."""
        refs = self.ref_logprobs or [None] * len(samples)
        for sample, (prompt, response), old, ref in zip(samples, self.pairs, self.old_logprobs, refs, strict=True):
            sample.prompt_ids, sample.response_ids = torch.tensor(prompt), torch.tensor(response)
            sample.old_logprobs, sample.ref_logprobs = old, ref
        return samples


@torch.no_grad()
def score_round(
    model: PreTrainedModel,
    head: UtilityHead,
    games: list[PlayedGame],
    *,
    reference: AbstractContextManager[PreTrainedModel] | None = None,
    temperature: float = 1.0,
    batch_size: int = 64,
    pad_id: int = 0,
    forward: bool = True,
    lockstep: bool = False,
) -> ScoredRound:
    """V, Q, old (and reference) log-probs of every policy behaviour of ``games``, ``batch_size`` behaviours per
    forward. ``temperature`` divides the logits as in sampling, so the log-probs are the sampler's.

    ``reference`` is entered once around the reference forwards and gives the frozen reference model:
    ``nullcontext(snapshot)``, or under LoRA the policy with its adapters disabled (``lora.adapters_disabled``).

    ``forward=False`` skips the model (V = Q = 0, no log-probs): behaviour cloning rounds need none of it, as
    their loss is the teacher's likelihood and the utility head regresses the outcome.

    With ``lockstep`` (``model`` is sharded by FSDP: each forward gathers its layers over the ranks), every rank
    runs as many forwards of ``model`` as the rank with the most batches, the extra ones on a one-token no-op row."""
    episodes = [Episode.from_env(g.env, policy_players=g.policy_players, prompts=g.prompts) for g in games]
    game_of = {id(episode): game for episode, game in zip(episodes, games, strict=True)}
    pairs = [
        (game_of[id(episode)].prompt_ids[b.index], game_of[id(episode)].response_ids[b.index])
        for episode, b in flatten(episodes)
    ]
    if not forward:
        zeros = torch.zeros(len(pairs))
        return ScoredRound(episodes, zeros, zeros.clone(), pairs, [None] * len(pairs))
    n = len(pairs)
    values, q_values = torch.zeros(n), torch.zeros(n)
    old: list[Tensor | None] = [None] * n
    batches = length_sorted_batches(pairs, batch_size)
    no_ops = distributed.max_over_ranks([len(batches)])[0] - len(batches) if lockstep else 0
    with _eval_mode(model):
        _no_op_forwards(model, no_ops, pad_id, temperature)
        for rows in batches:
            chunk = [pairs[i] for i in rows]
            hidden, logprobs = response_logprobs(model, chunk, pad_id, temperature)
            v, q = head.behaviour_values(hidden, *_last_positions(chunk, hidden.device))
            values[rows], q_values[rows] = v.float().cpu(), q.float().cpu()
            _put(old, rows, logprobs)
    ref = None if reference is None else _reference_logprobs(reference, pairs, batches, pad_id, temperature)
    return ScoredRound(episodes, values, q_values, pairs, old, ref)


def length_sorted_batches(pairs: list[Pair], batch_size: int) -> list[list[int]]:
    """Row indices of ``pairs`` in batches of ``batch_size``, by total length: a batch's rows are padded to its
    longest, so batches of similar lengths waste little on padding (the results go back to flattening order).

    Packing several behaviours into one row (``DataCollatorWithFlattening``'s position-id resets) would waste no
    padding at all, but pays off only with a variable-length attention kernel (flash-attention's varlen): eager and
    SDPA attention would attend over the packed row, quadratic in its length."""
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    return [order[start : start + batch_size] for start in range(0, len(pairs), batch_size)]


def _put(out: list[Tensor | None], rows: list[int], values: list[Tensor]) -> None:
    """``out[rows[k]] = values[k]``: a batch's results back in flattening order."""
    for i, value in zip(rows, values, strict=True):
        out[i] = value


def _reference_logprobs(
    reference: AbstractContextManager[PreTrainedModel],
    pairs: list[Pair],
    batches: list[list[int]],
    pad_id: int,
    temperature: float,
) -> list[Tensor]:
    """The response tokens' log-probs under the reference, over the same ``batches`` of row indices."""
    logprobs: list[Tensor | None] = [None] * len(pairs)
    with reference as model, _eval_mode(model):
        for rows in batches:
            _put(logprobs, rows, response_logprobs(model, [pairs[i] for i in rows], pad_id, temperature)[1])
    return logprobs


def _no_op_forwards(model: PreTrainedModel, count: int, pad_id: int, temperature: float) -> None:
    """``count`` forwards of a one-token row whose results are dropped: a rank with fewer scoring batches than
    another runs them, so that the forwards of a sharded model (collective) match over the ranks."""
    for _ in range(count):
        response_logprobs(model, [([pad_id], [pad_id])], pad_id, temperature)


def credit_round(
    assigner: CreditAssigner,
    scored: ScoredRound,
    gather: Callable[[Any], list[Any]] | None = None,
    rank: int = 0,
    hooks: CreditHooks | None = None,
) -> list[BehaviourSample]:
    """Credit a scored round and attach its tensors; ``hooks`` as in :meth:`CreditAssigner.assign`.

    With ``gather`` (an all-gather of Python objects over the ranks, e.g. ``all_gather_object``), every rank
    assigns credit over the episodes of all ranks, so the assigner's state (EMA baselines, rolling role
    counts) and the per-role advantage normalisation are the same everywhere; each rank keeps its own rows.
    """
    if gather is None:
        return scored.attach(assigner.assign(scored.episodes, scored.values, scored.q_values, hooks))
    parts = gather((scored.episodes, scored.values, scored.q_values))
    episodes = [e for part in parts for e in part[0]]
    samples = assigner.assign(episodes, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), hooks)
    start = sum(len(p[1]) for p in parts[:rank])
    return scored.attach(samples[start : start + len(scored.values)])


def response_logprobs(
    model: PreTrainedModel, pairs: list[Pair], pad_id: int, temperature: float = 1.0
) -> tuple[Tensor, list[Tensor]]:
    """The trunk's hidden states ``[B, L, H]`` over prompt + response (right-padded) and each response's
    token log-probs (B tensors ``[R_b]`` fp32, on the CPU)."""
    trunk, weight, bias = trunk_and_head(model)
    device = weight.device
    ids, mask = right_pad([prompt + response for prompt, response in pairs], pad_id)
    # use_cache=False: a KV cache of the whole batch would be built and thrown away (~10% of the forward on CPU)
    hidden = trunk(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).last_hidden_state
    rows, cols = response_positions(pairs)
    targets = torch.cat([torch.tensor(r, dtype=torch.long) for _, r in pairs]).to(device)  # [T]
    picked = hidden[rows.to(device), cols.to(device)]  # [T, H]
    logprobs, _ = selective_logprobs(picked, weight, targets, bias=bias, temperature=temperature, entropy=False)
    return hidden, list(logprobs.float().cpu().split([len(r) for _, r in pairs]))


def _last_positions(pairs: list[Pair], device: torch.device) -> tuple[Tensor, Tensor]:
    """Positions of each row's last prompt token (V) and last response token (Q)."""
    prompt_last = torch.tensor([len(p) - 1 for p, _ in pairs], device=device)
    return prompt_last, torch.tensor([len(p) + len(r) - 1 for p, r in pairs], device=device)


class _eval_mode:  # noqa: N801 - used like torch.no_grad
    """Put a module (or None) in eval mode for a block and restore its mode after."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.module, self.was_training = module, module is not None and module.training

    def __enter__(self) -> None:
        if self.module is not None:
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        if self.module is not None:
            self.module.train(self.was_training)
