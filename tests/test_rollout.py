"""The rollout engine on the tiny model: batched generation across games, seats, prompts recorded."""

import copy

import pytest
import torch
from transformers import LogitsProcessorList
from transformers import TemperatureLogitsWarper
from transformers import TopPLogitsWarper

from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import Episode
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import UtilityHead
from maro_lightning.models import build_tiny_model
from maro_lightning.models import trunk_and_head
from maro_lightning.rollout import GameSpec
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import RolloutEngine
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout import left_pad
from maro_lightning.rollout import truncate_prompt
from maro_lightning.rollout.engine import encode_prompt
from maro_lightning.rollout.engine import encode_prompts
from maro_lightning.rollout.generation import inverse_cdf_sample
from maro_lightning.rollout.generation import sampler
from maro_lightning.scoring import credit_round
from maro_lightning.scoring import score_round


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, corpus_games=("bazaar",)))


def test_tiny_tokenizer_keeps_actions_and_integers_whole(tiny):
    _, tokenizer = tiny
    ids = tokenizer("[Offer: $1000] S L=100")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == "[ Offer : $ 1000 ] S L = 100"  # the games' parser reads this spacing
    assert len(tokenizer.tokenize("999")) == 1


def test_trunk_and_head_with_tied_embeddings(tiny):
    model, _ = tiny
    trunk, weight, bias = trunk_and_head(model)
    assert weight is model.get_input_embeddings().weight and bias is None
    ids = torch.tensor([[5, 6, 7]])
    hidden = trunk(input_ids=ids).last_hidden_state
    torch.testing.assert_close(hidden @ weight.T, model(input_ids=ids).logits)


def test_batched_rollout_plays_every_game_to_the_end(tiny):
    model, tokenizer = tiny
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"linear": 0.5, "frozen": 0.5})
    engine = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=6))
    games = engine.play(8, seed=1, policy=HFGenerate(model, tokenizer))
    assert all(g.env.done for g in games) and engine.stats.generated_tokens > 0
    for game in games:
        model_turns = [t.index for t in game.env.turns if game.seats[t.player] in ("policy", "frozen")]
        assert sorted(game.prompt_ids) == model_turns == sorted(game.response_ids)
        assert all(len(ids) <= 6 for ids in game.response_ids.values())
        episode = Episode.from_env(game.env, policy_players=game.policy_players, prompts=game.prompts)
        assert {b.prompt for bs in episode.behaviours.values() for b in bs} <= set(game.prompts.values())
    again = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=6))
    torch.manual_seed(3)
    first = [g.seats for g in again.play(8, seed=1, policy=HFGenerate(model, tokenizer))]
    assert first == [g.seats for g in games]  # seats and games derive from the seed


def test_prompt_truncation_keeps_head_and_tail():
    sampling = SamplingConfig(max_prompt_tokens=6, keep_head_tokens=2)
    assert truncate_prompt(list(range(10)), sampling) == [0, 1, 6, 7, 8, 9]
    assert truncate_prompt([1, 2], sampling) == [1, 2]
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_bad_specs_fail_early():
    with pytest.raises(ValueError, match="unknown opponents"):
        GameSpec("bazaar", opponents={"grandmaster": 1.0})
    with pytest.raises(ValueError, match="unknown game"):
        GameSpec("chess")
    with pytest.raises(ValueError, match="sampling"):
        SamplingConfig(top_p=0)


def test_scoring_gives_samples_with_exact_old_logprobs(tiny):
    model, tokenizer = tiny
    spec = GameSpec("bazaar", options={"obs_format": "compact"}, opponents={"policy": 0.5, "linear": 0.5})
    games = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=5)).play(
        4, seed=2, policy=HFGenerate(model, tokenizer)
    )
    head = UtilityHead(model.config.hidden_size, width=16)
    scored = score_round(model, head, games, batch_size=3, pad_id=tokenizer.pad_token_id)
    samples = credit_round(CreditAssigner(), scored)
    assert len(samples) == sum(len(g.prompt_ids) for g in games)  # policy seats only, here every model seat
    for sample in samples[:6]:
        ids = torch.cat([sample.prompt_ids, sample.response_ids])[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)  # [L, V]
        start = len(sample.prompt_ids) - 1
        expected = logp[start : start + len(sample.response_ids)].gather(1, sample.response_ids[:, None])[:, 0]
        torch.testing.assert_close(sample.old_logprobs, expected, rtol=1e-4, atol=1e-5)
        assert sample.value == 0.0 and sample.q_value == 0.0  # the head's output layer starts at zero
    assert all(torch.isfinite(torch.tensor([s.advantage, s.weight])).all() for s in samples)


class _Recording:
    """A backend that writes one fixed invalid reply and records how many prompts each call got."""

    def __init__(self, tokenizer):
        self.reply, self.calls = tokenizer("hello", add_special_tokens=False)["input_ids"], []

    def generate(self, prompts, sampling):
        self.calls.append(len(prompts))
        return [list(self.reply) for _ in prompts]


@pytest.mark.parametrize(("game", "opponent"), [("bazaar", "linear"), ("mafia", "scripted")])
def test_every_sweep_batches_every_unfinished_game(tiny, game, opponent):
    """Scripted seats play on until a model seat is due, so each sweep's batch holds a model seat of every game that
    is not over, whoever moves first (one sweep behind for half the games, before)."""
    _, tokenizer = tiny
    spec = GameSpec(game, options={"obs_format": "compact"}, opponents={opponent: 1.0})
    backend = _Recording(tokenizer)
    games = RolloutEngine([spec], tokenizer, SamplingConfig(max_new_tokens=4)).play(12, seed=4, policy=backend)
    assert all(g.env.done for g in games)
    policy_turns = [len(g.response_ids) for g in games]
    assert len({frozenset(g.policy_players) for g in games}) > 1  # the policy moves first in some games, not all
    assert backend.calls == [sum(n > k for n in policy_turns) for k in range(max(policy_turns))]


def test_batched_prompts_encode_as_one_at_a_time(tiny):
    _, tokenizer = tiny
    texts = ["B L=52 r=43 t=1 | 52 >", "S L=100 t=2 | 100 - 95 >", "x"]
    chat = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for t in texts
    ]
    assert encode_prompts(tokenizer, texts) == chat and encode_prompt(tokenizer, texts[0]) == chat[0]
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    assert encode_prompts(plain, texts) == [plain(t)["input_ids"] for t in texts] and encode_prompts(plain, []) == []


def test_inverse_cdf_draws_each_token_with_its_probability():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000  # evenly spread uniforms: exact frequencies
    tokens = inverse_cdf_sample(probs.repeat_interleave(1000, 0), grid.repeat(2))
    first, second = tokens[:1000], tokens[1000:]
    assert torch.bincount(first, minlength=6).tolist() == [0, 500, 0, 250, 250, 0] and (second == 0).all()
    near_one = torch.tensor([1 - 2**-53, 0.0], dtype=torch.float64)
    assert inverse_cdf_sample(probs, near_one).tolist() == [4, 0]  # never the zero-mass tail, never out of range


def test_sampler_draws_from_the_warped_softmax():
    torch.manual_seed(0)
    logits = torch.randn(1, 12)
    sampling = SamplingConfig(temperature=0.7, top_p=0.8)
    scores = sampler(sampling)(None, logits.repeat(20_000, 1))  # [N, V]: 0 at the drawn token, -inf elsewhere
    assert ((scores == 0).sum(1) == 1).all() and (scores.isinf() | (scores == 0)).all()
    hf = LogitsProcessorList([TemperatureLogitsWarper(0.7), TopPLogitsWarper(0.8)])
    expected = torch.softmax(hf(None, logits.clone()), -1)[0]  # Hugging Face's sampling distribution
    frequencies = torch.bincount(scores.argmax(1), minlength=12) / 20_000
    assert ((frequencies > 0) <= (expected > 0)).all()  # nothing outside the nucleus
    torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)  # ~4 standard errors at p = 0.5
    assert len(sampler(SamplingConfig(temperature=0))) == 0  # greedy: the argmax
