"""Scoring a rollout round (docs/design.md#data-flow): played games -> behaviour samples.

One no-grad forward of the policy trunk over every policy behaviour's prompt + response gives the old
log-probs of the response tokens (through ``maro_kernels.selective_logprobs``: no ``[tokens × vocab]``
tensor) and the hidden states the utility head reads for V (last prompt token) and Q (last response
token); with a frozen reference, a second forward gives the reference log-probs of the KL term. The
credit assigner then turns episodes, V and Q into :class:`BehaviourSample` rows, over the whole round of
every rank when training is distributed (so that its baselines and role counts agree on every rank).

Behaviours of one player in one game share most of their prompt (the rules, the history so far): with
``share_prefixes``, each such group is packed into one row, the shared prefix once and every behaviour's own
rest after it, under a 4D mask that lets each behaviour see the prefix and itself only and position ids that
continue the prefix, so every behaviour's states are the ones it would get alone (the tree attention of
SpecInfer, Miao et al. 2023, and of prefix-sharing RL trainers; here over one level of prefix).

A reference that shares the policy's trunk (LoRA's base) could be scored in the policy's own forward (peft's
mixed-adapter batch): measured on CPU, that one forward of 2B rows took 1.17-1.29× the time of the two forwards
of B rows, so there are two (benchmarks/RESULTS.md, "Rollout and scoring throughput").
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from maro_kernels import selective_logprobs
from maro_lightning import distributed
from maro_lightning.batch import Pair
from maro_lightning.batch import right_pad
from maro_lightning.credit import Behaviour
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
    share_prefixes: bool = False,
) -> ScoredRound:
    """V, Q, old (and reference) log-probs of every policy behaviour of ``games``, ``batch_size`` behaviours per
    forward. ``temperature`` divides the logits as in sampling, so the log-probs are the sampler's.

    ``reference`` is entered once around the reference forwards and gives the frozen reference model:
    ``nullcontext(snapshot)``, or under LoRA the policy with its adapters disabled (``lora.adapters_disabled``).

    ``forward=False`` skips the model (V = Q = 0, no log-probs): behaviour cloning rounds need none of it, as
    their loss is the teacher's likelihood and the utility head regresses the outcome.

    With ``lockstep`` (``model`` is sharded by FSDP: each forward gathers its layers over the ranks), every rank
    runs as many forwards of ``model`` as the rank with the most batches, the extra ones on a one-token no-op row.

    ``share_prefixes`` packs the behaviours of each (game, player) into one row over their shared prompt prefix (see
    the module's docstring): the same results (to float rounding) from fewer positions. It needs an attention that
    takes a 4D mask (eager, SDPA; not flash-attention) and a head that reads single positions (``inputs: last``)."""
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
    groups = prefix_groups(flatten(episodes), batch_size) if share_prefixes else [[i] for i in range(n)]
    batches = [pack(pairs, chunk, pad_id) for chunk in group_batches(pairs, groups, batch_size)]
    no_ops = distributed.max_over_ranks([len(batches)])[0] - len(batches) if lockstep else 0
    with _eval_mode(model):
        _no_op_forwards(model, no_ops, pad_id, temperature)
        for batch in batches:
            hidden, logprobs = packed_logprobs(model, batch, temperature)
            v, q = head.behaviour_values(hidden, batch.prompt_last, batch.response_last, batch.rows)
            values[batch.behaviours], q_values[batch.behaviours] = v.float().cpu(), q.float().cpu()
            _put(old, batch.behaviours, logprobs)
    ref = None if reference is None else _reference_logprobs(reference, n, batches, temperature)
    return ScoredRound(episodes, values, q_values, pairs, old, ref)


def prefix_groups(behaviours: list[tuple[Episode, Behaviour]], size: int) -> list[list[int]]:
    """Indices of the behaviours of each (episode, player), in chunks of at most ``size``: the groups whose prompts
    share a prefix (the rules, the history up to the first of them)."""
    by_player: dict[tuple[int, int], list[int]] = {}
    for i, (episode, behaviour) in enumerate(behaviours):
        by_player.setdefault((id(episode), behaviour.player), []).append(i)
    return [group[start : start + size] for group in by_player.values() for start in range(0, len(group), size)]


def group_batches(pairs: list[Pair], groups: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """``groups`` in batches of at most ``batch_size`` behaviours, sorted by packed length: a batch's rows are padded
    to its longest, so batches of similar lengths waste little on padding (the results go back to flattening order).

    Packing behaviours that share no prefix into one row would waste no padding either, but pays off only with a
    variable-length attention kernel (flash-attention's varlen): eager and SDPA attention would attend over the
    whole packed row, quadratic in its length."""
    ordered = sorted(groups, key=lambda group: packed_length(pairs, group))
    batches: list[list[list[int]]] = []
    for group in ordered:
        if not batches or sum(map(len, batches[-1])) + len(group) > batch_size:
            batches.append([])
        batches[-1].append(group)
    return batches


def shared_prefix(pairs: list[Pair], group: list[int]) -> int:
    """Length of the prompt prefix every behaviour of ``group`` shares (at most its shortest prompt)."""
    prompts = [pairs[i][0] for i in group]
    first, length = prompts[0], min(map(len, prompts))
    for prompt in prompts[1:]:
        length = next((k for k in range(length) if prompt[k] != first[k]), length)
    return length


def packed_length(pairs: list[Pair], group: list[int]) -> int:
    """Positions of ``group``'s row: the shared prefix once, then each behaviour's rest of prompt and response."""
    prefix = shared_prefix(pairs, group)
    return prefix + sum(len(pairs[i][0]) + len(pairs[i][1]) - prefix for i in group)


@dataclass
class PackedBatch:
    """One scoring forward: a row per group of behaviours, and where each behaviour's states lie in it.

    Attributes:
        behaviours: the M behaviours' indices (flattening order), row by row.
        input_ids: [B, L] int64, right-padded.
        attention_mask: [B, L] int64 when every row holds one behaviour; else [B, 1, L, L] bool (True: may attend),
            made additive in the model's dtype by :func:`packed_logprobs`.
        position_ids: [B, L] int64 (a behaviour's positions continue its row's shared prefix), or None (0, 1, ...).
        rows: [M] int64, each behaviour's row.
        prompt_last, response_last: [M] int64, the positions of its last prompt token (V) and last response token (Q).
        token_rows, token_cols: [T] int64, the row and the position *predicting* each response token.
        targets: [T] int64, the response tokens.
        response_lengths: M ints.
    """

    behaviours: list[int]
    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor | None
    rows: Tensor
    prompt_last: Tensor
    response_last: Tensor
    token_rows: Tensor
    token_cols: Tensor
    targets: Tensor
    response_lengths: list[int]


def pack(pairs: list[Pair], groups: list[list[int]], pad_id: int) -> PackedBatch:
    """A row per group: its shared prompt prefix once, then each behaviour's rest of prompt + response. A behaviour's
    logical position j (0 at its first prompt token) is j in the prefix and ``start + j - prefix`` after it, where
    ``start`` is where its own segment begins; its position id stays j, and the mask lets it attend to the prefix
    and to its own segment up to itself (causal), nothing else."""
    rows, segments, positions = [], [], []
    behaviours, where = [], []  # (row, segment start, prefix length) per behaviour
    for r, group in enumerate(groups):
        prefix = shared_prefix(pairs, group)
        ids, segment, position = list(pairs[group[0]][0][:prefix]), [-1] * prefix, list(range(prefix))
        for k, i in enumerate(group):
            prompt, response = pairs[i]
            start = len(ids)
            ids += prompt[prefix:] + response
            segment += [k] * (len(prompt) + len(response) - prefix)
            position += range(prefix, len(prompt) + len(response))
            behaviours.append(i)
            where.append((r, start, prefix))
        rows.append(ids), segments.append(segment), positions.append(position)
    input_ids, plain_mask = right_pad(rows, pad_id)
    token_rows, token_cols, prompt_last, response_last = [], [], [], []
    for i, (r, start, prefix) in zip(behaviours, where, strict=True):
        prompt, response = pairs[i]
        packed = torch.arange(len(prompt) + len(response))
        packed[prefix:] += start - prefix  # logical position -> position in the row
        token_rows += [r] * len(response)
        token_cols += packed[len(prompt) - 1 : -1].tolist()
        prompt_last.append(int(packed[len(prompt) - 1])), response_last.append(int(packed[-1]))
    long = partial(torch.tensor, dtype=torch.long)
    one_per_row = all(len(group) == 1 for group in groups)
    return PackedBatch(
        behaviours,
        input_ids,
        plain_mask if one_per_row else _segment_mask(right_pad(segments, -2)[0]),
        None if one_per_row else right_pad(positions, 0)[0],
        long([r for r, _, _ in where]),
        long(prompt_last),
        long(response_last),
        long(token_rows),
        long(token_cols),
        long([t for i in behaviours for t in pairs[i][1]]),
        [len(pairs[i][1]) for i in behaviours],
    )


def _segment_mask(segments: Tensor) -> Tensor:
    """``[B, L]`` segment ids (-1: the shared prefix, k >= 0: behaviour k's own tokens, -2: padding) -> ``[B, 1, L, L]``
    bool: a query attends to the keys at or before it that are in the prefix or in its own segment. A padding query
    sees the prefix and the padding before it, so no row of the mask is empty."""
    query, key = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(segments.shape[1], segments.shape[1], dtype=torch.bool).tril()
    return (causal & ((key == -1) | (key == query)))[:, None]


def _put(out: list[Tensor | None], rows: list[int], values: list[Tensor]) -> None:
    """``out[rows[k]] = values[k]``: a batch's results back in flattening order."""
    for i, value in zip(rows, values, strict=True):
        out[i] = value


def _reference_logprobs(
    reference: AbstractContextManager[PreTrainedModel], n: int, batches: list[PackedBatch], temperature: float
) -> list[Tensor]:
    """The response tokens' log-probs of the ``n`` behaviours under the reference, over the same packed ``batches``."""
    logprobs: list[Tensor | None] = [None] * n
    with reference as model, _eval_mode(model):
        for batch in batches:
            _put(logprobs, batch.behaviours, packed_logprobs(model, batch, temperature)[1])
    return logprobs


def _no_op_forwards(model: PreTrainedModel, count: int, pad_id: int, temperature: float) -> None:
    """``count`` forwards of a one-token row whose results are dropped: a rank with fewer scoring batches than
    another runs them, so that the forwards of a sharded model (collective) match over the ranks."""
    batch = pack([([pad_id], [pad_id])], [[0]], pad_id)
    for _ in range(count):
        packed_logprobs(model, batch, temperature)


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
    """The trunk's hidden states ``[B, L, H]`` over prompt + response (a row per pair, right-padded) and each
    response's token log-probs (B tensors ``[R_b]`` fp32, on the CPU)."""
    return packed_logprobs(model, pack(pairs, [[i] for i in range(len(pairs))], pad_id), temperature)


def packed_logprobs(
    model: PreTrainedModel, batch: PackedBatch, temperature: float = 1.0
) -> tuple[Tensor, list[Tensor]]:
    """The trunk's hidden states ``[B, L, H]`` over ``batch``'s rows and each behaviour's response token log-probs
    (M tensors ``[R_m]`` fp32, on the CPU, in ``batch.behaviours`` order)."""
    trunk, weight, bias = trunk_and_head(model)
    device = weight.device
    mask = batch.attention_mask.to(device)
    if mask.dim() == 4:  # additive, in the dtype attention computes in (eager adds it; SDPA takes it as it is)
        mask = torch.zeros(mask.shape, dtype=weight.dtype, device=device).masked_fill_(
            ~mask, torch.finfo(weight.dtype).min
        )
    positions = None if batch.position_ids is None else batch.position_ids.to(device)
    # use_cache=False: a KV cache of the whole batch would be built and thrown away (~10% of the forward on CPU)
    hidden = trunk(
        input_ids=batch.input_ids.to(device), attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    picked = hidden[batch.token_rows.to(device), batch.token_cols.to(device)]  # [T, H]
    logprobs, _ = selective_logprobs(
        picked, weight, batch.targets.to(device), bias=bias, temperature=temperature, entropy=False
    )
    return hidden, list(logprobs.float().cpu().split(batch.response_lengths))


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
