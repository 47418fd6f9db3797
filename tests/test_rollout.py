"""The rollout engine on the tiny model: batched generation across games, seats, prompts recorded."""

import pytest
import torch

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
