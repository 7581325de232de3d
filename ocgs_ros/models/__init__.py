"""Checkpoints shipped inside the package (installed with it as package data).

Each file here is produced by a documented training command with a fixed seed (see README and
docs/results/); nothing is downloaded at run time. Nodes default to these paths.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
#: GOCL slot-attention model with the global codebook, trained on the simulated tabletop (issue 3).
GOCL_TABLETOP = MODELS_DIR / "gocl_tabletop.pt"
#: Camera+LiDAR BEV multi-task model trained with both levels of gradient calibration (issue 5).
BEV_DRIVING = MODELS_DIR / "bev_driving.pt"
#: The same model for the six-camera surround rig (``BevConfig.surround``; issue 14), once trained.
BEV_SURROUND = MODELS_DIR / "bev_surround.pt"


def shipped_checkpoint(name: str) -> Path:
    """Path of a shipped checkpoint by short name (``gocl``, ``bev`` or ``bev_surround``); raises if
    it is missing."""
    paths = {"gocl": GOCL_TABLETOP, "bev": BEV_DRIVING, "bev_surround": BEV_SURROUND}
    if name not in paths:
        raise ValueError(f"unknown shipped checkpoint {name!r}; choose from {sorted(paths)}")
    path = paths[name]
    if not path.is_file():
        raise FileNotFoundError(f"shipped {name} checkpoint {path} is missing: reinstall the package "
                                f"or train one with the command in docs/results/")
    return path
