"""Rollout backends without vLLM installed (docs/design.md#rollout-backends): the sampling settings each backend
reads and what cannot be mapped is refused when the config is built, the vLLM mapping is one to one, and the policy's
weight versions that tell a vLLM engine when to reload count every optimizer step and load. The engine itself is
tested in tests/test_vllm.py (`make test-vllm`)."""

import importlib.util

import pytest
import torch

from maro_lightning import distributed
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import build_tiny_model
from maro_lightning.module import MaroModule
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout.vllm_engine import INSTALL_HINT
from maro_lightning.rollout.vllm_engine import count_loads
from maro_lightning.rollout.vllm_engine import count_optimizer_steps
from maro_lightning.rollout.vllm_engine import mark_weights_changed
from maro_lightning.rollout.vllm_engine import request_seeds
from maro_lightning.rollout.vllm_engine import sampling_kwargs
from maro_lightning.rollout.vllm_engine import weights_version
from maro_lightning.seeding import seeded

TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("bazaar",))


@pytest.mark.parametrize(
    "bad",
    [{"backend": "sglang"}, {"top_k": -1}, {"vllm_kv_cache_gib": 0.0}, {"temperature": -1.0}],
    ids=["backend", "top_k", "kv_cache", "temperature"],
)
def test_a_sampling_setting_that_cannot_map_is_refused(bad):
    with pytest.raises(ValueError, match="bad sampling config"):
        SamplingConfig(**bad)


def test_generation_batch_size_is_refused_with_vllm():
    with pytest.raises(ValueError, match="generation_batch_size=8 applies to sampling.backend=hf only"):
        MaroModule(sampling=SamplingConfig(backend="vllm"), generation_batch_size=8)


def test_vllm_sampling_parameters_map_one_to_one():
    sampling = SamplingConfig(temperature=0.7, top_p=0.9, top_k=20, max_new_tokens=5)
    assert sampling_kwargs(sampling, eos_token_id=3) == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 5,
        "stop_token_ids": [3],
        "detokenize": False,
    }
    assert sampling_kwargs(sampling, eos_token_id=None)["stop_token_ids"] == []


def test_request_seeds_come_from_the_seeded_stream():
    sampling = SamplingConfig()
    with seeded(7, torch.device("cpu")):
        first = request_seeds(4, sampling)
    with seeded(7, torch.device("cpu")):
        assert request_seeds(4, sampling) == first and len(set(first)) == 4
    assert request_seeds(3, SamplingConfig(temperature=0.0)) == [None] * 3  # greedy needs none


def test_hf_top_k_one_samples_the_greedy_completion():
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TINY)
    prompts = [[5, 6, 7], [8, 9]]
    greedy = HFGenerate(model, tokenizer).generate(prompts, SamplingConfig(temperature=0.0, max_new_tokens=4))
    assert HFGenerate(model, tokenizer).generate(prompts, SamplingConfig(top_k=1, max_new_tokens=4)) == greedy


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_weight_versions_count_optimizer_steps_and_loads(fused):
    module = MaroModule(tiny=TINY)
    module.configure_model()
    policy = module.policy
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3, fused=fused)
    count_optimizer_steps(optimizer, policy)
    policy(input_ids=torch.tensor([[5, 6, 7]])).logits.sum().backward()
    optimizer.step()  # a fused step bumps no tensor's version counter: the optimizer's hook counts it
    assert weights_version(policy) == 1
    count_loads(policy)
    module.load_state_dict(module.state_dict())  # Lightning's restore loads the whole module: the policy's hook runs
    assert weights_version(policy) == 2
    mark_weights_changed(policy)
    assert weights_version(policy) == 3


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_the_vllm_backend_without_vllm_names_the_install():
    module = MaroModule(tiny=TINY, sampling=SamplingConfig(backend="vllm"))
    module.configure_model()
    with pytest.raises(ImportError, match="pip install"):
        module.policy_backend()
    assert "maro-lightning[vllm]" in INSTALL_HINT


def test_the_vllm_backend_is_refused_under_data_parallelism(monkeypatch):
    module = MaroModule(tiny=TINY, sampling=SamplingConfig(backend="vllm"))
    module.configure_model()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(RuntimeError, match=r"data parallelism \(2 ranks\) is not supported"):
        module.policy_backend()
