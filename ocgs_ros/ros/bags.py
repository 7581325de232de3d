"""ROS 2 bags (mcap and sqlite3) through the ``rosbags`` library: the path by which recorded data
enters, and how simulated streams are kept.

Messages are stored as CDR exactly as rclpy serialises them (``rclpy.serialization``), so a message
written here and read back, or replayed over DDS, deserialises equal to the one recorded (compare
messages, not bytes: rclpy leaves CDR alignment padding uninitialised). Writes go to
``.<name>.partial/<name>`` beside the target and are moved into place when the bag is closed, so an
interrupted recording never leaves a half-written bag under the final name.
"""
from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Nodetype, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ocgs_ros.ros.qos import qos_for_topic

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(RuntimeError):
    """A bag cannot be read or written (missing, corrupt, unknown message type...)."""


def msgtype_of(msg_or_class) -> str:
    """``sensor_msgs/msg/Image`` for an rclpy message instance or class."""
    cls = msg_or_class if isinstance(msg_or_class, type) else type(msg_or_class)
    package, kind = cls.__module__.split(".")[:2]
    return f"{package}/{kind}/{cls.__name__}"


def message_class(msgtype: str):
    """The rclpy message class for ``pkg/msg/Name`` (or ``pkg/Name``)."""
    parts = msgtype.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise BagError(f"malformed message type name {msgtype!r}")
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f"message type {msgtype!r} is not installed: {exc}") from exc


def _rosbags_qos(profile: QoSProfile) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=int(profile.depth),
        reliability=QosReliability.RELIABLE
        if profile.reliability == ReliabilityPolicy.RELIABLE
        else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL
        if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        else QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def _rclpy_qos(profile: Qos) -> QoSProfile:
    return QoSProfile(
        depth=max(1, int(profile.depth)),
        reliability=ReliabilityPolicy.BEST_EFFORT if profile.reliability == QosReliability.BEST_EFFORT
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if profile.durability == QosDurability.TRANSIENT_LOCAL
        else DurabilityPolicy.VOLATILE,
    )


def _definition_from_ament_index(msgtype: str) -> str | None:
    """The ``.msg`` text of an installed interface package (for types rosbags does not know)."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    package, kind, name = msgtype.split("/")
    try:
        path = Path(get_package_share_directory(package)) / kind / f"{name}.{kind}"
    except Exception:  # noqa: BLE001 - package not in the ament index
        return None
    return path.read_text() if path.is_file() else None


def _nested_type_names(fields) -> Iterator[str]:
    """Message types used by a rosbags field list (directly, or as array/sequence elements)."""
    for _name, (kind, detail) in fields:
        if kind == Nodetype.NAME:
            yield detail
        elif kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (element_kind, element), _size = detail
            if element_kind == Nodetype.NAME:
                yield element


class BagWriter:
    """Write rclpy messages (or their CDR bytes) to a ROS 2 bag."""

    def __init__(self, path: str | os.PathLike, storage: str = "mcap", overwrite: bool = False):
        if storage not in STORAGE_PLUGINS:
            raise BagError(f"unknown bag storage {storage!r}; expected one of {sorted(STORAGE_PLUGINS)}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"bag {self.path} already exists (pass overwrite=True to replace it)")
        # The bag is written under its final folder name inside a hidden staging folder, because
        # the storage file inside is named after that folder.
        self._staging = self.path.with_name(f".{self.path.name}.partial")
        if self._staging.exists():
            shutil.rmtree(self._staging)
        self._staging.mkdir(parents=True)
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self._staging / self.path.name, version=9, storage_plugin=STORAGE_PLUGINS[storage])
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._overwrite = overwrite
        self.message_count = 0

    def _connection(self, topic: str, msgtype: str, qos: QoSProfile | None):
        conn = self._connections.get(topic)
        if conn is not None:
            if conn.msgtype != msgtype:
                raise BagError(f"topic {topic} already recorded as {conn.msgtype}, got {msgtype}")
            return conn
        self._register(msgtype)
        offered = qos if qos is not None else qos_for_topic(topic)
        conn = self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=[_rosbags_qos(offered)]
        )
        self._connections[topic] = conn
        return conn

    def _register(self, msgtype: str) -> None:
        """Teach the typestore a type it lacks (our own interfaces), with every nested type."""
        if msgtype in self._typestore.fielddefs:
            return
        text = _definition_from_ament_index(msgtype)
        if text is None:
            raise BagError(f"no message definition found for {msgtype!r}")
        types = get_types_from_msg(text, msgtype)
        self._typestore.register(types)
        for _consts, fields in types.values():
            for nested in _nested_type_names(fields):
                self._register(nested)

    def write(self, topic: str, msg, stamp_ns: int, qos: QoSProfile | None = None) -> None:
        """Write one message. ``qos`` is the publisher's QoS, stored so players can offer the same
        (a latched topic must be replayed latched); the first write of a topic fixes it."""
        self.write_serialized(topic, msgtype_of(msg), stamp_ns, serialize_message(msg), qos)

    def write_serialized(self, topic: str, msgtype: str, stamp_ns: int, data: bytes,
                         qos: QoSProfile | None = None) -> None:
        self._writer.write(self._connection(topic, msgtype, qos), int(stamp_ns), data)
        self.message_count += 1

    def close(self) -> Path:
        """Finish the bag and move it to its final name; returns that path."""
        self._writer.close()
        if self.path.exists() and self._overwrite:
            shutil.rmtree(self.path)
        os.replace(self._staging / self.path.name, self.path)
        self._staging.rmdir()
        return self.path

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # leave no bag under the final name after a failure
            self._writer.close()
            shutil.rmtree(self._staging, ignore_errors=True)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes

    def deserialize(self):
        return deserialize_message(self.data, message_class(self.msgtype))


class BagReader:
    """Read any ROS 2 bag (mcap or sqlite3) in time order."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for bad bags
            raise BagError(f"cannot open bag {self.path}: {exc}") from exc

    @property
    def topics(self) -> dict[str, str]:
        """Topic name → message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def offered_qos(self, topic: str) -> QoSProfile:
        """The QoS the topic was recorded with (as ros2 bag play uses), else the default for its name."""
        for conn in self._reader.connections:
            profiles = getattr(conn.ext, "offered_qos_profiles", None)
            if conn.topic == topic and profiles:
                return _rclpy_qos(profiles[0])
        return qos_for_topic(topic)

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    @property
    def duration_ns(self) -> int:
        return self._reader.duration

    @property
    def start_time_ns(self) -> int:
        return self._reader.start_time

    def messages(self, topics: list[str] | None = None) -> Iterator[BagMessage]:
        connections = [c for c in self._reader.connections if topics is None or c.topic in topics]
        try:
            for conn, stamp, data in self._reader.messages(connections=connections):
                yield BagMessage(conn.topic, conn.msgtype, int(stamp), bytes(data))
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"error while reading bag {self.path}: {exc}") from exc

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
