"""gocl_data: build a GOCL training set from a ROS 2 bag, an image folder, or the simulator.

    gocl_data --bag runs/my_bag --image-topic /camera/image_raw --out data/my_robot [--every-s 0.5]
    gocl_data --images photos/ --out data/my_robot
    gocl_data --root data                      # simulated train/held-out sets (ocgs_ros.ocl.data)

A bag (mcap or sqlite3, read with ``rosbags``) gives the frames of one ``sensor_msgs/Image``
(rgb8, bgr8, rgba8, bgra8, mono8, 16-bit colour/mono scaled as cv_bridge does) or
``sensor_msgs/CompressedImage`` (jpeg/png, decoded by OpenCV) topic, in recording order, stamped
with the header stamp. Frame selection, cropping and the dataset layout are
:mod:`ocgs_ros.ocl.recordings`' (near-duplicates skipped, centre square, ``summary.json``). A
malformed message is counted as a bad frame under its reason; a missing or unreadable bag, or a
topic that is not an image topic of the bag, is one error line and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ocl import data as simulated_data
from ocgs_ros.ocl.recordings import (RecordingError, RecordingWriter, add_writer_arguments, report,
                                     write_from_images, writer_from_arguments)
from ocgs_ros.ros.bags import BagError, BagMessage, BagReader
from ocgs_ros.ros.conversions import CvBridgeError, get_cv_bridge, image_msg_to_rgb

RAW_IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (RAW_IMAGE, COMPRESSED_IMAGE)


def _stamp_ns(msg: Any, fallback_ns: int) -> int:
    """Header stamp in ns; the bag's receive time when the header is unset (some drivers)."""
    stamp = msg.header.stamp
    value = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return value if value > 0 else fallback_ns


def decode_image(message: BagMessage) -> tuple[np.ndarray, int]:
    """uint8 RGB ``[H, W, 3]`` and stamp of an Image / CompressedImage bag message.

    Raises :class:`FrameRejected` (``reason`` = counter key) for anything that is not a picture.
    """
    try:
        msg = message.deserialize()
    except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad CDR
        raise FrameRejected("undeserialisable", f"message at {message.stamp_ns} ns: {exc}") from exc
    try:
        if message.msgtype == RAW_IMAGE:
            rgb = image_msg_to_rgb(msg)
        else:
            rgb = get_cv_bridge().compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except CvBridgeError as exc:
        raise FrameRejected("undecodable", str(exc)) from exc
    return np.asarray(rgb, dtype=np.uint8), _stamp_ns(msg, message.stamp_ns)


def image_messages(bag: BagReader, topic: str) -> Iterator[BagMessage]:
    """The messages of ``topic``, after checking it is an image topic of ``bag``."""
    topics = bag.topics
    if topic not in topics or topics[topic] not in IMAGE_TYPES:
        images = sorted(t for t, kind in topics.items() if kind in IMAGE_TYPES)
        found = f"is a {topics[topic]} topic" if topic in topics else "is not in the bag"
        raise RecordingError(f"--image-topic {topic} {found}; image topics of {bag.path}: {images or 'none'}")
    return bag.messages([topic])


def write_from_bag(path: str | Path, topic: str, writer: RecordingWriter, progress: bool = True) -> dict[str, Any]:
    """Feed every frame of ``topic`` in the bag at ``path`` to ``writer`` and close it; returns the summary."""
    try:
        with BagReader(path) as bag:
            messages = image_messages(bag, topic)
            for index, message in enumerate(tqdm(messages, desc=Path(path).name, unit="frame",
                                                 disable=not progress)):
                try:
                    rgb, stamp_ns = decode_image(message)
                except FrameRejected as exc:
                    writer.add_bad(exc.reason)
                    continue
                writer.add(rgb, {"index": index, "topic": topic}, stamp_ns)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gocl_data", description=__doc__.split("\n\n")[0],
                                     epilog="Without --bag or --images: the simulated GOCL datasets "
                                            "(options: python -m ocgs_ros.ocl.data --help).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="ROS 2 bag folder or file (mcap or sqlite3)")
    source.add_argument("--images", help="folder of image files (searched recursively, sorted by path)")
    parser.add_argument("--image-topic", help="with --bag: the Image or CompressedImage topic to read")
    add_writer_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``gocl_data`` (``python -m ocgs_ros.ros.gocl_data``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {arg.split("=")[0] for arg in argv}
    if not flags & {"--bag", "--images", "-h", "--help"}:
        simulated_data.main(argv)  # the simulated datasets keep their own options
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.bag) != bool(args.image_topic):
        parser.error("--image-topic goes with --bag (and --bag needs it)")
    try:
        if args.bag:
            writer = writer_from_arguments(args, {"bag": str(Path(args.bag).resolve()), "topic": args.image_topic})
            summary = write_from_bag(args.bag, args.image_topic, writer, progress=not args.no_progress)
        else:
            writer = writer_from_arguments(args, {"images": str(Path(args.images).resolve())})
            summary = write_from_images(args.images, writer, progress=not args.no_progress)
    except (RecordingError, BagError) as exc:
        print(f"gocl_data: error: {exc}", file=sys.stderr)
        return 2
    report("gocl_data", summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
