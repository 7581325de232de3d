"""What the demo leaves behind, computed from the live nodes of a bring-up (same process) just before
they shut down: the saved object map, a held-out-view image grid, BEV layers + detections, and
figures against the simulator's ground truth.

Ground truth never reaches the nodes; it is read here from the simulator node's world.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ocgs_ros.atomic_io import atomic_save_figure
from ocgs_ros.bev.config import GridSpec
from ocgs_ros.bev.frames import resample_map_layers
from ocgs_ros.bev.metrics import map_segmentation_metrics
from ocgs_ros.camera import scale_intrinsics
from ocgs_ros.evaluation import ground_truth_boxes, match_objects
from ocgs_ros.gaussians.eval_metrics import matched_instance_iou, psnr
from ocgs_ros.mapping.palette import codebook_color
from ocgs_ros.ros import conversions
from ocgs_ros.ros.sim_messages import tabletop_objects_message

#: the held-out view: a quarter orbit in, between two trajectory frames, 8 cm above the rig's path
HELD_OUT_INDEX = 30.5
HELD_OUT_LIFT_M = 0.08


def _colorize(labels: np.ndarray, color_of) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.float64)
    for value in np.unique(labels):
        if value != 0:
            rgb[labels == value] = color_of(int(value))
    return rgb


def _instance_color(value: int) -> np.ndarray:
    return codebook_color(value * 7 + 3)


def held_out_view(world, index: float) -> np.ndarray:
    """``T_world_cam`` of a camera pose the mapper never received."""
    T_world_base = world.pose(index)
    T_world_base = T_world_base.copy()
    T_world_base[2, 3] += HELD_OUT_LIFT_M
    return T_world_base @ world.T_base_camera


def tabletop_report(mapping_node, sim_node, output: Path) -> dict:
    """Save the map, render the held-out grid, and score objects / renders against ground truth."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display in a bring-up
    import matplotlib.pyplot as plt

    world = sim_node.stream.world
    output.mkdir(parents=True, exist_ok=True)
    pipeline = mapping_node.pipeline
    with pipeline.locked():  # one map state for the save, the renders and the scores
        objects = pipeline.objects()
        saved = _saved_paths(pipeline.save(output / "map" / "tabletop"))
        # held-out view at the map's processing resolution
        camera, view = world.config.camera, pipeline.config.view
        width, height = (view.process_width, view.process_height) if view.process_width else (camera.width,
                                                                                               camera.height)
        K = scale_intrinsics(world.K, width / camera.width, height / camera.height)
        index = HELD_OUT_INDEX
        T_world_cam = held_out_view(world, index)
        rendered, entries = pipeline.render(K, T_world_cam, width, height)
        instance = pipeline.render_instances(K, T_world_cam, width, height)
        gaussians = pipeline.stats()["gaussians"]
    truth = world.render_camera(T_world_cam, K, width, height)
    gt_rgb = truth.rgb.astype(np.float64) / 255.0 if truth.rgb.dtype == np.uint8 else truth.rgb
    gt_ids = [int(i) for i in np.unique(truth.instance) if i != 0]
    instance_iou = matched_instance_iou(instance, truth.instance, gt_ids)

    panels = [("simulator RGB (held-out view)", gt_rgb), ("map render", rendered),
              ("map identity (codebook entry)", _colorize(entries + 1, lambda c: codebook_color(c - 1))),
              ("map instances", _colorize(instance, _instance_color)),
              ("ground-truth instances", _colorize(truth.instance, _instance_color))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    grid_path = output / "held_out_view.png"
    atomic_save_figure(fig, grid_path, dpi=120)

    published = conversions.map_objects_to_msg(objects, "map", 0)
    recall = match_objects(ground_truth_boxes(conversions_objects_json(world)),
                           conversions.instances_to_boxes(published.objects), iou_threshold=0.25)
    return {
        "object_recall_iou25": round(recall["recall"], 4),
        "object_precision_iou25": round(recall["precision"], 4) if recall["predicted_objects"] else None,
        "objects_published": recall["predicted_objects"],
        "ground_truth_objects": recall["ground_truth_objects"],
        "best_iou_per_object": recall["best_iou_per_object"],
        "held_out_view": {"trajectory_index": round(float(index), 2), "lift_m": HELD_OUT_LIFT_M,
                          "psnr_db": round(psnr(rendered, gt_rgb), 2),
                          "instance_miou": round(float(np.mean(list(instance_iou.values()))), 4) if instance_iou else None,
                          "image": str(grid_path)},
        "saved_map": saved,
        "gaussians": gaussians,
    }


def _saved_paths(saved) -> dict:
    """``{name: path}`` as text, from what ``save`` returned (a mapping or a single path)."""
    if isinstance(saved, dict):
        return {k: str(v) for k, v in saved.items()}
    return {"map": str(saved)}


def conversions_objects_json(world) -> str:
    """The simulator's ground-truth objects as the /sim/objects payload."""
    return tabletop_objects_message(world.objects).data


def bev_report(bev_node, sim_node, output: Path) -> dict:
    """BEV map layers (prediction vs ground truth) and detections of the last processed frame as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if bev_node.last_prediction is None:
        return {"error": "bev_perception_node processed no frame"}
    stamp_ns, pred = bev_node.last_prediction
    world = sim_node.stream.world
    index = dict(sim_node.recent_frames).get(stamp_ns)
    if index is None:
        return {"error": f"frame at {stamp_ns} ns is not among the simulator's recent frames"}
    frame = world.frame(index)
    g = frame.bev_grid
    source = GridSpec(g.x_min, g.x_max, g.y_min, g.y_max, g.resolution)
    target_layers = resample_map_layers(frame.map_layers.astype(np.float32), source, pred.grid) > 0.5
    metrics = map_segmentation_metrics(pred.map_probs[None], target_layers[None], pred.map_classes)
    keep = pred.scores >= bev_node.settings.min_score

    classes = list(pred.map_classes)
    fig, axes = plt.subplots(2, len(classes) + 1, figsize=(2.6 * (len(classes) + 1), 5.4))
    extent = (pred.grid.y_max, pred.grid.y_min, pred.grid.x_min, pred.grid.x_max)  # x up, y left
    for k, name in enumerate(classes):
        for row, (image, label) in enumerate(((pred.map_probs[k], "predicted"), (target_layers[k], "ground truth"))):
            ax = axes[row, k]
            ax.imshow(image, origin="lower", extent=extent, vmin=0, vmax=1, cmap="viridis")
            ax.set_title(f"{name} ({label})", fontsize=7)
            ax.axis("off")
    for row, (boxes, title, color) in enumerate(((pred.boxes[keep], "detections", "tab:red"),
                                                 (frame.boxes, "ground-truth boxes", "tab:green"))):
        ax = axes[row, -1]
        ax.imshow(pred.map_probs[0], origin="lower", extent=extent, vmin=0, vmax=1, cmap="gray")
        for box in np.asarray(boxes):
            corners = _box_corners(box)
            ax.plot(corners[:, 1], corners[:, 0], color=color, linewidth=0.8)
        ax.set_xlim(pred.grid.y_max, pred.grid.y_min)
        ax.set_ylim(pred.grid.x_min, pred.grid.x_max)
        ax.set_title(f"{title} ({len(boxes)})", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    path = output / "bev.png"
    atomic_save_figure(fig, path, dpi=110)
    return {"image": str(path), "frame_index": index, "detections": int(keep.sum()),
            "ground_truth_boxes": int(len(frame.boxes)), "map": metrics}


def _box_corners(box) -> np.ndarray:
    x, y, _, l, w, _, yaw = (float(v) for v in box[:7])
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[l, w], [-l, w], [-l, -w], [l, -w], [l, w]]) / 2.0
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # JSON has no NaN: a figure that does not exist (a class absent from the frame) is null
        return round(value, 4) if np.isfinite(value) else None
    return value


def plain_json(value):
    """``value`` with numpy scalars/arrays as Python values and NaN/inf as None (strict JSON)."""
    return _plain(value)
