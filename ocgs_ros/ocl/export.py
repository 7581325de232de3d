"""Export a training checkpoint as a shippable inference checkpoint.

    python -m ocgs_ros.ocl.export --checkpoint runs/gocl_cpu/checkpoint.pt \\
        --out ocgs_ros/models/gocl_tabletop.pt

Keeps weights, config and step; drops what only resuming needs (optimiser moments, RNG states,
the revival candidates), which is most of a training checkpoint's size. The training command line
and the source checkpoint are recorded in ``extra`` so the shipped file says how it was made.
The written file is loaded back and compared weight for weight before the command reports success.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint

#: ``extra`` entries of a training checkpoint that describe the run (everything else is resume state).
PROVENANCE_KEYS = ("command", "preset", "data", "seed", "batch", "world_size")
MAX_SHIPPED_MB = 25.0


def export_checkpoint(source: str | Path, target: str | Path, note: str = "") -> dict[str, Any]:
    """Write the inference-only copy of ``source`` to ``target`` (atomically); returns a summary."""
    model, config, meta = load_checkpoint(source)
    if not config.use_codebook:
        raise ValueError(f"{source} has no codebook (a --no-codebook baseline or a checkpoint from the "
                         "codebook warm-up); only GOCL models are shipped")
    extra = {key: meta["extra"][key] for key in PROVENANCE_KEYS if key in meta["extra"]}
    extra.update(source_checkpoint=str(source), note=note)
    path = save_checkpoint(target, model, step=meta["step"], extra=extra)
    reloaded, _, reloaded_meta = load_checkpoint(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        if not torch.equal(a, b):
            raise RuntimeError(f"export check failed: {name} differs after reloading {path}")
    size_mb = path.stat().st_size / 2 ** 20
    if size_mb > MAX_SHIPPED_MB:
        raise ValueError(f"{path} is {size_mb:.1f} MB, more than the {MAX_SHIPPED_MB:.0f} MB a shipped "
                         "checkpoint may take")
    return {"path": str(path), "step": reloaded_meta["step"], "size_mb": round(size_mb, 3),
            "parameters": sum(p.numel() for p in reloaded.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gocl_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (gocl_train output)")
    parser.add_argument("--out", required=True, help="inference checkpoint to write")
    parser.add_argument("--note", default="", help="free text stored with the file")
    args = parser.parse_args(argv)
    summary = export_checkpoint(args.checkpoint, args.out, args.note)
    print(f"gocl_export: {summary['path']} (step {summary['step']}, {summary['parameters']} parameters, "
          f"{summary['size_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
