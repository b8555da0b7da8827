"""FSDP2 for `--sharding fsdp`: weights, gradients and optimizer state split across the torchrun processes.

Each decoder layer is its own FSDP unit (its weights are all-gathered just before it runs and freed
after), then the root — the `SequenceLogps`/`SequenceScores` wrapper the trainer calls — takes the
rest (embeddings, final norm, LM head). Sharding the wrapper rather than the Hugging Face model
matters: the wrapper calls the decoder and the head directly, so only its forward is sure to run
FSDP's hooks. A model therefore needs only about 1/N of its weight, gradient and AdamW memory per GPU,
plus one layer's full weights at a time.

Gradients are summed across processes, not averaged (the trainer divides each loss by the step's
global example count already), so N sharded processes equal one process, as DDP does.
"""

from __future__ import annotations

import torch
from torch import nn


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: instances of the model's `_no_split_modules` classes
    (what Hugging Face keeps whole on one device), else the children of its longest ModuleList."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the model
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if layers:
        return layers
    lists = [m for m in base.modules() if isinstance(m, nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


def shard(root: nn.Module, model: nn.Module, device: torch.device, bf16: bool = False, frozen: bool = False) -> int:
    """`fully_shard` every decoder layer of `model`, then `root` (which contains `model`), over all
    processes. Weights move to `device` shard by shard, so the full model never sits on one GPU.
    `bf16`: all-gather and compute in bf16, reduce gradients in fp32 (the sharded weights and optimizer
    state keep their dtype). `frozen` (a reference model, never backpropagated): the root's weights are
    freed after each forward too, rather than kept for a backward that never comes. Returns how many
    layers became their own unit."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    )
    layers = decoder_layers(model)
    for layer in reversed(layers):  # inner before outer, should one listed class nest in another
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(root, mesh=mesh, mp_policy=mp, reshard_after_forward=True if frozen else None)
    for m in root.modules():
        if isinstance(m, FSDPModule):
            # a plain SUM (each process's loss is already over the global count); forcing SUM-only
            # collectives avoids NCCL's PREMUL_SUM, which gloo lacks
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return len(layers)


def reshard(root: nn.Module) -> None:
    """Free the root's gathered weights. FSDP keeps them gathered after a forward (its backward needs
    them); after a forward without gradients they would stay so, and the module would hand out the
    gathered copies, not the shards, as `.parameters()` — to an optimizer built next, for one."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(root, FSDPModule):
        root.reshard()


def full_state_dict(model: nn.Module) -> dict:
    """The whole model's weights on rank 0, on CPU (other ranks get {}). Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_training_state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model, optimizer) state, gathered whole on rank 0 and on CPU (other ranks get {}), keyed by
    parameter name, so a checkpoint resumes on any number of processes. Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_training_state(model: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, optim_sd: dict) -> None:
    """The inverse of `full_training_state`: every rank passes the whole state and keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    set_state_dict(
        model, opt, model_state_dict=model_sd, optim_state_dict=optim_sd, options=StateDictOptions(full_state_dict=True)
    )


def grad_norm_value(norm: torch.Tensor) -> float:
    """`clip_grad_norm_` returns a DTensor for sharded gradients; its full value is the global norm."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
