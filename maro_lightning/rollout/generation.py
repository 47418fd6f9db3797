"""Generation backends (docs/design.md#rollouts): ``generate(prompts, sampling) -> completions`` over token ids.

The default backend batches every prompt through ``transformers`` ``generate`` with left padding and
the KV cache; ``backend: vllm`` (:mod:`maro_lightning.rollout.vllm`) runs an in-process vLLM engine behind the
same method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from typing import Protocol

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase

from maro_lightning import distributed
from maro_lightning import fsdp
from maro_lightning.models import pad_id


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = off)."""
    top_k: int = 0
    """Sample among the k most likely tokens only (0 = off)."""
    max_new_tokens: int = 24
    """Hard cap on a completion's length; a completion cut here is parsed as it stands (usually invalid)."""
    max_prompt_tokens: int = 1024
    """Prompts longer than this keep their head (rules, role, private information) and their tail (latest
    history, legal actions) and drop the middle (oldest history)."""
    keep_head_tokens: int = 256
    """Tokens kept from a prompt's start when it is truncated."""
    backend: Literal["hf", "vllm"] = "hf"
    """Who generates: ``hf`` (``transformers`` ``generate`` on the policy itself) or ``vllm`` (an in-process vLLM
    engine beside training, the policy's weights pushed to it before a round when they changed; needs
    ``pip install "maro-lightning[vllm]"``; docs/design.md#rollout-backends). Both read only these settings."""
    vllm_kv_cache_gib: float = 1.0
    """vllm: memory reserved for each engine's KV cache, in GiB (on a GPU shared with training, instead of vLLM's
    fraction of the whole device)."""

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1 or self.top_k < 0:
            raise ValueError(
                f"bad sampling config {self}: need temperature >= 0, 0 < top_p <= 1, top_k >= 0, max_new_tokens >= 1"
            )
        if self.backend not in ("hf", "vllm") or self.vllm_kv_cache_gib <= 0:
            raise ValueError(f"bad sampling config {self}: backend must be hf or vllm, vllm_kv_cache_gib > 0")
        if not 0 <= self.keep_head_tokens < self.max_prompt_tokens:
            raise ValueError(f"keep_head_tokens must be in [0, max_prompt_tokens), got {self.keep_head_tokens}")


class GenerationBackend(Protocol):
    """Anything that turns prompts (token ids) into completions (token ids, EOS included when produced).

    A backend whose ``generate`` is collective (every rank must call it as often: a model sharded by FSDP) says so
    with a true ``collective`` attribute, and the engine then sweeps in lock-step over the ranks."""

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]: ...


def truncate_prompt(ids: list[int], sampling: SamplingConfig) -> list[int]:
    """Keep the first ``keep_head_tokens`` and the most recent tokens, ``max_prompt_tokens`` in all."""
    limit = sampling.max_prompt_tokens
    if len(ids) <= limit:
        return ids
    head = sampling.keep_head_tokens
    return ids[:head] + ids[len(ids) - (limit - head) :]


class HFGenerate:
    """Batched ``model.generate`` with left padding and the KV cache.

    Args:
        model: a causal LM; evaluated in ``eval()`` mode under ``torch.no_grad`` and restored after.
        tokenizer: gives the pad and EOS ids.
        batch_size: prompts per ``generate`` call (bounds activation memory; 0 = all at once).

    With a model that FSDP shards over several ranks (``collective``), every rank makes as many ``generate`` calls
    as the rank with the most batches, padding with one-token no-op prompts: transformers syncs every decoding step
    of an FSDP model over the ranks (``synced_gpus``), so an extra call on one rank alone would hang.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 0) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.collective = fsdp.lockstep(model)

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        size = self.batch_size or max(len(prompts), 1)
        batches = [prompts[start : start + size] for start in range(0, len(prompts), size)]
        if self.collective:
            calls = distributed.max_over_ranks([len(batches)])[0]
            batches += [[[self.pad_id]]] * (calls - len(batches))  # no-op work; its completion is dropped below
        completions = [c for batch in batches for c in self._generate_batch(batch, sampling)]
        return completions[: len(prompts)]

    @torch.no_grad()
    def _generate_batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        input_ids, attention_mask = left_pad(prompts, self.pad_id)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None,
                top_k=(sampling.top_k or None) if sampling.temperature > 0 else None,
                pad_token_id=self.pad_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        finally:
            self.model.train(was_training)
        return [_cut_at_eos(row.tolist(), self.tokenizer.eos_token_id) for row in out[:, input_ids.shape[1] :]]

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` ids and attention mask, padded on the left (generation continues from the right edge)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    return ids, mask


def _cut_at_eos(ids: list[int], eos: int | None) -> list[int]:
    """Tokens up to and including the first EOS (what follows it is padding)."""
    if eos is not None and eos in ids:
        return ids[: ids.index(eos) + 1]
    return ids
