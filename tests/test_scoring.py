"""Scoring a round (maro_lightning.scoring: length-sorted batches, log-probs of the response tokens alone, no KV cache)
gives what scoring each behaviour alone gives: old and reference log-probs from the full logits' log-softmax, V and Q
from the head on the trunk's hidden states; with a separate reference, and under LoRA with the base as the reference."""

import contextlib
import copy
import dataclasses

import pytest
import torch

from maro_lightning import scoring
from maro_lightning.credit import Episode
from maro_lightning.lora import LoraConfig
from maro_lightning.lora import adapter_parameters
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import UtilityHead
from maro_lightning.models import build_tiny_model
from maro_lightning.models import trunk_and_head
from maro_lightning.module import LossConfig
from maro_lightning.module import MaroModule
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig
from maro_lightning.scoring import pack
from maro_lightning.scoring import prefix_groups
from maro_lightning.scoring import prefix_length
from maro_lightning.scoring import score_round

TEMPERATURE = 0.7
TINY = TinyModelConfig(hidden_size=32, intermediate_size=64, num_heads=2, corpus_games=("bazaar",))


class RandomReplies:
    """Replies of 1 to 6 random tokens: behaviours of many lengths, so batches pad."""

    def __init__(self, vocab: int) -> None:
        self.vocab, self.generator = vocab, torch.Generator().manual_seed(1)

    def generate(self, prompts, sampling):
        lengths = torch.randint(1, 7, (len(prompts),), generator=self.generator).tolist()
        return [torch.randint(5, self.vocab, (n,), generator=self.generator).tolist() for n in lengths]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model(TINY)
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"linear": 1.0})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=6))
    return model, tokenizer, engine.play(6, seed=3, policy=RandomReplies(len(tokenizer)))


def randomize(parameters, seed: int) -> None:
    """Draw the parameters afresh (the head's output layer and LoRA's B start at zero, which would hide a mistake)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in parameters:
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)


def alone(model, head, prompt, response):
    """Log-probs of one behaviour's response from its full logits, and its V and Q: the plain computation."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float() / TEMPERATURE, -1)  # [L, V]
        hidden = trunk_and_head(model)[0](input_ids=ids).last_hidden_state  # [1, L, H]
        v, q = head.behaviour_values(hidden, torch.tensor([len(prompt) - 1]), torch.tensor([ids.shape[1] - 1]))
    start = len(prompt) - 1
    return logp[start : start + len(response)].gather(1, torch.tensor(response)[:, None])[:, 0], v[0], q[0]


def assert_scored_alone(scored, policy, reference, head):
    lengths = {len(p) + len(r) for p, r in scored.pairs}
    assert len(scored.pairs) > 8 and len(lengths) > 3  # batches that need padding
    for (prompt, response), old, ref, v, q in zip(
        scored.pairs, scored.old_logprobs, scored.ref_logprobs, scored.values, scored.q_values, strict=True
    ):
        expected_old, expected_v, expected_q = alone(policy, head, prompt, response)
        torch.testing.assert_close(old, expected_old, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ref, reference(prompt, response), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close((v, q), (expected_v, expected_q), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("batch_size", "share_prefixes", "attention"),
    [(3, False, "eager"), (64, False, "eager"), (3, True, "eager"), (64, True, "eager"), (64, True, "sdpa")],
)
def test_batched_scoring_matches_each_behaviour_alone(tiny, batch_size, share_prefixes, attention, monkeypatch):
    monkeypatch.setattr(scoring, "MIN_SHARED_PREFIX", 1)  # compact prompts share ~10 tokens: share them all
    model, tokenizer, games = tiny
    model.config._attn_implementation = attention
    head, frozen = UtilityHead(model.config.hidden_size, width=16), copy.deepcopy(model)
    randomize(head.parameters(), seed=2)
    randomize(frozen.parameters(), seed=3)
    scored = score_round(
        model,
        head,
        games,
        reference=contextlib.nullcontext(frozen),
        temperature=TEMPERATURE,
        batch_size=batch_size,
        pad_id=tokenizer.pad_token_id,
        share_prefixes=share_prefixes,
    )
    model.config._attn_implementation = "eager"
    assert_scored_alone(scored, model, lambda p, r: alone(frozen, head, p, r)[0], head)


def test_a_shared_prefix_runs_once_and_each_behaviour_continues_it(tiny, monkeypatch):
    """Each group's prefix row plus a behaviour's own row is its prompt + response, at positions 0, 1, ...; a row
    sees its own group's prefix only; and fewer positions are computed than scoring each behaviour whole. Prefixes
    shorter than MIN_SHARED_PREFIX are not shared."""
    _, tokenizer, games = tiny
    pairs = [(g.prompt_ids[t], g.response_ids[t]) for g in games for t in sorted(g.prompt_ids)]
    flat = [(e, b) for g in games for e in [Episode.from_env(g.env, g.policy_players, g.prompts)] for b in e.flat()]
    groups = prefix_groups(flat, 64)
    assert pack(pairs, groups, tokenizer.pad_token_id).prefix_ids is None  # compact prompts: short prefixes
    monkeypatch.setattr(scoring, "MIN_SHARED_PREFIX", 1)
    batch = pack(pairs, groups, tokenizer.pad_token_id)
    assert batch.prefix_ids is not None and any(prefix_length(pairs, group) > 0 for group in groups)
    computed = batch.prefix_mask[:, 0].diagonal(dim1=1, dim2=2).sum() + batch.input_ids.ne(tokenizer.pad_token_id).sum()
    assert computed < sum(len(p) + len(r) for p, r in pairs)
    prefix_width = batch.prefix_ids.shape[1]
    for m, i in enumerate(batch.behaviours):
        prompt, response = pairs[i]
        last = batch.response_last[m]
        seen = batch.attention_mask[m, 0, last].nonzero()[:, 0]  # what its last response token attends to
        prefix, own = seen[seen < prefix_width], seen[seen >= prefix_width] - prefix_width
        tokens = batch.prefix_ids[batch.groups[m], prefix].tolist() + batch.input_ids[m, own].tolist()
        assert tokens == prompt + response
        assert batch.position_ids[m, own].tolist() == list(range(len(prefix), len(prompt) + len(response)))


def test_lora_scores_the_adapted_policy_against_its_base(tiny, tmp_path, monkeypatch):
    pytest.importorskip("peft", reason="LoRA needs peft: pip install 'maro-lightning[lora]'")
    monkeypatch.setattr(scoring, "MIN_SHARED_PREFIX", 1)  # the module shares prefixes by default
    model, tokenizer, games = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    module = MaroModule(
        policy=str(tmp_path),
        attn_implementation="eager",
        lora=LoraConfig(r=4),
        loss=LossConfig(beta=0.1),
        sampling=SamplingConfig(temperature=TEMPERATURE),
        score_batch_size=5,
    )
    module.configure_model()
    randomize(adapter_parameters(module.policy).values(), seed=5)  # B = 0 would make the adapted model the base
    randomize(module.utility_head.parameters(), seed=4)
    scored = module.score(games)

    def base(prompt, response):
        with module.policy.disable_adapter():
            return alone(module.policy, module.utility_head, prompt, response)[0]

    assert_scored_alone(scored, module.policy, base, module.utility_head)
    assert not torch.allclose(scored.old_logprobs[0], scored.ref_logprobs[0])  # the test tells the two apart


def test_prefixes_are_shared_only_where_the_attention_and_the_head_allow():
    module = MaroModule(tiny=TINY)
    module.configure_model()
    assert module._scores_shared_prefixes()
    for attention, shared in [("sdpa", True), ("flash_attention_2", False), ("eager", True)]:
        module.policy.config._attn_implementation = attention
        assert module._scores_shared_prefixes() is shared
    module.head_config = dataclasses.replace(module.head_config, inputs="last_mean")  # reads every position
    assert not module._scores_shared_prefixes()
    module.head_config, module.score_shared_prefixes = dataclasses.replace(module.head_config, inputs="last"), False
    assert not module._scores_shared_prefixes()
