"""Scoring a rollout round (docs/design.md#data-flow): played games -> behaviour samples.

One no-grad forward of the policy trunk over every policy behaviour's prompt + response gives the old
log-probs of the response tokens (through ``maro_kernels.selective_logprobs``: no ``[tokens × vocab]``
tensor) and the hidden states the utility head reads for V (last prompt token) and Q (last response
token); with a frozen reference, a second forward gives the reference log-probs of the KL term. The
credit assigner then turns episodes, V and Q into :class:`BehaviourSample` rows, over the whole round of
every rank when training is distributed (so that its baselines and role counts agree on every rank).

Behaviours of one player in one game share most of their prompt (the rules, the history so far): with
``share_prefixes``, each such group's shared prefix runs once, as a KV cache that each of its behaviours continues
with its own rest of prompt and response (its position ids continuing the prefix, its mask hiding the other
groups' prefixes and the padding). Every behaviour gets the states it would get alone; the prefix's positions are
computed once per group and each behaviour attends over the prefix and itself only (prefix sharing as in
SGLang's RadixAttention, Zheng et al. 2024, over one level of prefix).

A reference that shares the policy's trunk (LoRA's base) could be scored in the policy's own forward (peft's
mixed-adapter batch): measured on CPU, that one forward of 2B rows took 1.17-1.29× the time of the two forwards
of B rows, so there are two (benchmarks/RESULTS.md, "Rollout and scoring throughput").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache
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

MIN_SHARED_PREFIX = 64
"""Shorter shared prefixes are scored with each behaviour: a second forward, the cache copied per behaviour and a 4D
mask cost more than the positions they save (Bazaar's compact prompts share about 10 tokens and scored 1.0-1.2×
slower shared; its full text shares hundreds and scored 2× faster: benchmarks/RESULTS.md)."""


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

    ``share_prefixes`` runs the prompt prefix the behaviours of each (game, player) share once, as a KV cache each of
    them continues (see the module's docstring): the same results (to float rounding) from fewer positions. It needs
    an attention that takes a 4D mask (eager, SDPA; not flash-attention) and a head that reads single positions
    (``inputs: last``); under ``lockstep`` it is off."""
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
    # Lock-step ranks must run as many forwards each, and a batch with shared prefixes runs two: not under FSDP.
    shares = share_prefixes and not lockstep
    groups = prefix_groups(flatten(episodes), batch_size) if shares else [[i] for i in range(n)]
    batches = [pack(pairs, chunk, pad_id) for chunk in group_batches(pairs, groups, batch_size)]
    no_ops = distributed.max_over_ranks([len(batches)])[0] - len(batches) if lockstep else 0
    with _eval_mode(model):
        _no_op_forwards(model, no_ops, pad_id, temperature)
        for batch in batches:
            hidden, logprobs = batch_logprobs(model, batch, temperature)
            v, q = head.behaviour_values(
                hidden, batch.prompt_last.to(hidden.device), batch.response_last.to(hidden.device)
            )
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


def prefix_length(pairs: list[Pair], group: list[int]) -> int:
    """The prompt prefix ``group``'s behaviours share, run once for all of them: at most one token short of the
    shortest prompt (each behaviour keeps its last prompt token, where V is read); 0 for a behaviour alone or a
    prefix shorter than :data:`MIN_SHARED_PREFIX`."""
    if len(group) == 1:
        return 0
    prompts = [pairs[i][0] for i in group]
    first, length = prompts[0], min(map(len, prompts)) - 1
    for prompt in prompts[1:]:
        length = next((k for k in range(length) if prompt[k] != first[k]), length)
    return length if length >= MIN_SHARED_PREFIX else 0


def packed_length(pairs: list[Pair], group: list[int]) -> int:
    """Positions ``group`` takes: the shared prefix once, then each behaviour's rest of prompt and response."""
    prefix = prefix_length(pairs, group)
    return prefix + sum(len(pairs[i][0]) + len(pairs[i][1]) - prefix for i in group)


@dataclass
class ScoringBatch:
    """One scoring forward: each group's shared prompt prefix once (a forward whose KV cache is kept), then every
    behaviour's own rest of prompt and response on top of its group's cache, a row per behaviour.

    Attributes:
        behaviours: the M behaviours' indices (flattening order), row by row.
        prefix_ids: [G, P] int64, the groups' shared prefixes, right-padded; None when no group shares one (a plain
            forward of whole behaviours).
        prefix_mask: [G, 1, P, P] bool (True: may attend): causal over each prefix; a padding position sees itself.
        groups: [M] int64, each behaviour's group (its prefix row).
        input_ids: [M, S] int64, each behaviour's rest of prompt + response (or all of it), right-padded.
        attention_mask: [M, S] int64 without prefixes; else [M, 1, S, P + S] bool over its group's prefix (up to
            that prefix's length) and its own tokens (causal).
        position_ids: [M, S] int64, continuing the group's prefix (None without prefixes: 0, 1, ...).
        prompt_last, response_last: [M] int64, the positions in ``input_ids`` of the last prompt token (V) and
            the last response token (Q).
        token_cols: [T] int64, the position in its row *predicting* each response token (one before it).
        targets: [T] int64, the response tokens.
        response_lengths: M ints.
    """

    behaviours: list[int]
    prefix_ids: Tensor | None
    prefix_mask: Tensor | None
    groups: Tensor
    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor | None
    prompt_last: Tensor
    response_last: Tensor
    token_cols: Tensor
    targets: Tensor
    response_lengths: list[int]


def pack(pairs: list[Pair], groups: list[list[int]], pad_id: int) -> ScoringBatch:
    """A prefix row per group and a row per behaviour holding what follows the prefix. The prefix stops one token
    short of the shortest prompt, so every behaviour's last prompt token (V), response (log-probs, Q) and the
    position predicting its first response token are in its own row."""
    prefixes = [prefix_length(pairs, group) for group in groups]
    behaviours = [i for group in groups for i in group]
    of_group = [g for g, group in enumerate(groups) for _ in group]
    cut = [prefixes[g] for g in of_group]  # each behaviour's prefix length
    rests = [pairs[i][0][c:] + pairs[i][1] for i, c in zip(behaviours, cut, strict=True)]
    input_ids, plain_mask = right_pad(rests, pad_id)
    long = partial(torch.tensor, dtype=torch.long)
    prompt_last = long([len(pairs[i][0]) - 1 - c for i, c in zip(behaviours, cut, strict=True)])
    lengths = [len(pairs[i][1]) for i in behaviours]
    token_cols = torch.cat([torch.arange(n) + last for n, last in zip(lengths, prompt_last.tolist(), strict=True)])
    shared = any(prefixes)
    if shared:
        prefix_ids, prefix_valid = right_pad(
            [pairs[g[0]][0][:p] for g, p in zip(groups, prefixes, strict=True)], pad_id
        )
        prefix_mask = _causal(prefix_valid)
        rest_valid = torch.cat([prefix_valid[of_group], plain_mask], dim=1)  # [M, P + S]: the keys each row may see
        mask = _causal(rest_valid, queries=plain_mask.shape[1])
        positions = long(cut)[:, None] + torch.arange(input_ids.shape[1])
    return ScoringBatch(
        behaviours,
        prefix_ids if shared else None,
        prefix_mask if shared else None,
        long(of_group),
        input_ids,
        mask if shared else plain_mask,
        positions if shared else None,
        prompt_last,
        prompt_last + long(lengths),
        token_cols,
        long([t for i in behaviours for t in pairs[i][1]]),
        lengths,
    )


def _causal(valid: Tensor, queries: int | None = None) -> Tensor:
    """``[B, K]`` 0/1 valid keys -> ``[B, 1, Q, K]`` bool: the last Q positions (all by default) attend to the valid
    keys at or before them, and every position to itself (a padding query must see something: an all-masked row
    would give NaN states, and NaN times a zero attention weight is NaN)."""
    keys = valid.shape[1]
    queries = keys if queries is None else queries
    position = torch.arange(keys - queries, keys)[:, None]  # each query's key position
    key = torch.arange(keys)[None, :]
    allowed = (key <= position) & valid[:, None, :].bool()
    return (allowed | (key == position))[:, None]


def _put(out: list[Tensor | None], rows: list[int], values: list[Tensor]) -> None:
    """``out[rows[k]] = values[k]``: a batch's results back in flattening order."""
    for i, value in zip(rows, values, strict=True):
        out[i] = value


def _reference_logprobs(
    reference: AbstractContextManager[PreTrainedModel], n: int, batches: list[ScoringBatch], temperature: float
) -> list[Tensor]:
    """The response tokens' log-probs of the ``n`` behaviours under the reference, over the same packed ``batches``."""
    logprobs: list[Tensor | None] = [None] * n
    with reference as model, _eval_mode(model):
        for batch in batches:
            _put(logprobs, batch.behaviours, batch_logprobs(model, batch, temperature)[1])
    return logprobs


def _no_op_forwards(model: PreTrainedModel, count: int, pad_id: int, temperature: float) -> None:
    """``count`` forwards of a one-token row whose results are dropped: a rank with fewer scoring batches than
    another runs them, so that the forwards of a sharded model (collective) match over the ranks."""
    batch = pack([([pad_id], [pad_id])], [[0]], pad_id)
    for _ in range(count):
        batch_logprobs(model, batch, temperature)


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
    return batch_logprobs(model, pack(pairs, [[i] for i in range(len(pairs))], pad_id), temperature)


def batch_logprobs(
    model: PreTrainedModel, batch: ScoringBatch, temperature: float = 1.0
) -> tuple[Tensor, list[Tensor]]:
    """The trunk's hidden states ``[M, S, H]`` over ``batch``'s behaviour rows and each behaviour's response token
    log-probs (M tensors ``[R_m]`` fp32, on the CPU, in ``batch.behaviours`` order)."""
    trunk, weight, bias = trunk_and_head(model)
    device = weight.device
    if batch.prefix_ids is None:
        # use_cache=False: a KV cache of the whole batch would be built and thrown away (~10% of the forward on CPU)
        hidden = trunk(
            input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False
        ).last_hidden_state
    else:
        cache = DynamicCache(config=model.config)
        cached = {_cache_argument(trunk): cache, "use_cache": True}
        prefix_positions = torch.arange(batch.prefix_ids.shape[1], device=device)[None]
        trunk(
            input_ids=batch.prefix_ids.to(device),
            attention_mask=_additive(batch.prefix_mask, weight.dtype, device),
            position_ids=prefix_positions,
            **cached,
        )
        cache.batch_select_indices(batch.groups.to(device))  # each behaviour's row continues its group's prefix
        hidden = trunk(
            input_ids=batch.input_ids.to(device),
            attention_mask=_additive(batch.attention_mask, weight.dtype, device),
            position_ids=batch.position_ids.to(device),
            **cached,
        ).last_hidden_state
    rows = torch.cat([torch.full((n,), m, dtype=torch.long) for m, n in enumerate(batch.response_lengths)])
    picked = hidden[rows.to(device), batch.token_cols.to(device)]  # [T, H]
    logprobs, _ = selective_logprobs(
        picked, weight, batch.targets.to(device), bias=bias, temperature=temperature, entropy=False
    )
    return hidden, list(logprobs.float().cpu().split(batch.response_lengths))


def _additive(allowed: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A bool 4D mask as the additive one attention takes (0 where allowed; eager adds it, SDPA takes it as is)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed.to(device), torch.finfo(dtype).min)


def _cache_argument(trunk: torch.nn.Module) -> str:
    """The name a decoder's forward takes its KV cache by: ``cache`` in newer ``transformers``, ``past_key_values``
    before."""
    return "cache" if "cache" in inspect.signature(trunk.forward).parameters else "past_key_values"


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
