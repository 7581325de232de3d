"""The mapping pipeline in a process of its own, behind the pipeline's own methods.

Why: a ROS node's executor, its message conversions and, in the one-process bring-up, the simulator
run Python in the node's process; the mapper's Python (optimisation loop, object extraction in
numpy/scipy) then waits for the GIL behind them, so a frame took 250-350 ms in the bring-up against
150 ms in a node fed from another process (docs/mapping_speed.md). In its own process the pipeline
holds its own GIL and its own core.

:class:`PipelineProcess` starts ``ObjectMappingPipeline(config)`` in a ``spawn``-ed child (never
``fork``: the parent runs DDS threads) and forwards each call over a pipe: arguments and results
are pickled numpy arrays and dataclasses, about a millisecond for a 320x240 frame. Calls are
served one at a time in call order, as the pipeline's own locks would order them; ``locked()``
holds the map still across several calls of one thread. Exceptions raised in the child
(``FrameRejected`` included) are raised again in the caller. If the child dies, every later call
raises :class:`PipelineProcessError` naming its exit code: the caller counts a failed frame, it
does not die with it.

The child ignores SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent decides
when to close) and ends when its pipe closes, so it never outlives its parent.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from ocgs_ros.mapping.config import MappingConfig

#: how long the child may take to import torch and load the GOCL checkpoint (s)
START_TIMEOUT_S = 300.0

#: the pipeline methods a caller may use through the process (what the node and run reports call)
FORWARDED = ("process", "objects", "query_by_codebook", "query_by_point", "query_by_box", "snapshot", "render",
             "render_instances", "render_identity", "save", "load", "reset", "stats")


class PipelineProcessError(RuntimeError):
    """The pipeline's process is gone (crashed, killed, out of memory) or never answered."""


class PipelineProcess:
    """``ObjectMappingPipeline(config)`` in its own process, with the pipeline's methods
    (:data:`FORWARDED`), ``config``, ``num_entries``, ``has_identity``, ``locked()`` and
    ``close(timeout_s)``. ``torch_threads``: the child's ``torch.set_num_threads``.
    Raises ValueError (one line, as the pipeline's constructor does) for an unusable configuration."""

    def __init__(self, config: MappingConfig, torch_threads: int = 1):
        self.config = config
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, config, int(torch_threads)),
                                        name="ocgs_mapping_pipeline", daemon=True)
        self._process.start()
        child_conn.close()  # the child's end lives in the child only: its exit closes the pipe
        self._lock = threading.RLock()
        self._closed = False
        if not self._conn.poll(START_TIMEOUT_S):
            self._stop(0.0)
            raise PipelineProcessError(f"the mapping pipeline's process did not start within {START_TIMEOUT_S:.0f} s")
        status, value = self._receive()
        if status == "error":
            self._stop(5.0)
            raise value
        self.num_entries: int = value["num_entries"]
        self.has_identity: bool = value["has_identity"]
        self.pid: int = self._process.pid

    def __getattr__(self, name: str):
        if name not in FORWARDED:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def locked(self):
        """Holds the map still across several calls of this thread (no other call is served meanwhile)."""
        return self._lock

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        with self._lock:
            if self._closed:
                raise PipelineProcessError("the mapping pipeline's process is closed")
            try:
                self._conn.send((name, args, kwargs))
            except (BrokenPipeError, EOFError, OSError):
                raise self._gone() from None
            status, value = self._receive()
        if status == "error":
            raise value
        return value

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            raise self._gone() from None

    def _gone(self) -> PipelineProcessError:
        self._process.join(1.0)
        return PipelineProcessError(f"the mapping pipeline's process exited (code {self._process.exitcode})")

    def close(self, timeout_s: float) -> bool:
        """Let the child end a running background extraction (at most ``timeout_s``) and exit;
        returns whether it ended in time (else it is killed)."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            try:
                self._conn.send(("close", (timeout_s,), {}))
            except (BrokenPipeError, OSError):
                pass
        return self._stop(timeout_s + 5.0)

    def _stop(self, timeout_s: float) -> bool:
        self._process.join(timeout_s)
        ended = not self._process.is_alive()
        if not ended:
            self._process.kill()
            self._process.join(5.0)
        self._conn.close()
        return ended


def _serve(conn: Connection, config: MappingConfig, torch_threads: int) -> None:
    """The child: build the pipeline, then answer calls until "close" or the parent's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from ocgs_ros.mapping.pipeline import ObjectMappingPipeline

    torch.set_num_threads(torch_threads)
    try:
        pipeline = ObjectMappingPipeline(config)
    except Exception as exc:  # noqa: BLE001 - handed to the parent's constructor, which raises it
        conn.send(("error", _portable(exc)))
        return
    conn.send(("ok", {"num_entries": pipeline.num_entries, "has_identity": pipeline.has_identity}))
    while True:
        try:
            name, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            pipeline.close(timeout_s=5.0)
            return
        if name == "close":
            pipeline.close(*args)
            return
        try:
            reply = ("ok", getattr(pipeline, name)(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - raised again in the caller
            reply = ("error", _portable(exc))
        conn.send(reply)


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a RuntimeError with its type and message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that does not round-trip
        return RuntimeError(f"{type(exc).__name__}: {exc}")
