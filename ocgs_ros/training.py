"""Training plumbing shared by the offline training commands (GOCL, BEV); no ROS, no model code.

* :class:`DistributedContext` — rank / world size / device from torchrun's environment; joins
  torch's own process group (gloo on CPU, NCCL on CUDA) when more than one process runs.
* global RNG seeding, capture and restore (plain tensors, so checkpoints stay ``weights_only``)
  — what makes a resumed run bit-identical to an uninterrupted one;
* ``--set key=value`` parsing and the JSON-lines metrics log.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class DistributedContext:
    """Rank, world size and device of this process (a single process when WORLD_SIZE is unset)."""

    def __init__(self, device_choice: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_choice not in ("auto", "cpu", "cuda"):
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


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """All global RNG states as plain values/tensors (loadable with ``weights_only=True``)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr_encoder=1e-4", "encoder_channels=32,32"]`` -> dict (typed later by GoclConfig.from_dict)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip()
        if "," in value:
            overrides[key] = [v for v in value.split(",") if v]
        elif value.lower() in ("true", "false"):
            overrides[key] = value.lower() == "true"
        else:
            overrides[key] = value
    return overrides


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines after ``last_step`` (written after the checkpoint we resume from)."""
    rows = [row for row in read_metrics(path) if row["step"] <= last_step]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
