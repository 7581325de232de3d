"""Memory of a node as the kernel reports it, counting the processes it started: since issue 16 the
mapping node runs its pipeline in a process of its own (ocgs_ros.mapping.process), where most of
its memory is."""
from __future__ import annotations

from pathlib import Path


def status_mb(pid: int, field: str) -> float | None:
    """``field`` of /proc/<pid>/status (``VmRSS``, ``VmHWM``) in MB, summed over ``pid`` and its
    descendants (for ``VmHWM``: each one's peak, an upper bound of their joint peak); None once
    ``pid`` is gone."""
    total_kb, found = 0, False
    for process in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total_kb += int(line.split()[1])
                    found = found or process == pid
        except OSError:  # ended meanwhile
            continue
    return round(total_kb / 1024.0, 1) if found else None


def descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in descendants(c)]
