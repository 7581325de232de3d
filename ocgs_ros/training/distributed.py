"""Which process this is in a torchrun job, and the collectives a training loop needs (no ROS).

:class:`DistributedContext` reads rank / world size from torchrun's environment and joins torch's
own process group (gloo on CPU, NCCL on CUDA) when more than one process runs; with one process
every collective below is the identity, so the training loop has a single code path.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DistributedContext:
    """Rank, world size and device of this process (a single process when WORLD_SIZE is unset)."""

    def __init__(self, device_choice: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_choice not in DEVICE_CHOICES:
            raise ValueError(f"--device must be auto, cpu or cuda (got {device_choice!r})")
        use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but CUDA is not available")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.distributed = self.world_size > 1
        if self.distributed:
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order; ``[value]`` with one process."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def mean_over_ranks(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every float entry replaced by its mean over the ranks (others as given)."""
        if not self.distributed:
            return values
        names = sorted(k for k, v in values.items() if isinstance(v, float))
        tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        tensor /= self.world_size
        return {**values, **dict(zip(names, tensor.tolist()))}

    def broadcast_from_main(self, tensor: torch.Tensor) -> None:
        """Overwrite ``tensor`` in place with rank 0's values."""
        if self.distributed:
            dist.broadcast(tensor, src=0)

    def finish(self) -> None:
        """End a run that completed on this rank: wait for every rank, then leave the group.

        Rank 0 still writes the checkpoint, the plot and the evaluation after the last
        collective while the other ranks have nothing left to do. Without this barrier they tear
        down their gloo connections and exit while rank 0 works, so the ranks leave at different
        times; with it, every rank destroys the group together, as torch's shutdown notes ask.
        Call it only on the success path: after a failure the peers may be blocked in another
        collective and a barrier would wait for them until the group's timeout.
        """
        if self.distributed and dist.is_initialized():
            dist.barrier()
        self.close()

    def close(self) -> None:
        """Leave the process group (idempotent; safe on the failure path)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


class DataParallelStep:
    """Routes a training step's forward through DDP (gradient all-reduce) while every other
    attribute (config, codebook, parameters, ...) comes from the wrapped model itself."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel):
        self._ddp = ddp
        self._module = ddp.module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def data_parallel(model: nn.Module, ctx: DistributedContext, **ddp_options: Any) -> Any:
    """``model`` itself with one process; under torchrun a :class:`DataParallelStep` over DDP."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DataParallelStep(nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_options))
