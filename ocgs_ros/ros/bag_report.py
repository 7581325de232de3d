"""What a recorded sensor bag contains: per-topic counts, rates and stamp order, and a LiDAR-on-camera
overlay built only from what is in the bag (images, CameraInfo, clouds, /tf_static) — the same path a
real robot's data takes through the mapping node."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ocgs_ros.ros import conversions
from ocgs_ros.ros.bags import BagReader
from ocgs_ros.ros.tf_buffer import TfBuffer
from ocgs_ros.sim.consistency import project_to_pixels


def topic_statistics(bag_path) -> dict[str, dict]:
    """Per topic: message count, receive rate (Hz), and whether header stamps never go backwards."""
    receive = defaultdict(list)
    header = defaultdict(list)
    with BagReader(bag_path) as reader:
        for message in reader.messages():
            receive[message.topic].append(message.stamp_ns)
            msg = message.deserialize()
            if hasattr(msg, "header"):
                header[message.topic].append(conversions.stamp_to_ns(msg.header.stamp))
    stats = {}
    for topic, stamps in sorted(receive.items()):
        span = (stamps[-1] - stamps[0]) / 1e9
        stamped = header.get(topic, [])
        stats[topic] = {
            "count": len(stamps),
            "rate_hz": round((len(stamps) - 1) / span, 3) if span > 0 else None,
            "header_stamps_monotonic": bool(np.all(np.diff(stamped) >= 0)) if stamped else None,
        }
    return stats


def synchronized_frames(bag_path, image_topic="/camera/image_raw", info_topic="/camera/camera_info",
                        cloud_topic="/lidar/points", extra_topics=()) -> tuple[TfBuffer, list[dict]]:
    """A TF buffer filled from the bag, and frames whose image, CameraInfo, cloud (and extras) share
    one header stamp, as deserialised messages keyed by topic."""
    tf_buffer = TfBuffer(cache_time_s=1e6)  # a bag is read after the fact: keep all of it
    by_stamp: dict[int, dict] = defaultdict(dict)
    wanted = {image_topic, info_topic, cloud_topic, *extra_topics}
    with BagReader(bag_path) as reader:
        for message in reader.messages():
            if message.topic in ("/tf", "/tf_static"):
                for transform in message.deserialize().transforms:
                    if message.topic == "/tf_static":
                        tf_buffer.set_transform_static(transform, "bag")
                    else:
                        tf_buffer.set_transform(transform, "bag")
            elif message.topic in wanted:
                msg = message.deserialize()
                by_stamp[conversions.stamp_to_ns(msg.header.stamp)][message.topic] = msg
    frames = [dict(v, stamp_ns=k) for k, v in sorted(by_stamp.items()) if wanted <= v.keys()]
    return tf_buffer, frames


def lidar_overlay(frame: dict, tf_buffer: TfBuffer, image_topic="/camera/image_raw",
                  info_topic="/camera/camera_info", cloud_topic="/lidar/points") -> np.ndarray:
    """The camera image with LiDAR points drawn in, coloured by range, using the bag's extrinsics."""
    import cv2

    image = conversions.image_msg_to_rgb(frame[image_topic]).copy()
    camera = conversions.camera_info_to_model(frame[info_topic])
    cloud = frame[cloud_topic]
    T_cam_lidar = tf_buffer.lookup_matrix(frame[image_topic].header.frame_id, cloud.header.frame_id,
                                          frame["stamp_ns"])
    xyz = conversions.pointcloud2_to_xyz(cloud, dtype=np.float64)
    points_cam = (T_cam_lidar[:3, :3] @ xyz.T).T + T_cam_lidar[:3, 3]
    u, v, depth, _ = project_to_pixels(points_cam, camera.K, camera.width, camera.height)
    if len(depth):
        scaled = np.clip((depth - depth.min()) / max(np.ptp(depth), 1e-6) * 255, 0, 255).astype(np.uint8)
        colours = cv2.applyColorMap(scaled.reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)[:, ::-1]
        image[v, u] = colours
    return image


def save_overlay_sheet(images: list[np.ndarray], path: Path, columns: int = 3) -> None:
    """A grid of RGB images as one PNG."""
    import cv2

    if not images:
        raise ValueError("no images to save")
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.zeros((rows * h, columns * w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sheet[:, :, ::-1]):
        raise OSError(f"could not write {path}")
