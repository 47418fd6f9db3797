"""LoRA adapters through ``peft`` (docs/design.md#lora): only the adapters train, and every frozen copy of the policy
is a copy of its adapters, never of the base model.

- The KL reference is the base model: the policy with its adapters disabled (:func:`adapters_disabled`).
- A frozen snapshot (the league's opponent, the warm start in the final evaluation) is an :class:`AdapterSnapshot`,
  the adapter weights alone; it plays through the policy itself, whose adapter weights it swaps in for the length of
  one ``generate`` call (:class:`SnapshotBackend`) and restores after, bit for bit.
- A vLLM engine serves the merged weights (:func:`merged_weights`, base + (alpha / r) · B A per adapted layer, named
  as in the exported folder): the policy's after each optimizer step, a snapshot's through the policy it is swapped
  into. vLLM's own LoRA serving (punica kernels) would push only the adapters; merging keeps one code path for
  every engine, at the price of a full weight reload per push.
- A checkpoint holds the adapters (and the utility head); the base is reloaded from the module's ``policy`` id or
  folder (:func:`base_state` is what is left out).

``peft`` is an optional dependency (``pip install 'maro-lightning[lora]'``): it is imported only where an adapter is
built, and a LoRA config without it fails at start-up (when LightningCLI builds the config), in one line.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from maro_lightning.rollout.vllm_engine import mark_weights_changed

if TYPE_CHECKING:
    import peft
    from peft import PeftModel
    from transformers import PreTrainedModel

    from maro_lightning.rollout import HFGenerate
    from maro_lightning.rollout import SamplingConfig

INSTALL_HINT = "pip install 'maro-lightning[lora]'"


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters on the policy's layers (Hu et al. 2021, arXiv 2106.09685), through peft.

    Each adapted layer computes ``W x + (alpha / r) · B A x``: A and B train, W stays frozen. Needs ``peft``
    (``pip install 'maro-lightning[lora]'``) and a pretrained ``policy``.
    """

    r: int = 16
    """Rank of each adapter. Policy-gradient RL matched full fine-tuning even at rank 1 in "LoRA Without Regret"
    (Schulman et al., Thinking Machines 2025); 16 leaves room for a warm start's behaviour cloning."""
    alpha: float | None = None
    """Scale numerator: the update is multiplied by ``alpha / r``. None: ``2 · r``, the rule of thumb of Raschka's
    LoRA experiments ("Practical Tips for Finetuning LLMs Using LoRA", 2023)."""
    dropout: float = 0.0
    """Dropout on each adapter's input while training. 0 by default: the PPO ratio compares the training forward
    with the rollout's scoring forward (no dropout), so any dropout makes ratios differ from 1 on the first pass."""
    target_modules: str | tuple[str, ...] = "all-linear"
    """The layers that get an adapter: module names (suffixes, e.g. ``[q_proj, v_proj]``), a regex, or
    ``all-linear`` (every linear layer but the output head). All linear layers, the MLP's too, were needed to match
    full fine-tuning in QLoRA (Dettmers et al. 2023, arXiv 2305.14314) and in "LoRA Without Regret"."""

    def __post_init__(self) -> None:
        if self.r < 1 or (self.alpha is not None and self.alpha <= 0) or not 0 <= self.dropout < 1:
            raise ValueError(f"bad lora config {self}: need r >= 1, alpha > 0 (or None: 2·r), 0 <= dropout < 1")
        if not self.target_modules:
            raise ValueError("lora.target_modules is empty: name the layers to adapt, or use all-linear")
        require_peft()

    def peft_config(self) -> peft.LoraConfig:
        """The equivalent ``peft.LoraConfig`` for a causal LM."""
        import peft

        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        alpha = 2 * self.r if self.alpha is None else self.alpha
        return peft.LoraConfig(
            r=self.r, lora_alpha=alpha, lora_dropout=self.dropout, target_modules=targets, task_type="CAUSAL_LM"
        )


def require_peft() -> None:
    """Raise the one-line install hint when ``peft`` is missing."""
    if importlib.util.find_spec("peft") is None:
        raise ValueError(f"model.lora needs the peft package, which is not installed: {INSTALL_HINT}")


def wrap(model: PreTrainedModel, config: LoraConfig) -> PeftModel:
    """``model`` with adapters on ``config.target_modules``; peft freezes every base weight."""
    import peft

    try:
        return peft.get_peft_model(model, config.peft_config())
    except ValueError as err:  # e.g. target modules that match no layer of this model
        raise ValueError(f"model.lora.target_modules={config.target_modules!r}: {err}") from None


def adapter_parameters(policy: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The adapter's parameters by state-dict name: the policy's trainable ones (peft froze the rest)."""
    return {name: p for name, p in policy.named_parameters() if p.requires_grad}


def base_state(policy: torch.nn.Module) -> dict[str, Tensor]:
    """The policy's state-dict entries that belong to the frozen base model (all but the adapter's)."""
    adapter = adapter_parameters(policy)
    return {name: tensor for name, tensor in policy.state_dict().items() if name not in adapter}


@contextmanager
def adapters_disabled(policy: PeftModel) -> Iterator[torch.nn.Module]:
    """The policy as its base model for the block (the KL reference): adapters off, and back on after."""
    with policy.disable_adapter():
        yield policy


def merged_copy(policy: PeftModel) -> PreTrainedModel:
    """A plain ``transformers`` model with the adapters merged into a copy of the base weights (the policy, adapters
    and all, is left as it was, so training can go on)."""
    return copy.deepcopy(policy).merge_and_unload()


def merged_weights(policy: PeftModel) -> Iterator[tuple[str, Tensor]]:
    """The policy's weights with its adapters merged, one (name, tensor) at a time, named as in the folder
    :func:`merged_copy`'s model writes (``...q_proj.weight``, not ``...q_proj.base_layer.weight``): only an adapted
    layer's weight is a new tensor, every other entry is the base's own, and the adapters' own entries are left out.
    The policy is left as it is."""
    from peft.tuners.lora import LoraLayer

    model = policy.get_base_model()
    layers = {f"{name}.base_layer.weight": m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if ".lora_" in name:
                continue
            if name in layers:
                layer = layers[name]
                tensor = tensor + layer.get_delta_weight(layer.active_adapters[0]).to(tensor.dtype)
            yield name.replace(".base_layer.", "."), tensor


class AdapterSnapshot:
    """A frozen copy of the policy's adapter weights (what a LoRA snapshot holds: the base is shared and frozen).

    It has the part of a module's interface that snapshots use (``state_dict``, ``load_state_dict``, ``to``); it
    generates through the policy with :class:`SnapshotBackend`.
    """

    def __init__(self, weights: Mapping[str, Tensor]) -> None:
        self.weights = {name: tensor.detach().clone() for name, tensor in weights.items()}

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.weights)

    def load_state_dict(self, weights: Mapping[str, Tensor]) -> None:
        """Copy ``weights`` (the same adapter entries) in place, keeping this snapshot's device (a vLLM engine that
        served the snapshot reloads it)."""
        _copy_into(self.weights, weights)
        mark_weights_changed(self)

    def to(self, device: torch.device | str) -> AdapterSnapshot:
        self.weights = {name: tensor.to(device) for name, tensor in self.weights.items()}
        return self

    @contextmanager
    def swapped_into(self, policy: torch.nn.Module) -> Iterator[None]:
        """The policy holds this snapshot's adapter weights for the block, and its own again after (exactly)."""
        params = adapter_parameters(policy)
        own = {name: p.detach().clone() for name, p in params.items()}
        _copy_into(params, self.weights)
        try:
            yield
        finally:
            _copy_into(params, own)


def _copy_into(targets: Mapping[str, Tensor], sources: Mapping[str, Tensor]) -> None:
    """Copy every source tensor into the target of the same name, in place; the names must be the same."""
    if targets.keys() != sources.keys():
        missing, extra = sorted(targets.keys() - sources.keys()), sorted(sources.keys() - targets.keys())
        raise ValueError(f"adapter weights do not match: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, target in targets.items():
            target.copy_(sources[name])


class SnapshotBackend:
    """Generation by an :class:`AdapterSnapshot`: ``backend`` (over the policy) with the snapshot's adapter in it."""

    def __init__(self, snapshot: AdapterSnapshot, backend: HFGenerate) -> None:
        self.snapshot, self.backend = snapshot, backend

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[list[int]]:
        with self.snapshot.swapped_into(self.backend.model):
            return self.backend.generate(prompts, sampling)
