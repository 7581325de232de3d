"""A pure-Python stand-in for ``tf2_ros.Buffer`` (no tf2_ros wheel exists for a pip-only install).

Same method names, arguments, exception names and semantics as tf2, so a full ROS 2 install can
swap ``tf2_ros.Buffer`` in (see :func:`make_tf_buffer`):

* every frame has one parent per sample; lookups walk from both frames towards the root and
  meet at the first common ancestor, evaluating only the links below it;
* static transforms hold at every time; dynamic ones are interpolated between the two samples
  that bracket the requested time (translation linearly, rotation by quaternion slerp);
  a time outside a link's samples raises :class:`ExtrapolationException`;
* time 0 means "the latest time at which every link of this chain has data";
* samples older than ``cache_time`` behind a frame's newest sample are evicted; older samples
  and duplicates of an existing stamp are dropped (as tf2 does);
* one lock guards all state: /tf callbacks and worker threads may share a buffer.

Invalid input to ``set_transform`` (empty or '/'-prefixed frame ids, a frame that is its own
parent, NaN, non-unit quaternions) raises :class:`InvalidArgumentException`, where tf2 logs and drops.
"""
from __future__ import annotations

import bisect
import math
import threading
import time as _wall
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import TransformStamped
from scipy.spatial.transform import Rotation

from ocgs_ros.ros.conversions.transforms import NS_PER_S, normalize_quaternion, ns_to_stamp, time_to_ns


class TransformException(Exception):
    """Base of every TF error (same name as tf2's)."""


class LookupException(TransformException):
    """A frame was never published."""


class ConnectivityException(TransformException):
    """Both frames exist but are not in the same tree (or the tree has a loop)."""


class ExtrapolationException(TransformException):
    """The requested time is outside the data of some link on the path."""


class InvalidArgumentException(TransformException, ValueError):
    """Malformed input (empty frame id, NaN, non-unit quaternion, negative time)."""


class TimeoutException(TransformException):
    """Kept for API parity with tf2_ros; lookups with a timeout re-raise the underlying error instead."""


@dataclass
class _Sample:
    stamp_ns: int
    parent: str
    translation: np.ndarray  # float64 [3]
    rotation: np.ndarray  # unit quaternion xyzw, float64 [4]
    authority: str


@dataclass
class _FrameCache:
    """All known transforms from one child frame to its parent."""

    is_static: bool
    samples: list[_Sample] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)

    def insert(self, sample: _Sample, cache_time_ns: int) -> bool:
        if self.is_static:
            # A static frame has one value for all time; a newer publication replaces it.
            self.samples, self.stamps = [sample], [sample.stamp_ns]
            return True
        if self.stamps and sample.stamp_ns < self.stamps[-1] - cache_time_ns:
            return False  # older than anything we keep (tf2: TF_OLD_DATA)
        index = bisect.bisect_left(self.stamps, sample.stamp_ns)
        if index < len(self.stamps) and self.stamps[index] == sample.stamp_ns:
            return False  # tf2: TF_REPEATED_DATA, the first sample at a stamp wins
        self.stamps.insert(index, sample.stamp_ns)
        self.samples.insert(index, sample)
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_time_ns)
        if cut:
            del self.stamps[:cut], self.samples[:cut]
        return True

    @property
    def latest(self) -> _Sample:
        return self.samples[-1]

    def at(self, time_ns: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(parent, translation, rotation xyzw) at ``time_ns`` (0 = latest); raises ``_OutOfRange``."""
        if self.is_static or time_ns == 0:
            s = self.samples[-1]
            return s.parent, s.translation, s.rotation
        if len(self.stamps) == 1:
            if self.stamps[0] == time_ns:
                s = self.samples[0]
                return s.parent, s.translation, s.rotation
            raise _OutOfRange(
                f"Lookup would require extrapolation at time {_seconds(time_ns)}, "
                f"but only time {_seconds(self.stamps[0])} is in the buffer"
            )
        if time_ns < self.stamps[0]:
            raise _OutOfRange(
                f"Lookup would require extrapolation into the past.  Requested time {_seconds(time_ns)} "
                f"but the earliest data is at time {_seconds(self.stamps[0])}"
            )
        if time_ns > self.stamps[-1]:
            raise _OutOfRange(
                f"Lookup would require extrapolation into the future.  Requested time {_seconds(time_ns)} "
                f"but the latest data is at time {_seconds(self.stamps[-1])}"
            )
        index = bisect.bisect_left(self.stamps, time_ns)
        after = self.samples[index]
        if after.stamp_ns == time_ns:
            return after.parent, after.translation, after.rotation
        before = self.samples[index - 1]
        if before.parent != after.parent:
            # The frame was re-parented between the samples: like tf2, use the earlier one as is.
            return before.parent, before.translation, before.rotation
        alpha = (time_ns - before.stamp_ns) / (after.stamp_ns - before.stamp_ns)
        translation = before.translation + alpha * (after.translation - before.translation)
        return before.parent, translation, quaternion_slerp(before.rotation, after.rotation, alpha)


class _OutOfRange(Exception):
    pass


def _seconds(ns: int) -> str:
    return f"{ns / NS_PER_S:.6f}"


def quaternion_slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Shortest-path spherical interpolation between unit quaternions (any component order)."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation; take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: sin(theta) ~ 0, normalised lerp is exact to float precision
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    return (math.sin((1.0 - alpha) * theta) * q0 + math.sin(alpha * theta) * q1) / sin_theta


def _link_matrix(translation: np.ndarray, rotation_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = rotation_xyzw
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = translation
    return T


def _timeout_seconds(timeout) -> float:
    if timeout is None:
        return 0.0
    if hasattr(timeout, "nanoseconds"):  # rclpy.duration.Duration
        return timeout.nanoseconds / NS_PER_S
    if hasattr(timeout, "sec") and hasattr(timeout, "nanosec"):  # builtin_interfaces/Duration
        return timeout.sec + timeout.nanosec / NS_PER_S
    return float(timeout)


class TfBuffer:
    """tf2_ros.Buffer-compatible transform buffer (see the module docstring for the semantics).

    ``cache_time_s`` (or tf2_ros' ``cache_time`` Duration) bounds how far back dynamic samples are kept.
    """

    def __init__(self, cache_time_s: float = 10.0, *, cache_time=None, node=None):
        seconds = _timeout_seconds(cache_time) if cache_time is not None else float(cache_time_s)
        if not (math.isfinite(seconds) and seconds > 0):
            raise InvalidArgumentException(f"cache time must be positive, got {seconds} s")
        self.cache_time_ns = int(round(seconds * NS_PER_S))
        self._caches: dict[str, _FrameCache] = {}
        self._parents_seen: set[str] = set()
        self._condition = threading.Condition(threading.RLock())
        del node  # tf2_ros uses it for a lookup service; nothing to serve here

    # ------------------------------------------------------------------ input
    def set_transform(self, transform: TransformStamped, authority: str) -> bool:
        """Add a dynamic transform (header.frame_id = parent, child_frame_id = child).
        Returns False when the sample is dropped as too old or as a repeated stamp."""
        return self._set(transform, authority, is_static=False)

    def set_transform_static(self, transform: TransformStamped, authority: str) -> bool:
        """Add a transform valid at all times (what /tf_static carries)."""
        return self._set(transform, authority, is_static=True)

    def _set(self, transform: TransformStamped, authority: str, is_static: bool) -> bool:
        parent = transform.header.frame_id
        child = transform.child_frame_id
        _check_frame_id(parent, "set_transform header.frame_id")
        _check_frame_id(child, "set_transform child_frame_id")
        if parent == child:
            raise InvalidArgumentException(
                f"transform from authority {authority!r} has frame_id and child_frame_id both {child!r}")
        t = transform.transform.translation
        translation = np.array([t.x, t.y, t.z], dtype=np.float64)
        if not np.all(np.isfinite(translation)):
            raise InvalidArgumentException(f"transform {parent!r} -> {child!r} has a NaN/inf translation")
        r = transform.transform.rotation
        try:
            rotation = normalize_quaternion([r.x, r.y, r.z, r.w])
        except ValueError as exc:
            raise InvalidArgumentException(f"transform {parent!r} -> {child!r}: {exc}") from exc
        stamp_ns = time_to_ns(transform.header.stamp)
        sample = _Sample(stamp_ns, parent, translation, rotation, authority)
        with self._condition:
            cache = self._caches.get(child)
            if cache is None:
                cache = self._caches[child] = _FrameCache(is_static=is_static)
            inserted = cache.insert(sample, self.cache_time_ns)
            self._parents_seen.add(parent)
            if inserted:
                self._condition.notify_all()
            return inserted

    def clear(self) -> None:
        """Forget all dynamic samples (static transforms stay, as in tf2)."""
        with self._condition:
            for child in [c for c, cache in self._caches.items() if not cache.is_static]:
                del self._caches[child]

    # ------------------------------------------------------------------ queries
    def lookup_transform(self, target_frame: str, source_frame: str, time, timeout=None) -> TransformStamped:
        """``T_target_source`` at ``time`` (rclpy Time, builtin_interfaces Time or int ns; 0 = latest
        common time) as a TransformStamped with header.frame_id = target, child_frame_id = source.

        With a positive ``timeout`` (rclpy Duration, builtin Duration or seconds), waits for the
        data to arrive before giving up with the lookup's own exception.
        """
        time_ns = _check_time(time)
        self._wait_until_resolvable(target_frame, source_frame, time_ns, timeout)
        with self._condition:
            T, stamp_ns = self._resolve(target_frame, source_frame, time_ns)
        return _transform_stamped(T, target_frame, source_frame, stamp_ns)

    def lookup_transform_full(self, target_frame: str, target_time, source_frame: str, source_time,
                              fixed_frame: str, timeout=None) -> TransformStamped:
        """Time travel: ``source_frame`` at ``source_time`` into ``target_frame`` at ``target_time``,
        through ``fixed_frame`` (a frame assumed not to move between the two times)."""
        target_ns, source_ns = _check_time(target_time), _check_time(source_time)
        deadline = _wall.monotonic() + _timeout_seconds(timeout)
        self._wait_until_resolvable(fixed_frame, source_frame, source_ns, timeout)
        self._wait_until_resolvable(target_frame, fixed_frame, target_ns, max(0.0, deadline - _wall.monotonic()))
        with self._condition:
            T_fixed_source, _ = self._resolve(fixed_frame, source_frame, source_ns)
            T_target_fixed, stamp_ns = self._resolve(target_frame, fixed_frame, target_ns)
        return _transform_stamped(T_target_fixed @ T_fixed_source, target_frame, source_frame, stamp_ns)

    def can_transform(self, target_frame: str, source_frame: str, time, timeout=None,
                      return_debug_tuple: bool = False):
        """Whether :meth:`lookup_transform` would succeed; ``(bool, error message)`` with ``return_debug_tuple``."""
        try:
            self.lookup_transform(target_frame, source_frame, time, timeout)
        except TransformException as exc:
            return (False, str(exc)) if return_debug_tuple else False
        return (True, "") if return_debug_tuple else True

    def can_transform_full(self, target_frame: str, target_time, source_frame: str, source_time,
                           fixed_frame: str, timeout=None, return_debug_tuple: bool = False):
        try:
            self.lookup_transform_full(target_frame, target_time, source_frame, source_time, fixed_frame, timeout)
        except TransformException as exc:
            return (False, str(exc)) if return_debug_tuple else False
        return (True, "") if return_debug_tuple else True

    def lookup_matrix(self, target_frame: str, source_frame: str, time_ns=0, timeout=None) -> np.ndarray:
        """``T_target_source`` as float64 [4, 4] (``p_target = T @ p_source``)."""
        time_ns = _check_time(time_ns)
        self._wait_until_resolvable(target_frame, source_frame, time_ns, timeout)
        with self._condition:
            return self._resolve(target_frame, source_frame, time_ns)[0]

    def get_latest_common_time(self, target_frame: str, source_frame: str):
        """The newest time at which the chain between the frames has data, as ``rclpy.time.Time``."""
        from rclpy.time import Time

        with self._condition:
            return Time(nanoseconds=self._latest_common_time(target_frame, source_frame))

    def all_frames_as_string(self) -> str:
        """One line per frame with a parent, in tf2's wording."""
        with self._condition:
            return "".join(f"Frame {child} exists with parent {cache.latest.parent}.\n"
                           for child, cache in self._caches.items())

    def all_frames_as_yaml(self) -> str:
        """tf2-style YAML summary: parent, broadcaster, rate, newest/oldest stamp, buffer length."""
        lines = []
        with self._condition:
            for child, cache in self._caches.items():
                newest, oldest = cache.stamps[-1], cache.stamps[0]
                span = (newest - oldest) / NS_PER_S
                rate = (len(cache.stamps) - 1) / span if span > 0 else 10000.0
                lines += [
                    f"{child}: ",
                    f"  parent: '{cache.latest.parent}'",
                    f"  broadcaster: '{cache.latest.authority}'",
                    f"  rate: {rate:.3f}",
                    f"  most_recent_transform: {newest / NS_PER_S:.6f}",
                    f"  oldest_transform: {oldest / NS_PER_S:.6f}",
                    f"  buffer_length: {span:.3f}",
                ]
        return "\n".join(lines) + ("\n" if lines else "")

    # ------------------------------------------------------------------ internals
    def _wait_until_resolvable(self, target_frame: str, source_frame: str, time_ns: int, timeout) -> None:
        seconds = _timeout_seconds(timeout)
        if seconds <= 0:
            return
        deadline = _wall.monotonic() + seconds
        with self._condition:
            while True:
                try:
                    self._resolve(target_frame, source_frame, time_ns)
                    return
                except InvalidArgumentException:
                    raise
                except TransformException:
                    remaining = deadline - _wall.monotonic()
                    if remaining <= 0:
                        return  # the caller's lookup raises the real error
                    self._condition.wait(remaining)

    def _frame_exists(self, frame: str) -> bool:
        return frame in self._caches or frame in self._parents_seen

    def _check_frames(self, target_frame: str, source_frame: str, caller: str) -> None:
        _check_frame_id(target_frame, f"{caller} argument target_frame")
        _check_frame_id(source_frame, f"{caller} argument source_frame")
        for name, frame in (("target_frame", target_frame), ("source_frame", source_frame)):
            if not self._frame_exists(frame):
                raise LookupException(f'"{frame}" passed to {caller} argument {name} does not exist. ')

    def _resolve(self, target_frame: str, source_frame: str, time_ns: int) -> tuple[np.ndarray, int]:
        """(T_target_source, stamp actually used). Caller holds the lock."""
        if target_frame == source_frame:  # identity needs no data, as in tf2
            _check_frame_id(target_frame, "lookupTransform argument target_frame")
            stamp = time_ns
            if time_ns == 0 and target_frame in self._caches:
                stamp = 0 if self._caches[target_frame].is_static else self._caches[target_frame].stamps[-1]
            return np.eye(4), stamp
        self._check_frames(target_frame, source_frame, "lookupTransform")
        if time_ns == 0:
            time_ns = self._latest_common_time(target_frame, source_frame)
        errors: list[str] = []
        # Source side: T_{frame}_{source} for each frame on the way up (stop at the target).
        source_chain = self._walk(source_frame, time_ns, stop_at={target_frame}, errors=errors)
        source_index = {frame: i for i, (frame, _) in enumerate(source_chain)}
        target_chain = self._walk(target_frame, time_ns, stop_at=set(source_index), errors=errors)
        meet, T_meet_target = target_chain[-1]
        if meet in source_index:
            T_meet_source = source_chain[source_index[meet]][1]
            T = _rigid_inverse(T_meet_target) @ T_meet_source
            return T, time_ns
        if errors:
            raise ExtrapolationException(
                f"{errors[0]}, when looking up transform from frame [{source_frame}] to frame [{target_frame}]")
        raise ConnectivityException(
            f"Could not find a connection between '{target_frame}' and '{source_frame}' because they are not "
            "part of the same tree. Tf has two or more unconnected trees.")

    def _walk(self, start: str, time_ns: int, stop_at: set[str], errors: list[str]) -> list[tuple[str, np.ndarray]]:
        """[(frame, T_frame_start)] from ``start`` upwards until a frame in ``stop_at``, the root or a
        link with no data at ``time_ns`` (its message goes to ``errors``)."""
        chain = [(start, np.eye(4))]
        visited = {start}
        frame, T = start, np.eye(4)
        while frame not in stop_at:
            cache = self._caches.get(frame)
            if cache is None:
                break  # root
            try:
                parent, translation, rotation = cache.at(time_ns)
            except _OutOfRange as exc:
                errors.append(str(exc))
                break
            if parent in visited:
                raise ConnectivityException(f"The tf tree is invalid because it contains a loop through {parent!r}.")
            T = _link_matrix(translation, rotation) @ T
            frame = parent
            visited.add(frame)
            chain.append((frame, T))
        return chain

    def _latest_chain(self, start: str, stop_at: set[str]) -> list[tuple[str, int | None]]:
        """[(frame, newest stamp of the link *into* frame, None if static)] following newest parents."""
        chain = [(start, None)]
        visited = {start}
        frame = start
        while frame not in stop_at and frame in self._caches:
            cache = self._caches[frame]
            parent = cache.latest.parent
            if parent in visited:
                raise ConnectivityException(f"The tf tree is invalid because it contains a loop through {parent!r}.")
            chain.append((parent, None if cache.is_static else cache.stamps[-1]))
            visited.add(parent)
            frame = parent
        return chain

    def _latest_common_time(self, target_frame: str, source_frame: str) -> int:
        """Min over dynamic links between the two frames of their newest stamp (0 if all static)."""
        if target_frame == source_frame:
            return 0
        self._check_frames(target_frame, source_frame, "getLatestCommonTime")
        source_chain = self._latest_chain(source_frame, {target_frame})
        source_frames = [f for f, _ in source_chain]
        target_chain = self._latest_chain(target_frame, set(source_frames))
        meet = target_chain[-1][0]
        if meet not in source_frames:
            raise ConnectivityException(
                f"Could not find a connection between '{target_frame}' and '{source_frame}' because they are not "
                "part of the same tree. Tf has two or more unconnected trees.")
        used = source_chain[1: source_frames.index(meet) + 1] + target_chain[1:]
        stamps = [stamp for _, stamp in used if stamp is not None]
        return min(stamps) if stamps else 0


def _rigid_inverse(T: np.ndarray) -> np.ndarray:
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def _check_frame_id(frame: str, where: str) -> None:
    if not isinstance(frame, str) or not frame:
        raise InvalidArgumentException(f"Invalid argument passed to {where} in tf2 frame_ids cannot be empty")
    if frame.startswith("/"):
        raise InvalidArgumentException(
            f'Invalid argument "{frame}" passed to {where} - tf2 frame_ids cannot start with a \'/\'')


def _check_time(time) -> int:
    try:
        ns = time_to_ns(time)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentException(f"bad lookup time {time!r}: {exc}") from exc
    if ns < 0:
        raise InvalidArgumentException(f"lookup time must be >= 0 ns, got {ns}")
    return ns


def _transform_stamped(T: np.ndarray, target_frame: str, source_frame: str, stamp_ns: int) -> TransformStamped:
    msg = TransformStamped()
    msg.header.frame_id = target_frame
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.child_frame_id = source_frame
    translation = T[:3, 3]
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in translation)
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = (
        float(v) for v in q)
    return msg


def make_tf_buffer(cache_time_s: float = 10.0):
    """``tf2_ros.Buffer`` when tf2_ros is importable (a full ROS 2 install), else :class:`TfBuffer`."""
    try:
        import tf2_ros
        from rclpy.duration import Duration
    except ImportError:
        return TfBuffer(cache_time_s=cache_time_s)
    return tf2_ros.Buffer(cache_time=Duration(nanoseconds=int(round(cache_time_s * NS_PER_S))))
