"""Generation backends (docs/design.md#rollouts): ``generate(prompts, sampling) -> completions`` over token ids.

The default backend batches every prompt through ``transformers`` ``generate`` with left padding and
the KV cache, drawing tokens by inverse transform sampling (:class:`InverseCdfSampler`); ``backend: vllm``
(:mod:`maro_lightning.rollout.vllm_engine`) runs an in-process vLLM engine behind the same method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from typing import Protocol

import torch
from transformers import LogitsProcessor
from transformers import LogitsProcessorList
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase
from transformers import TemperatureLogitsWarper
from transformers import TopKLogitsWarper
from transformers import TopPLogitsWarper

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
                do_sample=False,  # greedy selection of what `sampler` drew (or of the argmax, at temperature 0)
                logits_processor=sampler(sampling),
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=self.pad_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        finally:
            self.model.train(was_training)
        return [_cut_at_eos(row.tolist(), self.tokenizer.eos_token_id) for row in out[:, input_ids.shape[1] :]]

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)


def sampler(sampling: SamplingConfig) -> LogitsProcessorList:
    """The logits processors that sample as ``sampling`` says, for ``generate(do_sample=False)``: Hugging Face's own
    temperature, top-k and top-p warpers (in ``generate``'s order), then :class:`InverseCdfSampler` (none at
    temperature 0: greedy decoding)."""
    if sampling.temperature == 0:
        return LogitsProcessorList()
    warpers = [TemperatureLogitsWarper(sampling.temperature)] if sampling.temperature != 1 else []
    warpers += [TopKLogitsWarper(sampling.top_k)] if sampling.top_k else []
    warpers += [TopPLogitsWarper(sampling.top_p)] if sampling.top_p < 1 else []
    return LogitsProcessorList([*warpers, InverseCdfSampler()])


class InverseCdfSampler(LogitsProcessor):
    """Draws every row's next token from ``softmax(scores)`` and returns scores that are 0 at the drawn token and
    -inf elsewhere, so that greedy selection emits it.

    The draw is the same distribution as ``generate(do_sample=True)``'s ``torch.multinomial``, which draws one
    exponential variate per vocabulary entry (the "exponential race"): on one CPU thread, 9-12 ms per decoding step
    at 128 rows and V = 1.2k, a third of the tiny model's step. Inverse transform sampling needs one uniform per row
    and a cumulative sum (1 ms there). Draws come from torch's global generator, as ``multinomial``'s do.
    """

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float(), dim=-1)  # [B, V]
        uniforms = torch.rand(probs.shape[0], dtype=torch.float64, device=probs.device)  # [B]
        tokens = inverse_cdf_sample(probs, uniforms)
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter_(1, tokens[:, None], 0.0)


def inverse_cdf_sample(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """``[B]`` int64: for each row of ``probs [B, V]`` (non-negative, summing to about 1), the first token whose
    cumulative mass exceeds ``uniforms [B]`` (in [0, 1)) times the row's total. A token of probability 0 is never
    drawn: its cumulative mass equals its predecessor's."""
    cdf = probs.double().cumsum(dim=-1)  # [B, V]; in float64 the sum's rounding stays far below float32 probabilities'
    total = cdf[:, -1:]  # [B, 1]
    below_total = torch.nextafter(total, torch.zeros_like(total))  # u · total may round up to total itself
    targets = torch.minimum(uniforms.to(cdf)[:, None] * total, below_total)  # [B, 1]
    return torch.searchsorted(cdf, targets, right=True)[:, 0]


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
