"""The skeleton both perception nodes share, so each node file holds only what is its own.

A perception node declares its settings from config dataclasses, subscribes its sensor topics
through one approximate-time synchronizer, and hands every synchronised frame to a newest-wins
worker thread (:class:`~ocgs_ros.latest_worker.LatestWorker`): callbacks never block, and a frame
that arrives while the worker is busy replaces the waiting one and is counted as dropped. Frames
older than ``max_input_age_s`` are rejected before they queue; a frame the worker cannot use raises
``FrameError`` and is counted per reason (:class:`~ocgs_ros.ros.frame_rejects.FrameRejects`);
input rates, latency and drops go to ``/diagnostics``. On ``destroy_node`` the worker finishes the
frame in hand before the publishers it uses are destroyed.

A subclass sets ``CONFIG_CLASSES`` (its :class:`~ocgs_ros.ros.node_settings.PerceptionSettings`
subclass first), builds its model and publishers, calls :meth:`PerceptionNode.start_inputs`, and
implements :meth:`frame_stamp_ns` and :meth:`process` (which calls :meth:`frame_published`).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import torch
from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from ocgs_ros.latest_worker import LatestWorker
from ocgs_ros.ros import qos
from ocgs_ros.ros.diagnostics import NodeDiagnostics, latency_window
from ocgs_ros.ros.frame_rejects import FrameRejects
from ocgs_ros.ros.params import declare_configs
from ocgs_ros.ros.sensor_frames import FrameError, lookup
from ocgs_ros.ros.sync import make_synchronizer
from ocgs_ros.ros.tf import make_tf_buffer, make_transform_listener

#: the worker may be mid-frame when the node is destroyed: wait this long for it (s)
WORKER_STOP_TIMEOUT_S = 30.0
#: TF history kept (s): a frame waiting in the worker must still find its poses
TF_CACHE_S = 30.0


@dataclass(frozen=True)
class SensorInput:
    name: str  # its key in /diagnostics ("image", "points", ...)
    msg_type: type
    topic: str


@dataclass
class SyncedFrame:
    msgs: tuple  # one message per SensorInput, in start_inputs order
    stamp_ns: int  # the frame's stamp: outputs carry it, latency counts from it


class PerceptionNode(Node):
    CONFIG_CLASSES: tuple[type, ...] = ()

    def __init__(self, node_name: str, **node_kwargs):
        self.worker: LatestWorker | None = None  # set first: destroy_node works on a node that failed part-way
        super().__init__(node_name, **node_kwargs)
        self.configs = declare_configs(self, *self.CONFIG_CLASSES)
        self.settings = self.configs[0]
        torch.set_num_threads(self.settings.torch_threads)
        self.published = 0
        #: sensor messages received on any input (synchronised or not): the bring-up's drain waits
        #: until this stops growing, i.e. until nothing is still in flight to the node
        self.inputs_received = 0
        self.latencies_s: collections.deque[float] = latency_window()  # the recent ones: bounded memory
        self.tf_buffer = make_tf_buffer(cache_time_s=TF_CACHE_S)
        self.tf_listener = make_transform_listener(self.tf_buffer, self)

    def start_inputs(self, inputs: list[SensorInput], label: str, expected_rates_hz: dict[str, float]) -> None:
        """Diagnostics (``label``; WARN/ERROR for the named inputs below their expected rate), the
        worker, and the synchronised subscriptions: frames flow once this returns."""
        s = self.settings
        self.diagnostics = NodeDiagnostics(self, label, period_s=s.diagnostics_period_s,
                                           expected_rates_hz=expected_rates_hz)
        self.rejects = FrameRejects(self.get_logger(), self.diagnostics)
        self.worker = LatestWorker(self.process, self.rejects.on_worker_error, name=f"{self.get_name()}_worker")
        self._subscribers, self.sync = make_synchronizer(
            self, [(i.msg_type, i.topic, qos.SENSOR_DATA) for i in inputs], s.sync_queue_size, s.sync_slop_s)
        for subscriber, item in zip(self._subscribers, inputs):
            subscriber.registerCallback(lambda _msg, name=item.name: self._on_input(name))
        self.sync.registerCallback(self.on_frame)

    def _on_input(self, name: str) -> None:
        self.inputs_received += 1
        self.diagnostics.tick(name)

    @property
    def frame_topics(self) -> list[str]:
        """What its frames are built from, as resolved (namespace and remaps applied): the sensor
        topics, then TF (a frame whose poses were published before the node subscribed is lost too)."""
        sensors = [subscriber.sub.topic_name for subscriber in self._subscribers]
        return sensors + [sub.topic_name for sub in self.subscriptions if sub.msg_type is TFMessage]

    def idle(self) -> bool:
        """No frame waiting for the worker and none in progress."""
        return self.worker is None or self.worker.idle()

    # -- what a subclass provides -----------------------------------------------------------
    def frame_stamp_ns(self, msgs: tuple) -> int:
        """The stamp of a synchronised set of messages (that of the sensor outputs follow)."""
        raise NotImplementedError

    def process(self, frame: SyncedFrame) -> None:
        """Worker thread: convert, compute, publish; raise FrameError to drop the frame."""
        raise NotImplementedError

    # -- frames ------------------------------------------------------------------------------
    def on_frame(self, *msgs) -> None:
        """A synchronised frame (executor thread): the stale check, then hand it to the worker."""
        self.diagnostics.tick("frames")
        try:
            stamp_ns = self.frame_stamp_ns(msgs)
        except ValueError as exc:  # nanosec >= 1e9: a synchronizer that lets it through must not stop us
            self.rejects.reject(FrameError("header_stamp", f"invalid header stamp: {exc}"))
            return
        if self.rejects.reject_if_stale(self.get_clock().now().nanoseconds, stamp_ns,
                                        self.settings.max_input_age_s):
            return
        try:
            kept = self.worker.submit(SyncedFrame(msgs, stamp_ns))
        except RuntimeError:
            if self.worker.stop_requested:  # a message delivered while the node shuts down is no reject
                return
            raise
        self.diagnostics.frame(dropped=not kept)

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """TF ``target <- source`` at ``stamp_ns`` (0 = latest) as [4, 4]; FrameError('tf') if missing."""
        return lookup(self.tf_buffer, target, source, stamp_ns, self.settings.tf_timeout_s)

    def frame_published(self, frame: SyncedFrame) -> None:
        """Count a frame whose outputs went out, and its stamp-to-output latency."""
        latency_s = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-9
        self.latencies_s.append(latency_s)
        self.diagnostics.latency(latency_s)
        # the worker's own time per frame, beside the latency: what is left is waiting for the worker
        self.diagnostics.set("process_ms_mean", round(self.worker.stats.mean_duration_s * 1e3, 1))
        self.published += 1

    @property
    def rejected(self) -> dict[str, int]:
        """Dropped input frames by reason (tf, encoding, pointcloud, stale, ...)."""
        return self.rejects.counts

    def stats(self) -> dict:
        return {
            **self.rejects.frame_stats(self.worker, self.sync, self.latencies_s),
            "dropped_stale_sync": int(getattr(self.sync, "dropped_stale", 0)),
            "dropped_invalid_stamp_sync": int(getattr(self.sync, "dropped_invalid_stamp", 0)),
            "process_ms_mean": round(self.worker.stats.mean_duration_s * 1e3, 1),
        }

    def destroy_node(self):
        # The frame in hand publishes when it is done: finish it before the publishers go away
        # (within the grace a shutdown gave the worker, see ros/node_main.py).
        if self.worker is not None:
            self.worker.stop(timeout_s=WORKER_STOP_TIMEOUT_S)
        return super().destroy_node()
