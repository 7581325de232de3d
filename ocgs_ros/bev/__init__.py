"""Camera+LiDAR BEV multi-task model and multi-level gradient calibration (no ROS).

Modules: ``config`` (BevConfig presets), ``model`` (BevFusionModel, BevInputs, BevOutputs),
``targets`` (encode/decode CenterPoint targets, circle NMS), ``losses`` (task losses),
``gradcal`` (GradientCalibrator and the task/modality combination rules), ``metrics``
(nuScenes-style mAP, map IoU), ``synthetic`` (shape-valid random batches for tests/timing),
``frames`` (FrameRecord -> model sample, image resizing with K), ``data`` (simulator dataset
adapter), ``nuscenes`` (nuScenes-format reader + writer of simulated scenes), ``checkpoint``,
``inference`` (BevPredictor for the ROS node), and the commands ``train``, ``evaluate``, ``ablation``.
"""
from .config import BOX_CLASSES, MAP_CLASSES, TASKS, BevConfig, GridSpec
from .gradcal import TASK_METHODS, CalibrationStats, GradientCalibrator, combine_task_gradients
from .losses import task_losses
from .metrics import MapIoUMeter, detection_metrics, map_segmentation_metrics
from .model import BevFusionModel, BevInputs, BevOutputs
from .targets import collate_targets, decode_detections, encode_targets

__all__ = [
    "BOX_CLASSES", "MAP_CLASSES", "TASKS", "TASK_METHODS",
    "BevConfig", "GridSpec", "BevFusionModel", "BevInputs", "BevOutputs",
    "GradientCalibrator", "CalibrationStats", "combine_task_gradients",
    "task_losses", "encode_targets", "decode_detections", "collate_targets",
    "detection_metrics", "map_segmentation_metrics", "MapIoUMeter",
]
