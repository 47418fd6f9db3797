"""FSDP2 (``fully_shard``) for :class:`~maro_lightning.module.MaroModule` under Lightning's ``ModelParallelStrategy``
(docs/design.md#fsdp).

The plan: every decoder layer is one FSDP unit, and the LightningModule is the root unit, holding what is left (the
embeddings, the tied LM head, the final norm, the utility head). The module reads the trunk and the head's weight
directly (the fused loss takes the weight, not logits), so the root's parameters must be whole whenever the module
computes: ``training_step`` runs as an FSDP forward method (FSDP gathers the root before it and keeps it until the
backward), and the rollout and the ladder gather explicitly with :func:`full_parameters`.

Every function here that gathers is collective: every rank calls it, in the same order. Lightning is imported only
where a trainer is at hand: the rollout package, which asks :func:`is_sharded` of every model it generates with,
stays free of it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp import fully_shard
from torch.distributed.fsdp import register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from maro_lightning import distributed
from maro_lightning.errors import ConfigError

if TYPE_CHECKING:
    import lightning as L


def data_parallel_mesh(trainer: L.Trainer | None) -> DeviceMesh | None:
    """The mesh to shard over when ``trainer`` runs a ``ModelParallelStrategy``, else None.

    Raises:
        ConfigError: for tensor parallelism (``tensor_parallel_size`` > 1), which the module does not support.
    """
    from lightning.pytorch.strategies import ModelParallelStrategy

    if trainer is None or not isinstance(trainer.strategy, ModelParallelStrategy):
        return None
    mesh = trainer.strategy.device_mesh
    if mesh["tensor_parallel"].size() > 1:
        raise ConfigError(
            f"ModelParallelStrategy with tensor_parallel_size={mesh['tensor_parallel'].size()}: MaroModule shards "
            "with FSDP2 only; set tensor_parallel_size: 1 and data_parallel_size to the number of processes"
        )
    return mesh["data_parallel"]


def shard(module: L.LightningModule, policy: nn.Module, mesh: DeviceMesh) -> None:
    """Shard ``module`` over ``mesh``: each decoder layer of ``policy`` (the classes its ``_no_split_modules`` names)
    is a unit, then the module is the root; its ``training_step`` runs as an FSDP forward."""
    layers = decoder_layers(policy)
    if not layers:
        raise ConfigError(
            f"cannot shard {type(policy).__name__} with FSDP: it names no decoder layer class in _no_split_modules"
        )
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)
    register_fsdp_forward_method(module, "training_step")


def decoder_layers(policy: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Hugging Face model: the modules whose class its ``_no_split_modules`` names."""
    names = set(getattr(policy, "_no_split_modules", None) or ())
    return [m for m in policy.modules() if type(m).__name__ in names]


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP shards some of ``model``'s parameters."""
    return any(isinstance(m, FSDPModule) for m in model.modules())


def lockstep(model: nn.Module) -> bool:
    """Whether every rank must run ``model`` the same number of times: FSDP shards it over several processes, so its
    forwards gather parameters, and ``generate`` syncs every decoding step (transformers sets ``synced_gpus``)."""
    return is_sharded(model) and distributed.world_size() > 1


@contextmanager
def full_parameters(module: nn.Module, layers: bool = True) -> Iterator[None]:
    """Inside the block the root unit's parameters are whole (one all-gather); with ``layers``, every decoder
    layer's too, kept through forwards, so that generation gathers nothing more; without, each layer gathers in its
    own forward and frees after it. Resharded on exit, so blocks do not nest. A no-op when ``module`` is not
    sharded."""
    if not isinstance(module, FSDPModule):
        yield
        return
    # FSDP takes the first unit to run forward as the root; a decoder layer must not be first.
    module._get_fsdp_state()._lazy_init()
    units = [m for m in module.modules() if isinstance(m, FSDPModule) and m is not module] if layers else []
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
    for unit in [module, *units]:
        unit.unshard()
    try:
        yield
    finally:
        for unit in [module, *units]:
            unit.reshard()
        for unit in units:
            unit.set_reshard_after_forward(True, recurse=False)


def full_tensors(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` (a state dict) with every sharded one all-gathered into a whole one, on its device."""
    return {name: _whole(tensor) for name, tensor in tensors.items()}


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``, which FSDP must not have sharded (FSDP2 units cannot be copied).

    Raises:
        RuntimeError: for a sharded model, saying where copies are made under FSDP.
    """
    if is_sharded(model):
        raise RuntimeError(
            "cannot copy the policy after FSDP sharded it: frozen snapshots are full copies made in configure_model, "
            "before sharding; name them earlier (MaroModule.add_snapshot in a callback's setup)"
        )
    return copy.deepcopy(model)


def global_norm(grads: Iterable[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` together, whole over every rank's shards when they are sharded (the same value on
    every rank)."""
    return _whole(torch.nn.utils.get_total_norm(list(grads)))


def _whole(tensor: Tensor) -> Tensor:
    """A sharded tensor (a DTensor) gathered into a plain one; any other tensor as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
