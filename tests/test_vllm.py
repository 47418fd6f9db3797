"""The vLLM rollout backend (docs/design.md#rollout-backends) on the tiny model's exported folder: greedy completions
are transformers' own, the policy's weights reach the engine after an optimizer step (and only then), frozen copies
play on a second engine, and a round's records are those of the hf backend.

Under LoRA the engines are served merged weights, the policy's and each snapshot's.

Needs vLLM, which the default environment does not install: `make test-vllm` runs this file in a venv of its own."""

import dataclasses
import random

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests in a venv of its own")

from maro_lightning import envs  # noqa: E402
from maro_lightning.lora import LoraConfig  # noqa: E402
from maro_lightning.lora import adapter_parameters  # noqa: E402
from maro_lightning.models import TinyModelConfig  # noqa: E402
from maro_lightning.module import OPPONENT  # noqa: E402
from maro_lightning.module import MaroModule  # noqa: E402
from maro_lightning.rollout import FROZEN  # noqa: E402
from maro_lightning.rollout import POLICY  # noqa: E402
from maro_lightning.rollout import GameSpec  # noqa: E402
from maro_lightning.rollout import HFGenerate  # noqa: E402
from maro_lightning.rollout import RolloutEngine  # noqa: E402
from maro_lightning.rollout import SamplingConfig  # noqa: E402
from maro_lightning.rollout import encode_prompt  # noqa: E402
from maro_lightning.rollout.vllm_engine import count_optimizer_steps  # noqa: E402
from maro_lightning.seeding import seeded  # noqa: E402

GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=8, backend="vllm")


@pytest.fixture(scope="module")
def module():
    """A tiny policy (head size 32: vLLM's CPU attention has no 16) whose matrices are drawn wide (std 0.3), so
    that greedy completions differ from prompt to prompt and from token to token."""
    torch.manual_seed(0)
    tiny = TinyModelConfig(hidden_size=64, intermediate_size=128, num_heads=2, corpus_games=("bazaar",))
    module = MaroModule(tiny=tiny, sampling=GREEDY)
    module.configure_model()
    with torch.no_grad():
        for weight in (p for p in module.policy.parameters() if p.ndim == 2):
            weight.normal_(0.0, 0.3)
    return module


@pytest.fixture(scope="module")
def prompts(module):
    """The first observation of 16 Bazaar games, as token ids."""
    ids = []
    for seed in range(16):
        env = envs.make("bazaar", obs_format="compact")
        env.reset(seed)
        ids.append(encode_prompt(module.tokenizer, env.observation(env.to_act()[0])))
    return ids


def hf(module, prompts, sampling=GREEDY, model=None):
    return HFGenerate(model or module.policy, module.tokenizer).generate(prompts, sampling)


def test_greedy_completions_equal_hf_generate(module, prompts):
    completions = module.policy_backend().generate(prompts, GREEDY)
    assert completions == hf(module, prompts)
    assert len({tuple(c) for c in completions}) > 4  # not one degenerate answer
    top_1 = dataclasses.replace(GREEDY, temperature=1.0, top_k=1)  # top_k maps: sampling among 1 token is greedy
    assert module.policy_backend().generate(prompts, top_1) == completions


def test_a_completion_stops_at_eos_and_keeps_it(module, prompts, monkeypatch):
    expected = hf(module, prompts[:1])[0]
    engine = module.vllm_engine(POLICY)
    monkeypatch.setattr(engine, "eos_token_id", expected[2])
    (completion,) = module.policy_backend().generate(prompts[:1], GREEDY)
    assert completion == expected[: expected.index(expected[2]) + 1]


def test_seeded_sampling_is_reproducible(module, prompts):
    sampling = dataclasses.replace(GREEDY, temperature=1.0)
    backend = module.policy_backend()
    runs = {}
    for seed in (1, 1, 2):
        with seeded(seed, module.device):
            runs.setdefault(seed, []).append(backend.generate(prompts, sampling))
    assert runs[1][0] == runs[1][1] and runs[1][0] != runs[2][0]
    with seeded(1, module.device):
        backend.generate(prompts, sampling)
        after_generate = torch.get_rng_state()
    with seeded(1, module.device):
        torch.randint(2**31, (len(prompts),))  # the prompts' seeds
        assert torch.equal(torch.get_rng_state(), after_generate)  # and nothing else


def test_seeded_sampling_of_more_prompt_tokens_than_one_engine_step_takes(module):
    """64 distinct prompts of 100 tokens: more than a step's 4096-token budget, so some wait for a later step (vLLM
    on a CPU failed here when it split a seeded prompt over steps)."""
    prompts = torch.randint(10, 1000, (64, 100), generator=torch.Generator().manual_seed(0)).tolist()
    with seeded(0, module.device):
        completions = module.policy_backend().generate(prompts, dataclasses.replace(GREEDY, temperature=1.0))
    assert len(completions) == 64 and all(0 < len(c) <= GREEDY.max_new_tokens for c in completions)


def optimizer_step(module, prompts):
    """One AdamW step on the log-likelihood of the prompts, large enough to change greedy completions."""
    optimizer = module.optimizer_factory([p for p in module.policy.parameters()])
    optimizer.param_groups[0]["lr"] = 0.05
    count_optimizer_steps(optimizer, module.policy)  # what configure_optimizers does
    ids = torch.tensor([p[:8] for p in prompts])
    module.policy(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_weights_are_pushed_after_an_optimizer_step_and_only_then(module, prompts):
    engine = module.vllm_engine(POLICY)
    before = module.policy_backend().generate(prompts, GREEDY)
    pushes = engine.pushes
    assert module.policy_backend().generate(prompts, GREEDY) == before and engine.pushes == pushes  # unchanged
    optimizer_step(module, prompts)
    after = module.policy_backend().generate(prompts, GREEDY)
    assert engine.pushes == pushes + 1
    assert after != before and after == hf(module, prompts)


def test_frozen_copies_play_on_a_second_engine_that_leaves_the_random_streams_alone(module, prompts):
    snapshot = module.add_snapshot(OPPONENT)
    module.refresh_snapshot(OPPONENT)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    frozen = module.vllm_engine(FROZEN)  # started here
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    frozen_before = module.policy_backend(name=OPPONENT).generate(prompts, GREEDY)
    assert frozen_before == hf(module, prompts, model=snapshot)
    optimizer_step(module, prompts)
    pushes = frozen.pushes
    assert module.policy_backend().generate(prompts, GREEDY) == hf(module, prompts)
    assert module.policy_backend(name=OPPONENT).generate(prompts, GREEDY) == frozen_before
    assert frozen.pushes == pushes  # the policy's step is not the snapshot's
    module.refresh_snapshot(OPPONENT)  # a league load or a refresh: the snapshot's load_state_dict
    assert module.policy_backend(name=OPPONENT).generate(prompts, GREEDY) == hf(module, prompts)
    assert frozen.pushes == pushes + 1


class SnapshotPool:
    """Frozen seats played by the module's opponent snapshot (a league of one)."""

    def __init__(self, module):
        self.module = module

    def sample(self, rng):
        return 0

    def backend(self, member):
        return self.module.policy_backend(name=OPPONENT)


def play_and_credit(module, backend):
    """A round of 6 Bazaar games (the policy against frozen copies and the linear agent), scored and credited."""
    module.sampling = dataclasses.replace(GREEDY, backend=backend)
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={FROZEN: 0.5, "linear": 0.5})
    engine = RolloutEngine([spec], module.tokenizer, module.sampling)
    with seeded(0, module.device):
        games = engine.play(6, seed=1, policy=module.policy_backend(), frozen=SnapshotPool(module))
    return games, module.credit_round(module.score(games))


def structure(value):
    """Types, tensor dtypes and shapes, container lengths and dataclass fields of ``value``, recursively."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape))
    if dataclasses.is_dataclass(value):
        return (type(value), {f.name: structure(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return (dict, {k: structure(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return (type(value), [structure(v) for v in value])
    return type(value)


def test_a_round_has_the_records_of_the_hf_backend(module):
    module.add_snapshot(OPPONENT)
    hf_games, hf_samples = play_and_credit(module, "hf")
    vllm_games, vllm_samples = play_and_credit(module, "vllm")
    assert {g.seats[p] for g in vllm_games for p in g.seats} >= {POLICY, FROZEN, "linear"}
    for hf_game, vllm_game in zip(hf_games, vllm_games, strict=True):
        assert vllm_game.response_ids == hf_game.response_ids  # greedy: the same text
        assert structure({k: v for k, v in vars(vllm_game).items() if k != "env"}) == structure(
            {k: v for k, v in vars(hf_game).items() if k != "env"}
        )
    assert structure(vllm_samples) == structure(hf_samples)
    module.sampling = GREEDY


@pytest.fixture(scope="module")
def lora_module(module, tmp_path_factory):
    """LoRA adapters (rank 4, drawn wide so that they change greedy completions) on the exported tiny policy."""
    pytest.importorskip("peft", reason="LoRA needs peft (the lora extra)")
    folder = tmp_path_factory.mktemp("base")
    module.save_pretrained(str(folder))
    adapted = MaroModule(policy=str(folder), attn_implementation="eager", lora=LoraConfig(r=4), sampling=GREEDY)
    adapted.configure_model()
    with torch.no_grad():
        for weight in adapter_parameters(adapted.policy).values():
            weight.normal_(0.0, 0.3)
    return adapted


def test_lora_plays_its_merged_weights_and_snapshots_theirs(lora_module, prompts):
    """Under LoRA the engines load merged weights: the policy's greedy completions are the adapted model's (not the
    base's), a snapshot's are the snapshot adapter's, and after a step each engine serves its own again."""
    module = lora_module
    with module.policy.disable_adapter():
        base = hf(module, prompts)
    assert module.policy_backend().generate(prompts, GREEDY) == hf(module, prompts) != base
    module.add_snapshot(OPPONENT)
    module.refresh_snapshot(OPPONENT)
    snapshot_before = hf(module, prompts)
    optimizer_step(module, prompts)
    adapters = [p.detach().clone() for p in adapter_parameters(module.policy).values()]
    assert module.policy_backend().generate(prompts, GREEDY) == hf(module, prompts) != snapshot_before
    assert module.policy_backend(name=OPPONENT).generate(prompts, GREEDY) == snapshot_before
    assert all(torch.equal(a, b) for a, b in zip(adapter_parameters(module.policy).values(), adapters, strict=True))
