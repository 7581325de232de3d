"""ApproximateTimeSynchronizer (message_filters API): matching, slop, stale and overflow handling."""
from __future__ import annotations

import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ocgs_ros.ros.conversions import ns_to_stamp
from ocgs_ros.ros.sync import ApproximateTimeSynchronizer, SimpleFilter

MS = 1_000_000


def _msg(cls, stamp_ns):
    m = cls()
    m.header.stamp = ns_to_stamp(stamp_ns)
    return m


def _sync(slop=0.02, queue_size=10):
    inputs = [SimpleFilter(), SimpleFilter(), SimpleFilter()]
    sync = ApproximateTimeSynchronizer(inputs, queue_size, slop)
    out = []
    sync.registerCallback(lambda a, b, c: out.append((a, b, c)))
    return inputs, sync, out


def test_matches_within_slop_with_jitter_and_interleaving():
    (img, info, cloud), sync, out = _sync()
    for k in range(5):
        t = 1_000 * MS + k * 100 * MS
        cloud.signalMessage(_msg(PointCloud2, t + 7 * MS))  # LiDAR 7 ms late
        img.signalMessage(_msg(Image, t))
        info.signalMessage(_msg(CameraInfo, t))
    assert len(out) == 5
    for k, (a, b, c) in enumerate(out):
        assert isinstance(a, Image) and isinstance(b, CameraInfo) and isinstance(c, PointCloud2)
        assert a.header.stamp.nanosec % (100 * MS) == 0
        assert (c.header.stamp.nanosec - a.header.stamp.nanosec) == 7 * MS


def test_no_match_beyond_slop_and_closest_partner_chosen():
    (img, info, cloud), sync, out = _sync(slop=0.01)
    img.signalMessage(_msg(Image, 100 * MS))
    info.signalMessage(_msg(CameraInfo, 100 * MS))
    cloud.signalMessage(_msg(PointCloud2, 125 * MS))  # 25 ms off: no set
    assert out == []
    cloud.signalMessage(_msg(PointCloud2, 104 * MS))
    assert len(out) == 1 and out[0][2].header.stamp.nanosec == 104 * MS


def test_stale_and_out_of_order_messages_are_dropped():
    (img, info, cloud), sync, out = _sync()
    for f, cls in ((img, Image), (info, CameraInfo), (cloud, PointCloud2)):
        f.signalMessage(_msg(cls, 500 * MS))
    assert len(out) == 1
    img.signalMessage(_msg(Image, 400 * MS))  # older than what was emitted: stale
    img.signalMessage(_msg(Image, 500 * MS))  # same stamp again: stale
    assert sync.dropped_stale == 2
    for f, cls in ((img, Image), (info, CameraInfo), (cloud, PointCloud2)):
        f.signalMessage(_msg(cls, 600 * MS))
    stamps = [a.header.stamp.nanosec for a, _, _ in out]
    assert stamps == [500 * MS, 600 * MS]


def test_queue_overflow_bounds_memory():
    (img, info, cloud), sync, out = _sync(queue_size=3)
    for k in range(10):
        img.signalMessage(_msg(Image, (k + 1) * 100 * MS))
    assert sync.dropped_overflow == 7 and out == []
    info.signalMessage(_msg(CameraInfo, 1000 * MS))
    cloud.signalMessage(_msg(PointCloud2, 1000 * MS))
    assert len(out) == 1 and out[0][0].header.stamp.sec == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer([SimpleFilter()], 0, 0.1)
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer([SimpleFilter()], 5, 0.1, allow_headerless=True)
