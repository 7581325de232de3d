"""Training shared by the offline trainers (GOCL, BEV); no ROS, no model code.

* :mod:`.run` — :class:`RunConfig` (what every run has) and :func:`run_training`, the one training
  loop; a :class:`TrainingTask` supplies a model's own parts.
* :mod:`.options` / :mod:`.cli` — config fields with description and check, and the command line
  derived from them (argparse only at that edge); ``--set key=value`` model-config overrides.
* :mod:`.distributed` — :class:`DistributedContext` (torchrun rank, device, collectives).
* :mod:`.rng` — global RNG seeding, capture and restore (exact resume).
* :mod:`.metrics_log` — the JSON-lines metrics log.
"""
from .distributed import DistributedContext
from .metrics_log import read_metrics, truncate_metrics
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .run import (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, SNAPSHOT_DIR, RunConfig, RunSetupError, StartPoint,
                  TrainingTask, TrainResult, run_training)

__all__ = ["CHECKPOINT_NAME", "CONFIG_NAME", "METRICS_NAME", "SNAPSHOT_DIR", "DistributedContext", "RunConfig",
           "RunSetupError", "StartPoint", "TrainResult", "TrainingTask", "capture_rng_state", "read_metrics",
           "restore_rng_state", "run_training", "seed_everything", "truncate_metrics"]
