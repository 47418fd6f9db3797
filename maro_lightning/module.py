"""``MaroModule``: the policy (a causal LM) and the behaviour-utility head, trained by MARO (docs/design.md#data-flow).

``training_step`` is fixed: the trunk's hidden states at the response tokens go to the fused
policy-gradient loss with the LM head's weight (no ``[tokens × vocab]`` logits tensor), and the utility
head regresses the outcome at each behaviour's last prompt and last response token. The rollout side lives
in :class:`~maro_lightning.callbacks.SimulationCallback`, which calls :meth:`MaroModule.policy_backend`,
:meth:`MaroModule.score` and :meth:`MaroModule.credit_round` here.

Extension points (docs/design.md#extending): the credit hooks :meth:`MaroModule.behaviour_rewards`,
:meth:`~MaroModule.compute_rewards`, :meth:`~MaroModule.compute_advantages`, :meth:`~MaroModule.compute_weights`
and :meth:`~MaroModule.compute_targets` (override one in a subclass; the defaults call the module's assigner,
which ``credit: {class_path: ...}`` may replace), :meth:`MaroModule.token_weights` (the loss's aggregation), the
advantage and weighting registries of :mod:`maro_lightning.credit`, and the optimizer and scheduler callables of
LightningCLI.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from maro_kernels import GRAD_WEIGHT_DTYPES
from maro_kernels import IMPLS
from maro_kernels import fused_pg_loss
from maro_lightning import distributed
from maro_lightning import fsdp
from maro_lightning import lora
from maro_lightning.batch import TrajectoryBatch
from maro_lightning.credit import BehaviourSample
from maro_lightning.credit import CreditAssigner
from maro_lightning.credit import CreditBatch
from maro_lightning.credit import CreditConfig
from maro_lightning.credit import Episode
from maro_lightning.errors import ConfigError
from maro_lightning.evaluation import LadderMatch
from maro_lightning.evaluation import invalid_rate
from maro_lightning.evaluation import ladder_keys
from maro_lightning.evaluation import match_outcomes
from maro_lightning.evaluation import play_match
from maro_lightning.lora import AdapterSnapshot
from maro_lightning.lora import LoraConfig
from maro_lightning.lora import SnapshotBackend
from maro_lightning.metrics import OutcomeMetric
from maro_lightning.metrics import explained_variance
from maro_lightning.models import HEAD_INPUTS
from maro_lightning.models import TinyModelConfig
from maro_lightning.models import UtilityHead
from maro_lightning.models import build_tiny_model
from maro_lightning.models import check_policy_name
from maro_lightning.models import enable_activation_checkpointing
from maro_lightning.models import load_policy
from maro_lightning.models import pad_id
from maro_lightning.models import tokenizer_from_json
from maro_lightning.models import tokenizer_to_json
from maro_lightning.models import trunk_and_head
from maro_lightning.rollout import FROZEN
from maro_lightning.rollout import POLICY
from maro_lightning.rollout import GenerationBackend
from maro_lightning.rollout import HFGenerate
from maro_lightning.rollout import PlayedGame
from maro_lightning.rollout import SamplingConfig
from maro_lightning.rollout.vllm_engine import VLLMEngine
from maro_lightning.rollout.vllm_engine import VLLMGenerate
from maro_lightning.rollout.vllm_engine import count_optimizer_steps
from maro_lightning.scoring import ScoredRound
from maro_lightning.scoring import credit_round
from maro_lightning.scoring import score_round
from maro_lightning.seeding import seeded

REFERENCE, OPPONENT = "reference", "opponent"  # the frozen snapshots of the policy


@dataclass(frozen=True)
class LossConfig:
    """The training objective: ``loss = pg_loss + utility_coef · utility_loss`` (docs/kernels.md)."""

    clip_low: float = 0.2
    """PPO's lower ratio clip ε (Schulman et al. 2017, arXiv 1707.06347)."""
    clip_high: float = 0.2
    """Upper ratio clip; DAPO (arXiv 2503.14476) raises it to 0.28 to keep exploring."""
    beta: float = 0.0
    """Weight of the k3 KL estimate to the frozen reference policy (0: no reference kept).
    docs/design.md#tiny-model: 0.05 keeps the tiny model's action format from drifting."""
    utility_coef: float = 0.5
    """c_u, the weight of the utility head's regression loss."""
    aggregation: Literal["token_mean", "sequence_mean"] = "token_mean"
    """``token_mean``: every response token counts once (DAPO); ``sequence_mean``: every behaviour counts
    once, its tokens share its weight (GRPO)."""
    on_nonfinite: Literal["raise", "skip"] = "raise"
    """A non-finite loss or gradient: ``raise`` stops the run naming the step and the quantity; ``skip``
    drops that optimizer step's update (on every rank), logs ``train/skipped_steps`` and goes on."""
    max_skipped_fraction: float = 0.1
    """With ``skip``: the run stops (FloatingPointError) once more than this share of the last ``skip_window``
    optimizer steps were skipped: a run that drops most of its updates is not training."""
    skip_window: int = 20
    """Optimizer steps over which ``max_skipped_fraction`` is counted."""
    impl: Literal["auto", "triton", "chunked", "reference"] = "auto"
    """The fused loss implementation (docs/kernels.md): auto (Triton on CUDA, else chunked), triton, chunked or
    reference. Checked when the config is parsed."""
    grad_weight_dtype: Literal["float32", "weight"] = "float32"
    """The dtype the fused loss (chunked, triton) accumulates the LM head's gradient ``[V, H]`` in, held from the
    loss's forward to its backward: ``float32``, or ``weight`` (the weight's dtype: half the memory for bf16/fp16
    weights, 1 GiB instead of 2 at V = 128k, H = 4096, for a gradient error of about √chunks · 1e-3 in bf16; avoid
    with fp16, whose narrow range loses small gradients). Same as float32 for fp32 weights; ``reference``
    ignores it (docs/kernels.md#accumulating-in-the-weights-dtype)."""

    def __post_init__(self) -> None:
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0 and self.beta >= 0 and self.utility_coef >= 0):
            raise ValueError(f"bad loss config {self}: need 0 <= clip_low < 1, clip_high >= 0, beta >= 0, coef >= 0")
        if self.aggregation not in ("token_mean", "sequence_mean") or self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"bad loss config {self}: aggregation token_mean|sequence_mean, on_nonfinite raise|skip")
        if self.impl not in IMPLS:
            raise ValueError(f"bad loss config {self}: impl must be one of {', '.join(IMPLS)}")
        if self.grad_weight_dtype not in GRAD_WEIGHT_DTYPES:
            raise ValueError(f"bad loss config {self}: grad_weight_dtype must be {' or '.join(GRAD_WEIGHT_DTYPES)}")
        if not 0 <= self.max_skipped_fraction <= 1 or self.skip_window < 1:
            raise ValueError(f"bad loss config {self}: need 0 <= max_skipped_fraction <= 1 and skip_window >= 1")


@dataclass(frozen=True)
class HeadConfig:
    """The behaviour-utility head (M3), see :class:`~maro_lightning.models.UtilityHead`."""

    width: int = 256
    """Units of each hidden layer."""
    depth: int = 1
    """Hidden layers (0: a linear probe)."""
    detach_trunk: bool = True
    """Keep the utility loss's gradients out of the policy trunk."""
    inputs: Literal["last", "last_mean"] = "last"
    """What the head reads at a behaviour's last prompt token (V) and last response token (Q): ``last``, the trunk's
    final hidden state there; ``last_mean``, that state and the mean of the final hidden states from the sequence's
    first token up to it (an input of twice the hidden size). Offline, on the tiny model's Bazaar self-play
    checkpoints, ``last_mean`` explained 0.02 to 0.15 more of the outcome's variance than ``last`` at every budget
    tried; in Mafia neither explained anything (benchmarks/RESULTS.md#utility-head-study). Not measured online yet."""

    def __post_init__(self) -> None:
        if self.inputs not in HEAD_INPUTS:
            raise ValueError(f"head.inputs must be one of {', '.join(HEAD_INPUTS)}, got {self.inputs!r}")


class MaroModule(L.LightningModule):
    """The MARO policy and its utility head.

    Args:
        policy: a Hugging Face model id or local folder to load, or None for the tiny local model.
        tiny: the tiny model's sizes and tokenizer (used when ``policy`` is None).
        dtype: the loaded model's dtype ("auto", "bfloat16", "float32", ...); the tiny model is float32.
        attn_implementation: attention kernel; None: eager for the tiny model, else flash_attention_2 on CUDA
            when flash-attn imports, SDPA otherwise.
        gradient_checkpointing: recompute the policy's decoder layers in the training backward instead of keeping
            their activations (Hugging Face's activation checkpointing, non-reentrant): activation memory of
            about one layer instead of all of them, for about one more forward pass of compute. Same loss and
            gradients; rollouts and scoring (eval mode, no grad) are unaffected. Under FSDP, use this or the
            strategy's ``activation_checkpointing_policy``, not both (docs/design.md#memory).
        credit: MARO's switches (M1, M2, M3, baselines), or a ``CreditAssigner`` (a subclass with its own hooks,
            ``credit: {class_path: my_pkg.MyAssigner, init_args: {config: {...}}}``).
        head: the utility head.
        lora: LoRA adapters through ``peft`` (``pip install 'maro-lightning[lora]'``): only the adapters (and the head)
            train; the KL reference is the base model (the adapters disabled), frozen opponents are copies of the
            adapters, and a checkpoint holds the adapters and names the base by ``policy``, which must be a Hugging
            Face id or folder (docs/design.md#lora). None: every weight trains.
        loss: the objective.
        sampling: decoding in rollouts and evaluation, and who generates (``sampling.backend``: hf or vllm).
        generation_batch_size: prompts per ``generate`` call (0: all due prompts at once); hf only (vLLM schedules
            its own batches).
        score_batch_size: behaviours per scoring forward.
        score_shared_prefixes: in the scoring forward, run the prompt prefix that the behaviours of one player in one
            game share (the rules, the history) once, as a KV cache each of them continues: the same numbers from
            fewer positions (docs/design.md#data-flow). Applies where the attention takes a 4D mask (eager or SDPA,
            not flash-attention), ``head.inputs`` is ``last`` and FSDP does not shard the policy; elsewhere each
            behaviour is scored whole.
        optimizer: the optimizer, built over the trainable parameters (LightningCLI: ``optimizer:``).
        lr_scheduler: an optional scheduler, stepped every optimizer step (LightningCLI: ``lr_scheduler:``).
    """

    def __init__(
        self,
        policy: str | None = None,
        tiny: TinyModelConfig | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        gradient_checkpointing: bool = False,
        credit: CreditConfig | CreditAssigner | None = None,
        head: HeadConfig | None = None,
        lora: LoraConfig | None = None,
        loss: LossConfig | None = None,
        sampling: SamplingConfig | None = None,
        generation_batch_size: int = 0,
        score_batch_size: int = 64,
        score_shared_prefixes: bool = True,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if policy is not None:
            check_policy_name(policy)
        self.policy_name, self.dtype_name, self.attn_implementation = policy, dtype, attn_implementation
        self.gradient_checkpointing = gradient_checkpointing
        self.tiny_config = _coerce(TinyModelConfig, tiny)
        self.credit = credit if isinstance(credit, CreditAssigner) else CreditAssigner(_coerce(CreditConfig, credit))
        self.credit_config = self.credit.config
        self.head_config = _coerce(HeadConfig, head)
        self.lora_config = None if lora is None else _coerce(LoraConfig, lora)
        if self.lora_config is not None and policy is None:
            raise ValueError(
                "model.lora needs a pretrained model.policy (a Hugging Face id or folder): a LoRA checkpoint keeps the "
                "adapters only and reloads the base from there, and the tiny model is random at start "
                "(export one with MaroModule.save_pretrained and name its folder)"
            )
        self.loss_config = _coerce(LossConfig, loss)
        self.sampling = _coerce(SamplingConfig, sampling)
        if self.sampling.backend == "vllm" and generation_batch_size:
            raise ValueError(
                f"generation_batch_size={generation_batch_size} applies to sampling.backend=hf only: vLLM schedules "
                "its own batches (bounded by sampling.vllm_kv_cache_gib); leave it at 0"
            )
        self.generation_batch_size, self.score_batch_size = generation_batch_size, score_batch_size
        self.score_shared_prefixes = score_shared_prefixes
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        for name, config in [("tiny", self.tiny_config), ("credit", self.credit_config), ("head", self.head_config)]:
            self.hparams[name] = asdict(config)  # plain values: checkpoints load with weights_only=True
        self.hparams["loss"], self.hparams["sampling"] = asdict(self.loss_config), asdict(self.sampling)
        self.hparams["lora"] = None if self.lora_config is None else asdict(self.lora_config)
        self.policy: torch.nn.Module | None = None
        self.utility_head: UtilityHead | None = None
        self.tokenizer = None
        keeps_reference = self.loss_config.beta > 0 and self.lora_config is None  # LoRA: the base is the reference
        self.snapshot_names: set[str] = {REFERENCE} if keeps_reference else set()
        self.snapshots: dict[str, torch.nn.Module | AdapterSnapshot] = {}  # frozen, outside state_dict and optimizer
        self._pending_snapshots: dict[str, dict[str, Tensor]] = {}
        self.skipped_steps = 0  # optimizer steps dropped for a non-finite loss or gradient (state)
        self._recent_skips: deque[bool] = deque(maxlen=self.loss_config.skip_window)  # (state)
        self._skip_step = False  # the current optimizer step is to be dropped
        self.ladder_metric: OutcomeMetric | None = None
        self.vllm_engines: dict[str, VLLMEngine] = {}  # sampling.backend=vllm: "policy" and "frozen", made on first use

    # ------------------------------------------------------------------------------------------ the model
    def configure_model(self) -> None:
        """Build the policy, its tokenizer, the head and the frozen snapshots; once (Lightning calls this
        from every fit/validate/test, and inside the strategy's init context for sharded strategies). Under a
        ``ModelParallelStrategy``, then shard with FSDP2 (:func:`maro_lightning.fsdp.shard`); the snapshots stay
        full, unsharded copies (docs/design.md#fsdp)."""
        if self.policy is not None:
            return
        if self.policy_name is None:
            self.policy, self.tokenizer = build_tiny_model(self.tiny_config, self.attn_implementation or "eager")
        else:
            self.policy, self.tokenizer = load_policy(self.policy_name, self.dtype_name, self.attn_implementation)
        if self.gradient_checkpointing:
            enable_activation_checkpointing(self.policy)
        if self.lora_config is not None:
            self.policy = lora.wrap(self.policy, self.lora_config)
        hidden = self.policy.config.hidden_size
        self.utility_head = UtilityHead(hidden, **asdict(self.head_config))
        for name in sorted(self.snapshot_names):
            self.add_snapshot(name)
        mesh = fsdp.data_parallel_mesh(self._trainer)
        if mesh is not None and self.lora_config is not None:
            raise ConfigError(
                "model.lora under FSDP (ModelParallelStrategy) is not supported: the frozen seats play adapter "
                "snapshots through the policy, whose calls are not matched over the ranks; use one of the two"
            )
        if mesh is not None:
            fsdp.shard(self, self.policy, mesh)

    def add_snapshot(self, name: str) -> torch.nn.Module | AdapterSnapshot:
        """A frozen copy of the policy under ``name`` (made once; refreshed by :meth:`refresh_snapshot`)."""
        self.snapshot_names.add(name)
        if name not in self.snapshots and self.policy is not None:
            snapshot = self._frozen_copy()
            if name in self._pending_snapshots:  # restored from a checkpoint before the copy existed
                snapshot.load_state_dict(self._pending_snapshots.pop(name))
            self.snapshots[name] = snapshot
        return self.snapshots.get(name)

    def refresh_snapshot(self, name: str) -> None:
        """Copy the policy's current weights into the snapshot ``name``."""
        self.add_snapshot(name).load_state_dict(self.policy_weights())

    def policy_weights(self) -> dict[str, Tensor]:
        """What a frozen copy of the policy holds: its state dict, or under LoRA its adapter's weights only; whole
        when FSDP shards the policy (gathered: every rank calls it at the same point)."""
        if self.lora_config is not None:
            return {name: p.detach() for name, p in lora.adapter_parameters(self.policy).items()}
        return fsdp.full_tensors(self.policy.state_dict())

    def _frozen_copy(self) -> torch.nn.Module | AdapterSnapshot:
        """A frozen copy of the policy as it is now: a deep copy, or under LoRA a copy of the adapters alone."""
        if self.lora_config is not None:
            return AdapterSnapshot(self.policy_weights())
        return fsdp.plain_copy(self.policy).requires_grad_(False).eval()

    def policy_from_checkpoint(self, path: str | Path) -> torch.nn.Module | AdapterSnapshot:
        """A frozen copy of the policy holding the weights of ``path``, a checkpoint of the same model (e.g. this
        run's ``warm_start.ckpt``), on the policy's device; :meth:`policy_backend` plays it (``model=``)."""
        checkpoint = torch.load(path, map_location=self.device, weights_only=True)
        prefix = "policy."
        weights = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        policy = self._frozen_copy()
        policy.load_state_dict(weights)
        return policy

    def reference_policy(self) -> AbstractContextManager[torch.nn.Module]:
        """The frozen KL reference for a block of forwards: the reference snapshot, or under LoRA the policy itself
        with its adapters disabled (the base model: no second copy)."""
        if self.lora_config is not None:
            return lora.adapters_disabled(self.policy)
        return contextlib.nullcontext(self.snapshot(REFERENCE))

    def snapshot(self, name: str) -> torch.nn.Module | AdapterSnapshot | None:
        """The snapshot ``name`` on the policy's device, or None."""
        snapshot = self.snapshots.get(name)
        return None if snapshot is None else snapshot.to(self.device)

    @property
    def temperature(self) -> float:
        """The sampling temperature the log-probs are computed at (1 for greedy decoding)."""
        return self.sampling.temperature or 1.0

    # --------------------------------------------------------------------------------------- the rollout
    def policy_backend(
        self, name: str | None = None, model: torch.nn.Module | AdapterSnapshot | None = None
    ) -> GenerationBackend:
        """Batched generation with the policy, the snapshot ``name``, or another copy ``model`` of it, by
        ``sampling.backend``. On vLLM the policy plays on the policy engine and every other model (the league's
        members, a warm start under evaluation) on a second, frozen engine (docs/design.md#rollout-backends); on HF
        an adapter snapshot plays through the policy, its adapter swapped in."""
        if model is None:
            model = self.policy if name is None else self.snapshot(name)
        if self.sampling.backend == "vllm":
            return VLLMGenerate(self.vllm_engine(POLICY if model is self.policy else FROZEN), model)
        if isinstance(model, AdapterSnapshot):
            return SnapshotBackend(model, self.policy_backend())
        return HFGenerate(model, self.tokenizer, batch_size=self.generation_batch_size)

    def vllm_engine(self, slot: str) -> VLLMEngine:
        """The in-process vLLM engine ``slot`` (``"policy"`` or ``"frozen"``), started on first use from the
        exported policy; it loads :meth:`rollout_weights` before generating with a model whose weights changed."""
        if slot not in self.vllm_engines:
            if distributed.world_size() > 1:
                raise RuntimeError(
                    "sampling.backend=vllm runs one in-process engine in a single process; data parallelism "
                    f"({distributed.world_size()} ranks) is not supported with it yet: use sampling.backend=hf"
                )
            dtype = str(next(self.policy.parameters()).dtype).removeprefix("torch.")
            with tempfile.TemporaryDirectory() as folder:
                self.save_pretrained(folder)
                self.vllm_engines[slot] = VLLMEngine(
                    folder,
                    self.sampling,
                    self.tokenizer.eos_token_id,
                    dtype,
                    self.policy.config.max_position_embeddings,
                    weights=self.rollout_weights,
                )
        return self.vllm_engines[slot]

    def rollout_weights(self, model: torch.nn.Module | AdapterSnapshot) -> Iterator[tuple[str, Tensor]]:
        """Hook: ``model``'s weights as a vLLM engine loads them, named as in :meth:`save_pretrained`'s checkpoint,
        one at a time (the engine copies each in as it comes).

        Default: its state dict; under LoRA the merged weights (``lora.merged_weights``), of the policy or of a
        snapshot swapped into it while the engine reads them."""
        if self.lora_config is None:
            yield from model.state_dict().items()
        elif isinstance(model, AdapterSnapshot):
            with model.swapped_into(self.policy):
                yield from lora.merged_weights(self.policy)
        else:
            yield from lora.merged_weights(self.policy)

    def score(self, games: list[PlayedGame], forward: bool = True) -> ScoredRound:
        """The no-grad scoring forward of a played round (old and reference log-probs, V and Q); without
        ``forward``, only the token ids (behaviour cloning needs nothing else). Sharded, the forwards gather
        layer by layer and every rank runs as many (collective)."""
        with fsdp.full_parameters(self, layers=False):
            return score_round(
                self.policy,
                self.utility_head,
                games,
                reference=self.reference_policy() if self.loss_config.beta > 0 and forward else None,
                temperature=self.temperature,
                batch_size=self.score_batch_size,
                pad_id=self.pad_id,
                forward=forward,
                lockstep=fsdp.lockstep(self.policy),
                share_prefixes=self._scores_shared_prefixes(),
            )

    def _scores_shared_prefixes(self) -> bool:
        """``score_shared_prefixes`` where it applies: an attention that takes a 4D mask, a head reading positions."""
        attention = getattr(self.policy.config, "_attn_implementation", None)
        return self.score_shared_prefixes and attention in ("eager", "sdpa") and self.head_config.inputs == "last"

    def credit_round(self, scored: ScoredRound, assigner: CreditAssigner | None = None) -> list[BehaviourSample]:
        """Credit a scored round over all ranks' episodes: with the module's assigner through this module's hooks,
        or with ``assigner`` and its own hooks (the warm start's imitation credit)."""
        gather = distributed.all_gather_object if distributed.world_size() > 1 else None
        if assigner is not None:
            return credit_round(assigner, scored, gather, distributed.rank())
        return credit_round(self.credit, scored, gather, distributed.rank(), hooks=self)

    # ------------------------------------------------------------------------- credit hooks (docs/design.md#extending)
    def behaviour_rewards(self, episode: Episode, player: int) -> Tensor:
        """Hook: the immediate rewards ρ_t of ``player``'s T behaviours in ``episode``, ``[T]`` float64.

        Default: the assigner's (the outcome z_i on the last behaviour, 0 before). Override for a new reward
        scheme; every advantage mode then uses it (M1 through the TD errors, the baselines through R_i).
        """
        return self.credit.behaviour_rewards(episode, player)

    def compute_rewards(self, batch: CreditBatch) -> Tensor:
        """Hook: the M1 reward r_t of each behaviour of the round, ``[N]`` float64 in flattening order.

        Default: the assigner's (GAE over the turn-level TD errors, or their undivided sum with
        ``decompose=False``)."""
        return self.credit.compute_rewards(batch)

    def compute_advantages(self, batch: CreditBatch, rewards: Tensor) -> Tensor:
        """Hook: the advantages ``[N]`` float64, given the ``[N]`` rewards of :meth:`compute_rewards`.

        Default: the assigner's (the configured ``mode``, standardised per (game, role) where it applies).
        ``batch.baselines`` holds the (game, role) EMA baselines, read before this round updates them."""
        return self.credit.compute_advantages(batch, rewards)

    def compute_weights(self, batch: CreditBatch) -> Tensor:
        """Hook: the M2 weights ``[N]`` float64. Default: the assigner's (the configured ``weighting`` over the
        rolling window, which already counts this round; mean 1 within ``weight_clip``)."""
        return self.credit.compute_weights(batch)

    def compute_targets(self, batch: CreditBatch) -> Tensor:
        """Hook: the utility head's regression targets ``[N]`` float64. Default: the assigner's
        (``utility_target``: the return-to-go, or the λ-return)."""
        return self.credit.compute_targets(batch)

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)

    # --------------------------------------------------------------------------------------- training
    def training_step(self, batch: TrajectoryBatch, batch_idx: int) -> Tensor | None:
        trunk, weight, bias = trunk_and_head(self.policy)
        outputs = trunk(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)  # no KV cache
        hidden = outputs.last_hidden_state  # [B, L, H]
        token_weights, normalizer = self.token_weights(batch)
        cfg = self.loss_config
        beta = cfg.beta if batch.ref_logprobs is not None else 0.0  # imitation rounds have no reference term
        pg_loss, stats = fused_pg_loss(
            hidden[batch.token_rows, batch.token_cols],  # [T, H]: only the response positions
            weight,
            batch.targets,
            batch.advantages,
            bias=bias,
            sample_weights=token_weights,
            old_logprobs=batch.old_logprobs,
            ref_logprobs=batch.ref_logprobs if beta > 0 else None,
            clip_low=cfg.clip_low,
            clip_high=cfg.clip_high,
            beta=beta,
            temperature=self.temperature,
            normalizer=normalizer,
            impl=cfg.impl,
            grad_weight_dtype=cfg.grad_weight_dtype,
        )
        values, q_values = self.utility_head.behaviour_values(hidden, batch.prompt_last, batch.response_last)
        step_weight = batch.step_totals.weight / self._micro_batches_per_step
        utility_loss = UtilityHead.loss(values, q_values, batch.utility_targets, batch.weights, step_weight)
        loss = pg_loss + cfg.utility_coef * utility_loss
        self._log_step(batch, {"loss": loss, "pg_loss": pg_loss, "utility_loss": utility_loss}, stats, values, q_values)
        if not self._finite("loss", {"pg_loss": pg_loss, "utility_loss": utility_loss}):
            self._skip_step = True  # the whole optimizer step is dropped, with every micro-batch's gradient
            return None
        return loss

    def token_weights(self, batch: TrajectoryBatch) -> tuple[Tensor, float]:
        """Hook: the per-token weights ``[T]`` and the normaliser of the loss's sum (``aggregation``).

        The normaliser is this micro-batch's share of the whole optimizer step's tokens (or behaviours): after
        Lightning divides by the accumulation steps and DDP averages over ranks, the gradient is that of one
        token-mean (or sequence-mean) over the step's batch, however it was split.
        """
        tokens, behaviours = batch.step_totals.tokens, batch.step_totals.behaviours
        if self.loss_config.aggregation == "token_mean":
            return batch.token_weights, tokens / self._micro_batches_per_step
        lengths = batch.response_lengths[batch.token_rows].to(batch.token_weights.dtype)  # [T]
        return batch.token_weights / lengths, behaviours / self._micro_batches_per_step

    @property
    def _micro_batches_per_step(self) -> int:
        """Micro-batches whose gradients one optimizer step combines: accumulation × data-parallel ranks."""
        return self.trainer.accumulate_grad_batches * self.trainer.world_size

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norm = fsdp.global_norm(grads) if grads else torch.zeros((), device=self.device)  # whole over FSDP shards
        skip = self._skip_step or not self._finite("gradient", {"grad_norm": norm})  # _skip_step: same on all ranks
        self._skip_step = False
        if skip:
            optimizer.zero_grad(set_to_none=True)  # AdamW skips parameters without a gradient
            norm = torch.full((), float("nan"), device=self.device)  # no update: no norm (never the last one's)
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        self._count_skip(skip)

    def _count_skip(self, skipped: bool) -> None:
        """Log ``train/skipped_steps``; stop the run when too many recent steps were skipped."""
        self.skipped_steps += int(skipped)
        self._recent_skips.append(skipped)
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
        cfg, recent = self.loss_config, sum(self._recent_skips)
        if recent > cfg.max_skipped_fraction * cfg.skip_window:
            raise FloatingPointError(
                f"{recent} of the last {len(self._recent_skips)} optimizer steps were skipped for non-finite values "
                f"(global step {self.global_step}; more than loss.max_skipped_fraction={cfg.max_skipped_fraction} of "
                f"loss.skip_window={cfg.skip_window}): the run is not training; lower the learning rate"
            )

    def _finite(self, what: str, values: dict[str, Tensor]) -> bool:
        """Whether every value is finite on every rank; raise, or report a skip, per ``on_nonfinite``."""
        bad = [name for name, value in values.items() if not torch.isfinite(value).all()]
        ok = self.trainer.strategy.reduce_boolean_decision(not bad, all=True)
        if ok:
            return True
        where = f"non-finite {what} at global step {self.global_step} (batch {self.trainer.fit_loop.total_batch_idx})"
        detail = f"{', '.join(bad) or 'on another rank'}: " + ", ".join(
            f"{k}={v.item():.4g}" for k, v in values.items()
        )
        if self.loss_config.on_nonfinite == "raise":
            raise FloatingPointError(
                f"{where}: {detail}. Weights are unchanged by this step; lower the lr or "
                "set loss.on_nonfinite=skip to drop such updates."
            )
        self.print(f"skipping the update: {where}: {detail}")
        return False

    def _log_step(
        self,
        batch: TrajectoryBatch,
        losses: dict[str, Tensor],
        stats: dict[str, Tensor],
        values: Tensor,
        q_values: Tensor,
    ) -> None:
        """Losses, PPO statistics (clip fraction, KL, entropy) and the utility head's explained variance."""
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch.size)
        metrics = {
            "train/pg_loss": losses["pg_loss"],
            "train/utility_loss": losses["utility_loss"],
            "train/clip_fraction": stats["clip_fraction"],
            "train/kl": stats["kl_mean"],
            "train/entropy": stats["entropy"].mean(),
            "train/logprob": stats["logprobs"].mean(),  # of the batch's tokens; −NLL in imitation rounds
            "train/advantage_mean": batch.advantages.mean(),
            "train/response_tokens": float(batch.targets.numel()),
        }
        explained = explained_variance(values, q_values, batch.utility_targets)
        if explained is not None:  # undefined when every outcome is the same
            metrics["train/utility_explained_variance"] = explained
        self.log_dict(
            {k: v.detach() if isinstance(v, Tensor) else v for k, v in metrics.items()}, batch_size=batch.size
        )

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        count_optimizer_steps(optimizer, self.policy)  # a vLLM engine reloads the policy after a step
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------------------------- evaluation
    def validation_step(self, match: LadderMatch, batch_idx: int) -> None:
        self._play_ladder_match(match, "val")

    def test_step(self, match: LadderMatch, batch_idx: int) -> None:
        self._play_ladder_match(match, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_ladder("val")

    def on_test_epoch_end(self) -> None:
        self._log_ladder("test")

    def _play_ladder_match(self, match: LadderMatch, stage: str) -> None:
        """Play one ladder match on its fixed seeds (sampling seeded too: same weights, same games)."""
        if self.ladder_metric is None:
            keys = ladder_keys(self.trainer.datamodule.evaluation)
            self.ladder_metric = OutcomeMetric(keys).to(self.device)
        with seeded(match.seed, self.device), fsdp.full_parameters(self):
            games = play_match(match, self.policy_backend(), self.tokenizer, self.sampling)
        keys, rewards, success = match_outcomes(match, games)
        self.ladder_metric.update(keys, rewards, success)
        self.log(f"{stage}/invalid_rate/{match.game}/{match.opponent}", invalid_rate(games), batch_size=len(games))

    def _log_ladder(self, stage: str) -> None:
        if self.ladder_metric is None:
            return
        results = self.ladder_metric.compute()  # synced over ranks
        self.log_dict({f"{stage}/{k}": v.float() for k, v in results.items()}, rank_zero_only=True)
        self.ladder_metric.reset()

    def teardown(self, stage: str) -> None:
        self.vllm_engines.clear()  # their memory is freed (the next stage starts them again)

    # ------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {"credit": self.credit.state_dict()}
        state["skips"] = {"total": self.skipped_steps, "recent": list(self._recent_skips)}
        state["snapshots"] = {name: snap.state_dict() for name, snap in self.snapshots.items()}
        if self.policy_name is None:
            state["tokenizer"] = tokenizer_to_json(self.tokenizer)
        checkpoint["maro"] = state
        if self.lora_config is not None:  # the adapters; the base is reloaded from `policy`
            base = self._base_state()
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in base}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.lora_config is not None:  # the base as loaded from `policy`, under the checkpoint's adapters
            checkpoint["state_dict"] = self._base_state() | checkpoint["state_dict"]
        state = checkpoint.get("maro", {})
        if "credit" in state:
            self.credit.load_state_dict(state["credit"])
        if "skips" in state:
            self.skipped_steps = state["skips"]["total"]
            self._recent_skips.clear()
            self._recent_skips.extend(state["skips"]["recent"])
        if "tokenizer" in state:
            self.tokenizer = tokenizer_from_json(state["tokenizer"])
        for name, weights in state.get("snapshots", {}).items():
            if name in self.snapshots:
                self.snapshots[name].load_state_dict(weights)
            else:
                self._pending_snapshots[name] = weights  # made later (add_snapshot) by whoever needs it

    def _base_state(self) -> dict[str, Tensor]:
        """Under LoRA: the frozen base model's entries of this module's state dict (a checkpoint leaves them out)."""
        return {f"policy.{name}": tensor for name, tensor in lora.base_state(self.policy).items()}

    def save_pretrained(self, directory: str) -> None:
        """Export the policy and its tokenizer as a Hugging Face folder (``load_policy(directory)`` reads it); under
        LoRA, a copy with the adapters merged into the base weights (training can go on)."""
        policy = self.policy if self.lora_config is None else lora.merged_copy(self.policy)
        policy.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def _coerce(cls: type, value: Any) -> Any:
    """``value`` as an instance of the config dataclass ``cls``: None gives the defaults, a dict (from a
    checkpoint's hyperparameters) its fields."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
    return value
