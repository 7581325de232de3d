"""The harness settings every DDS benchmark starts with: DDS on this machine only (our harness, never
a user's launch), a domain of the run's own, one torch thread, and the repository importable."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def keep_dds_on_loopback() -> Path:
    """Set the loopback DDS environment (unless the caller set it) for this process and the nodes it
    starts; returns the repository root."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_localhost.xml"))
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return REPO
