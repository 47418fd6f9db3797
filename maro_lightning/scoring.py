"""Scoring a rollout round (DESIGN §2): played games -> behaviour samples.

One no-grad forward of the policy trunk over every policy behaviour's prompt + response gives the old
log-probs of the response tokens (through ``maro_kernels.selective_logprobs``: no ``[tokens × vocab]``
tensor) and the hidden states the utility head reads for V (last prompt token) and Q (last response
token). The credit assigner then turns episodes, V and Q into :class:`BehaviorSample` rows.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import PreTrainedModel

from maro_kernels import selective_logprobs
from maro_lightning.credit import BehaviorSample
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import Episode
from maro_lightning.credit import flatten
from maro_lightning.models import UtilityHead
from maro_lightning.models import trunk_and_head
from maro_lightning.rollout import PlayedGame


@torch.no_grad()
def score_round(
    model: PreTrainedModel,
    head: UtilityHead,
    games: list[PlayedGame],
    assigner: CreditAssigner,
    *,
    batch_size: int = 64,
    pad_id: int = 0,
) -> list[BehaviorSample]:
    """Behaviour samples of every policy behaviour of ``games``, in ``credit.flatten`` order, with their
    token ids and old log-probs attached."""
    episodes = [Episode.from_env(g.env, policy_players=g.policy_players, prompts=g.prompts) for g in games]
    game_of = {id(episode): game for episode, game in zip(episodes, games, strict=True)}
    pairs = [
        (game_of[id(episode)].prompt_ids[b.index], game_of[id(episode)].response_ids[b.index])
        for episode, b in flatten(episodes)
    ]
    values, q_values, old_logprobs = [], [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            v, q, old = score_sequences(model, head, pairs[start : start + batch_size], pad_id)
            values.append(v)
            q_values.append(q)
            old_logprobs.extend(old)
    finally:
        model.train(was_training)
    empty = torch.zeros(0)
    samples = assigner.assign(episodes, torch.cat(values or [empty]), torch.cat(q_values or [empty]))
    for sample, (prompt, response), old in zip(samples, pairs, old_logprobs, strict=True):
        sample.prompt_ids, sample.response_ids = torch.tensor(prompt), torch.tensor(response)
        sample.old_logprobs = old
    return samples


def score_sequences(
    model: PreTrainedModel, head: UtilityHead, pairs: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """V ``[B]``, Q ``[B]`` and the response tokens' log-probs (B tensors ``[R_b]`` fp32) of prompt/response
    pairs, right-padded into one ``[B, L]`` batch."""
    trunk, weight, bias = trunk_and_head(model)
    device = weight.device
    lengths = [len(p) + len(r) for p, r in pairs]
    ids = torch.full((len(pairs), max(lengths)), pad_id, dtype=torch.long)
    for row, (prompt, response) in enumerate(pairs):
        ids[row, : lengths[row]] = torch.tensor(prompt + response)
    mask = (torch.arange(ids.shape[1]) < torch.tensor(lengths)[:, None]).long()
    hidden = trunk(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state  # [B, L, H]
    prompt_last = torch.tensor([len(p) - 1 for p, _ in pairs], device=device)  # predicts the first response token
    response_last = torch.tensor([n - 1 for n in lengths], device=device)
    values, q_values = head.behaviour_values(hidden, prompt_last, response_last)
    rows = torch.cat([torch.full((len(r),), b) for b, (_, r) in enumerate(pairs)]).long()  # [T] row of each token
    cols = torch.cat([torch.arange(len(p) - 1, len(p) - 1 + len(r)) for p, r in pairs]).long()  # [T] predicting pos
    targets = torch.cat([torch.tensor(r, dtype=torch.long) for _, r in pairs]).to(device)  # [T]
    logprobs, _ = selective_logprobs(hidden[rows.to(device), cols.to(device)], weight, targets, bias=bias)
    return values.float().cpu(), q_values.float().cpu(), list(logprobs.float().cpu().split([len(r) for _, r in pairs]))
