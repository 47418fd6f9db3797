"""Models: the policy (a Hugging Face causal LM, or the tiny local one built offline with its tokenizer)
and the behaviour-utility head (docs/design.md#formulation, M3)."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex
from tokenizers import Tokenizer
from tokenizers import decoders
from tokenizers import models as tk_models
from tokenizers import pre_tokenizers
from torch import Tensor
from torch import nn
from transformers import AutoModelForCausalLM
from transformers import AutoTokenizer
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase
from transformers import PreTrainedTokenizerFast
from transformers import Qwen2Config

from maro_lightning import envs

HEAD_INPUTS = ("last", "last_mean")  # what the utility head reads at a behaviour's position (HeadConfig.inputs)


class UtilityHead(nn.Module):
    """The behaviour-utility head U: a small MLP from a policy hidden state to one scalar (expected outcome).

    ``V_t = U(h at the last prompt token)`` estimates the outcome before behaviour t, ``Q_t = U(h at the
    last response token)`` after it; ``u_t = Q_t − V_t`` is what the behaviour changed (M3), and the
    ``V_t`` chain feeds the turn-level decomposition (M1).

    Layout: LayerNorm (hidden sizes and scales differ between models), then ``depth`` blocks
    Linear -> GELU of ``width`` units, then Linear -> 1. The output layer starts at zero, so an untrained
    head says V = Q = 0: no utility term, and M1 starts as the plain outcome on the last behaviour.

    Args:
        hidden_size: H, the policy's hidden size.
        width: units of each hidden layer.
        depth: hidden layers (0: a linear probe on the normalised hidden state).
        detach_trunk: stop gradients from the utility loss into the policy trunk (on by default: the
            regression then cannot pull the policy's features towards predicting its own outcome).
        inputs: what :meth:`behaviour_values` reads at a position p: ``"last"``, the hidden state ``h_p``;
            ``"last_mean"``, ``[h_p, mean(h_0..h_p)]`` (the mean over the sequence up to p), an input of 2H.
    """

    def __init__(
        self,
        hidden_size: int,
        width: int = 256,
        depth: int = 1,
        detach_trunk: bool = True,
        inputs: Literal["last", "last_mean"] = "last",
    ) -> None:
        super().__init__()
        if hidden_size < 1 or width < 1 or depth < 0:
            raise ValueError(f"need hidden_size >= 1, width >= 1, depth >= 0; got {hidden_size}, {width}, {depth}")
        if inputs not in HEAD_INPUTS:
            raise ValueError(f"inputs must be one of {', '.join(HEAD_INPUTS)}, got {inputs!r}")
        self.detach_trunk, self.inputs = detach_trunk, inputs
        size = hidden_size * (2 if inputs == "last_mean" else 1)
        layers: list[nn.Module] = [nn.LayerNorm(size)]
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.GELU()]
            size = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(size, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Utility of every feature vector: ``[..., H]`` (``[..., 2H]`` with ``last_mean``; any float dtype) ->
        ``[...]`` in the head's dtype."""
        if self.detach_trunk:
            features = features.detach()
        return self.out(self.body(features.to(self.out.weight.dtype))).squeeze(-1)

    def behaviour_values(
        self, hidden: Tensor, prompt_last: Tensor, response_last: Tensor, rows: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """V and Q of M behaviours read from a batch of sequences.

        Args:
            hidden: ``[B, L, H]`` trunk outputs.
            prompt_last: ``[M]`` int64, position of each behaviour's last prompt token.
            response_last: ``[M]`` int64, position of its last response token.
            rows: ``[M]`` int64, the row of ``hidden`` holding each behaviour (packed sequences may hold
                several; with ``last_mean`` the mean then starts at the row's first token); None means behaviour
                m is row m (M = B).

        Returns:
            ``(V [M], Q [M])``.
        """
        picked = torch.arange(hidden.shape[0], device=hidden.device) if rows is None else rows
        features = torch.stack([hidden[picked, prompt_last], hidden[picked, response_last]])  # [2, M, H]: 2M states
        if self.inputs == "last_mean":
            states = hidden if rows is None else hidden[rows]  # [M, L, H]
            means = self._prefix_means(states, torch.stack([prompt_last, response_last]))
            features = torch.cat([features, means], dim=-1)  # [2, M, 2H]
        values, q_values = self(features)  # [2, M] -> two [M]
        return values, q_values

    def _prefix_means(self, states: Tensor, positions: Tensor) -> Tensor:
        """``[M, L, H]`` states, ``[2, M]`` positions -> ``[2, M, H]``: the mean of each row's states up to each
        position, in the head's dtype (a 0/1 mask times the states: one matmul, no [M, L, H] cumulative sum)."""
        steps = torch.arange(states.shape[1], device=states.device)
        mask = (steps <= positions[..., None]).to(states.dtype)  # [2, M, L]
        sums = torch.einsum("kml,mlh->kmh", mask, states).to(self.out.weight.dtype)
        return sums / (positions[..., None] + 1).to(sums.dtype)

    @staticmethod
    def loss(
        values: Tensor,
        q_values: Tensor,
        targets: Tensor,
        weights: Tensor | None = None,
        total_weight: float | Tensor | None = None,
    ) -> Tensor:
        """Regression of V and Q onto the targets (z_i or λ-returns), a scalar.

        ``L = Σ_m w_m · ((V_m − y_m)² + (Q_m − y_m)²) / (2 · W)``, with all w = 1 by default and W = Σ_m w_m
        unless ``total_weight`` gives it (the weight of a whole optimizer step, when this is one micro-batch
        of it). With M = 0 it is 0, still attached to the graph of ``values``.

        Args:
            values: ``[M]`` V estimates.
            q_values: ``[M]`` Q estimates.
            targets: ``[M]`` regression targets (``BehaviourSample.utility_target``).
            weights: ``[M]`` non-negative sample weights (e.g. the M2 weights), or None.
            total_weight: W, the normaliser (default: ``Σ weights``).
        """
        targets = targets.to(values.dtype)
        weights = torch.ones_like(targets) if weights is None else weights.to(values.dtype)
        errors = (values - targets) ** 2 + (q_values - targets) ** 2  # [M]
        total = weights.sum() if total_weight is None else torch.as_tensor(total_weight, dtype=values.dtype)
        return (weights * errors).sum() / (2.0 * total).clamp_min(torch.finfo(values.dtype).tiny)


# ---------------------------------------------------------------------------------------------- the policy
SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}
USER, ASSISTANT = "<|user|>", "<|assistant|>"
# The tiny model's chat template: one user turn (the observation) and the assistant's reply.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} {% else %}"
    "<|assistant|> {{ m['content'] }}<eos>{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Words split from numbers and from each punctuation mark: "[Offer: $92]" -> "[", "Offer", ":", "$", "92", "]".
_WORD_PIECES = r"\d+|[A-Za-z_]+|[^\sA-Za-z\d_]"
GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")  # what the tiny tokenizer saves as
MAX_INT_TOKEN = 1000  # every integer 0..1000 is one token (docs/design.md#tiny-model: prices are learnt)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its EOS (many causal LMs define no pad token)."""
    pad = tokenizer.pad_token_id
    return pad if pad is not None else tokenizer.eos_token_id


def build_tokenizer(corpus: Iterable[str], kind: Literal["word", "byte"] = "word") -> PreTrainedTokenizerFast:
    """A tokenizer built offline, with the tiny chat template.

    ``word``: word level, vocabulary = special tokens, the integers 0..1000, and every word of ``corpus``
    (the games' compact observations and scripted actions); unknown words map to ``<unk>``. ``byte``: the
    256 byte values, no training needed (learns less well on CPU, docs/design.md#tiny-model).
    """
    specials = [*SPECIAL_TOKENS.values(), USER, ASSISTANT]
    if kind == "byte":
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # the 256 bytes as printable characters
        core = Tokenizer(tk_models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))  # no merges: bytes
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        core.decoder = decoders.ByteLevel()
    elif kind == "word":
        vocab = {token: i for i, token in enumerate(specials)}
        for word in [str(n) for n in range(MAX_INT_TOKEN + 1)] + _words(corpus):
            vocab.setdefault(word, len(vocab))
        core = Tokenizer(tk_models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_WORD_PIECES), behavior="isolated")]
        )
        core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins pieces with spaces
    else:
        raise ValueError(f"tokenizer kind must be 'word' or 'byte', got {kind!r}")
    core.add_special_tokens(specials)
    return tokenizer_from_json(core.to_str())


def tokenizer_to_json(tokenizer: PreTrainedTokenizerFast) -> str:
    """The built tokenizer as one JSON string: what a checkpoint stores so the tiny model reloads exactly."""
    return tokenizer.backend_tokenizer.to_str()


def tokenizer_from_json(text: str) -> PreTrainedTokenizerFast:
    """The inverse of :func:`tokenizer_to_json`, with the tiny chat template and left padding."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(text), **SPECIAL_TOKENS, padding_side="left"
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _words(corpus: Iterable[str]) -> list[str]:
    pattern = re.compile(_WORD_PIECES)
    seen: dict[str, None] = {}
    for text in corpus:
        seen.update(dict.fromkeys(pattern.findall(text)))
    return sorted(seen)


def game_corpus(games: Iterable[str], episodes: int = 200) -> list[str]:
    """Compact observations and scripted-agent messages of ``episodes`` seeded games per game: the word list
    of the tiny tokenizer (every scripted agent plays, so every action word appears)."""
    texts = []
    for game in games:
        env = envs.make(game, obs_format="compact")
        names = envs.agent_names(game)
        for seed in range(episodes):
            env.reset(seed)
            agents = {p: envs.agent(names[(seed + p) % len(names)], game=game) for p in env.roles}
            envs.play_episode(env, agents, seed, before_step=lambda p, env=env: texts.append(env.observation(p)))
            texts.extend(turn.raw for turn in env.turns)
    return texts


@dataclass(frozen=True)
class TinyModelConfig:
    """The tiny local policy (docs/design.md#tiny-model): a Qwen2-style decoder that learns on CPU in minutes."""

    hidden_size: int = 128
    """Model width."""
    num_layers: int = 2
    """Decoder layers."""
    num_heads: int = 4
    """Attention heads (key/value heads = half of them, grouped-query attention)."""
    intermediate_size: int = 256
    """MLP width."""
    max_positions: int = 1024
    """Longest prompt + response the model accepts."""
    tokenizer: Literal["word", "byte"] = "word"
    """``word``: word level, trained in memory on the games' compact observations, every integer 0..1000 a
    token (V ≈ 1k); ``byte``: 256 bytes (longer sequences, learns less well)."""
    corpus_games: tuple[str, ...] = ("bazaar", "deal", "mafia")
    """Games whose compact observations and scripted messages give the word vocabulary (registered games or
    ``textarena:ID`` ones with scripted agents)."""

    def __post_init__(self) -> None:
        unknown = [game for game in self.corpus_games if not envs.is_game(game)]
        if unknown or not self.corpus_games:
            raise ValueError(
                f"tiny.corpus_games: unknown or no games {unknown or list(self.corpus_games)}; "
                f"choose from: {', '.join(envs.names())}"
            )
        sizes = (self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size, self.max_positions)
        if min(sizes) < 1 or self.hidden_size % self.num_heads:
            raise ValueError(f"tiny: sizes must be >= 1 and hidden_size divisible by num_heads, got {self}")


def build_tiny_model(
    config: TinyModelConfig, attn_implementation: str = "eager"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A randomly initialised tiny Qwen2 policy with tied embeddings and its tokenizer, built offline.

    Eager attention by default: on CPU, SDPA was 5–20× slower at batch 256 for this size (docs/design.md#tiny-model).
    """
    corpus = game_corpus(config.corpus_games) if config.tokenizer == "word" else []
    tokenizer = build_tokenizer(corpus, kind=config.tokenizer)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=max(1, config.num_heads // 2),
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(model_config, attn_implementation=attn_implementation)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def default_attn_implementation(device: torch.device | str | None = None) -> str:
    """flash_attention_2 on CUDA when flash-attn imports, else SDPA."""
    on_cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    return "flash_attention_2" if on_cuda and importlib.util.find_spec("flash_attn") else "sdpa"


def check_policy_name(name_or_path: str) -> None:
    """A policy that names a local folder must exist: fail now, not after the hub's retries on a "repo id".

    A Hugging Face id is ``name`` or ``org/name``; anything else that looks like a path (absolute, ``./``,
    ``../``, ``~``, several slashes, a backslash) or that is an existing file is read as a local folder.

    Raises:
        ValueError: the folder does not exist, or the path is a file.
    """
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if path.is_file():
        raise ValueError(f"policy={name_or_path!r} is a file; give the model's folder or a Hugging Face id")
    if looks_local and not path.is_dir():
        raise ValueError(f"policy={name_or_path!r}: no such local folder (a Hugging Face id looks like org/name)")


def unwritable_actions(tokenizer: PreTrainedTokenizerBase, games: Iterable) -> str:
    """Canonical actions of the ``games`` (GameSpecs) that ``tokenizer`` reads as unknown tokens, one example
    per game, e.g. ``"bazaar: '[Offer: $80]'"``; "" when every game's actions tokenize without ``<unk>``."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return ""
    found = []
    for spec in games:
        env = envs.make(spec.name, **{**spec.options, "obs_format": "compact"})
        env.reset(0)
        names = envs.agent_names(spec.name)
        envs.play_episode(env, {p: envs.agent(names[p % len(names)], game=spec.name) for p in env.roles}, 0)
        actions = dict.fromkeys(turn.action for turn in env.turns if turn.action)
        bad = [a for a in actions if unk in tokenizer(a, add_special_tokens=False)["input_ids"]]
        if bad:
            found.append(f"{spec.name}: {bad[0]!r}")
    return "; ".join(found)


def load_policy(
    name_or_path: str,
    dtype: str | torch.dtype = "auto",
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a Hugging Face id or a local folder (a saved tiny model too)."""
    tokenizer = load_tokenizer(name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models often ship no pad token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=dtype, attn_implementation=attn_implementation or default_attn_implementation()
    )
    return model, tokenizer


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hugging Face id or local folder. A generic ``tokenizers`` tokenizer (the tiny model's,
    exported by ``MaroModule.save_pretrained``) loads as exactly that: ``AutoTokenizer`` would pick the tokenizer
    class of the model type in ``config.json`` (Qwen2's) and replace its pre-tokenizer, splitting "$92" differently."""
    config = Path(name_or_path) / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text()).get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES:
        return PreTrainedTokenizerFast.from_pretrained(name_or_path)
    return AutoTokenizer.from_pretrained(name_or_path)


def trunk_and_head(model: PreTrainedModel) -> tuple[torch.nn.Module, torch.nn.Parameter, torch.nn.Parameter | None]:
    """The decoder that gives final hidden states (after the last norm, no logits) and the LM head's weight
    ``[V, H]`` and bias ``[V]`` (or None), as the fused loss needs them. With tied embeddings the head weight
    *is* the input embedding, one Parameter."""
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise ValueError(f"{type(model).__name__} has no linear output head to fuse into the loss")
    return model.get_decoder(), head.weight, getattr(head, "bias", None)


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them from the forward (gradient
    checkpointing, Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"), with Hugging Face's switch
    and non-reentrant ``torch.utils.checkpoint`` (``use_reentrant=False``: no input needs ``requires_grad``, and
    it composes with FSDP). Hugging Face checkpoints only a training-mode forward with gradients enabled, so
    ``generate`` and the no-grad scoring forward run as before.

    Raises:
        ValueError: the model does not support it (Hugging Face's message).
    """
    # Newer transformers name it activation_checkpointing_enable; gradient_checkpointing_enable is the older name
    # (a deprecated alias there). Both take the checkpoint function's kwargs first.
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": False})
