"""The vLLM rollout backend (docs/design.md#rollout-backends): an in-process engine beside training.

``sampling.backend: vllm`` generates with vLLM instead of ``transformers``' ``generate``, behind the same
``generate(prompts, sampling) -> completions`` over token ids. The engine starts from the policy exported as a
Hugging Face folder and runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): no server and no second
process, so new weights are handed to it as tensors. vLLM never loads a tokenizer (``skip_tokenizer_init``): the
project's tokenizer encodes the prompts and decodes the completions, as with ``transformers``. It ignores the
model's ``generation_config.json`` too, so what is sampled is set by :class:`SamplingConfig` alone.

An engine holds one model's weights at a time and pushes them lazily: a ``generate`` for another model, or for
the same model after its weights changed, first reloads the weights in place. A model's weights change when its
optimizer steps (:func:`count_optimizer_steps`) or its ``load_state_dict`` runs (counted once the engine has seen
it); code that edits weights otherwise calls :func:`mark_weights_changed`.
"""

from __future__ import annotations

import os
import random
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maro_lightning.rollout.generation import SamplingConfig

NamedWeights = Callable[[torch.nn.Module], Iterable[tuple[str, Tensor]]]
"""A model's weights as (name, tensor) pairs, named as in its exported folder's checkpoint."""

_VERSION, _TRACKED = "_maro_weights_version", "_maro_weights_tracked"
INSTALL_HINT = 'sampling.backend=vllm needs vLLM: pip install "maro-lightning[vllm]" (or set sampling.backend: hf)'


def weights_version(model: torch.nn.Module) -> int:
    """How many times ``model``'s weights are known to have changed."""
    return getattr(model, _VERSION, 0)


def mark_weights_changed(model: torch.nn.Module, *_: object) -> None:
    """Record that ``model``'s weights changed (a ``load_state_dict`` post-hook, or a call after a manual edit)."""
    setattr(model, _VERSION, weights_version(model) + 1)


def count_optimizer_steps(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    """Every step of ``optimizer`` changes ``model``'s weights (fused optimizers included)."""
    optimizer.register_step_post_hook(lambda *_: mark_weights_changed(model))


def count_loads(model: torch.nn.Module) -> None:
    """Count ``model``'s ``load_state_dict`` calls as weight changes (the hook is registered once; a deep copy of
    the model carries it). A model that is no module (a LoRA ``AdapterSnapshot``) counts its own loads."""
    if isinstance(model, torch.nn.Module) and not getattr(model, _TRACKED, False):
        model.register_load_state_dict_post_hook(mark_weights_changed)
        setattr(model, _TRACKED, True)


def state_dict_weights(model: torch.nn.Module) -> Iterable[tuple[str, Tensor]]:
    """The default :data:`NamedWeights`: the model's state dict, whose names are those ``save_pretrained`` writes."""
    return model.state_dict().items()


def sampling_kwargs(sampling: SamplingConfig, eos_token_id: int | None) -> dict[str, Any]:
    """vLLM ``SamplingParams`` of ``sampling``, one to one with :class:`~maro_lightning.rollout.HFGenerate`:
    temperature 0 is greedy in both and top_k 0 is off in both; a completion stops at the tokenizer's EOS (kept in
    it) or after ``max_new_tokens``; token ids only, no text."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_tokens": sampling.max_new_tokens,
        "stop_token_ids": [] if eos_token_id is None else [eos_token_id],
        "detokenize": False,
    }


def request_seeds(count: int, sampling: SamplingConfig) -> list[int | None]:
    """One seed per prompt, drawn from torch's RNG, so that a seeded round (``seeding.seeded``) samples the same
    completions again (a resume replays it); greedy decoding needs none."""
    if sampling.temperature == 0:
        return [None] * count
    return torch.randint(2**31, (count,)).tolist()


@contextmanager
def _own_random_state() -> Iterator[None]:
    """Restore the process's random streams after the block: in-process, vLLM seeds Python's, NumPy's and torch's
    global generators when it starts and draws from torch's as it generates, which would shift the rollouts' and
    the data's streams by amounts that depend on its internal state (what its prefix cache holds)."""
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


class VLLMEngine:
    """An in-process vLLM engine that holds one model's weights at a time.

    Args:
        folder: the policy as a Hugging Face folder (``MaroModule.save_pretrained``); read at start-up only.
        sampling: the longest sequence (``max_prompt_tokens + max_new_tokens``, capped at the model's positions)
            and the KV cache size (``vllm_kv_cache_gib``).
        eos_token_id: where completions stop (the project's tokenizer's EOS).
        dtype: the engine's dtype, e.g. the policy's parameters' (``"float32"``, ``"bfloat16"``).
        max_positions: the model's longest sequence (``config.max_position_embeddings``).
        weights: how a model's weights are named for vLLM (default: its state dict).
    """

    def __init__(
        self,
        folder: str,
        sampling: SamplingConfig,
        eos_token_id: int | None,
        dtype: str,
        max_positions: int,
        weights: NamedWeights = state_dict_weights,
    ) -> None:
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as error:
            raise ImportError(INSTALL_HINT) from error
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weights are handed over as tensors
        with _own_random_state():
            self.llm = LLM(
                model=folder,
                skip_tokenizer_init=True,  # prompts are token ids; vLLM's tokenizer would re-split the tiny vocabulary
                generation_config="vllm",  # sample with SamplingConfig only, not the folder's generation defaults
                dtype=dtype,
                max_model_len=min(sampling.max_prompt_tokens + sampling.max_new_tokens, max_positions),
                kv_cache_memory_bytes=int(sampling.vllm_kv_cache_gib * 2**30),
                enforce_eager=current_platform.is_cpu(),  # compiling the model takes a minute of start-up on a CPU
                # On a CPU, a seeded request whose prompt is split over steps fails (vLLM 0.32 rewinds its generator
                # by an offset, which CPU generators lack): prompts are prefilled whole there.
                enable_chunked_prefill=not current_platform.is_cpu(),
            )
        self.eos_token_id, self.weights = eos_token_id, weights
        self.pushes = 0  # weight pushes so far
        self._held: tuple[weakref.ref, int] | None = None  # the model whose weights the engine holds, and their version

    def generate(self, model: torch.nn.Module, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        """Completions of ``prompts`` (token ids, EOS included when produced) by ``model``'s current weights."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.hold(model)
        kwargs = sampling_kwargs(sampling, self.eos_token_id)
        params = [SamplingParams(**kwargs, seed=seed) for seed in request_seeds(len(prompts), sampling)]
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        with _own_random_state():  # the round's stream moves by the seeds drawn above only
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [list(output.outputs[0].token_ids) for output in outputs]

    def hold(self, model: torch.nn.Module) -> None:
        """Load ``model``'s weights into the engine unless it holds them already (same model, same version)."""
        count_loads(model)
        version = weights_version(model)
        if self._held is not None and self._held[0]() is model and self._held[1] == version:
            return
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(self.weights(model))})
        self._held, self.pushes = (weakref.ref(model), version), self.pushes + 1


class VLLMGenerate:
    """The :class:`~maro_lightning.rollout.GenerationBackend` of one model on a :class:`VLLMEngine`."""

    def __init__(self, engine: VLLMEngine, model: torch.nn.Module) -> None:
        self.engine, self.model = engine, model

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        return self.engine.generate(self.model, prompts, sampling)
