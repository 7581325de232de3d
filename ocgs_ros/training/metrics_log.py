"""The JSON-lines metrics log of a training run: one object per logged step."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become null (recursively)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(json_safe(row)) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop log lines after ``last_step`` (written after the checkpoint we resume from)."""
    rows = [row for row in read_metrics(path) if row["step"] <= last_step]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
