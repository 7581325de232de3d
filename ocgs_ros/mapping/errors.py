"""The rejection of one input frame, shared by the pipeline and the ROS adapters."""
from __future__ import annotations


class FrameRejected(ValueError):
    """A frame that cannot be used; ``reason`` is a short key for counters (``empty_cloud``,
    ``encoding``, ``tf``, ...) and the message says what is wrong. A live stream drops the frame
    and carries on (``ocgs_ros.ros.sensor_frames.FrameError`` is this class)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # pickled by the pipeline's own process (mapping.process) with both arguments
        return type(self), (self.reason, str(self))
