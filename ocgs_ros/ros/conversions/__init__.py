"""ROS message <-> numpy conversions (the only place message layouts are interpreted).

Callers write ``from ocgs_ros.ros import conversions`` and use the names below; the submodules
are ``pointcloud``, ``image``, ``camera_info``, ``transforms``, ``builders``, ``objects`` and
``vision_detections``.
"""
from ocgs_ros.ros.conversions.builders import (
    OCCUPANCY_UNKNOWN,
    boxes_to_marker_array,
    grid_to_occupancy_grid,
    occupancy_grid_to_grid,
    points_to_pointcloud2,
)
from ocgs_ros.ros.conversions.camera_info import (
    PinholeCamera,
    camera_info_to_model,
    make_camera_info,
    undistort_image,
    undistort_points,
)
from ocgs_ros.ros.conversions.image import (
    CvBridge,
    CvBridgeError,
    depth_msg_to_metres,
    encoding_to_dtype_with_channels,
    get_cv_bridge,
    image_msg_to_rgb,
    metres_to_depth_msg,
    rgb_to_image_msg,
)
from ocgs_ros.ros.conversions.objects import (
    InstanceBoxes,
    bev_to_detection_array,
    codebook_color,
    detection_array_to_bev,
    detection_markers,
    instance_markers,
    instances_to_boxes,
    map_object_to_msg,
    map_objects_to_msg,
    object_markers,
)
from ocgs_ros.ros.conversions.pointcloud import (
    array_to_pointcloud2,
    dtype_to_pointfields,
    pack_rgb,
    pointcloud2_to_array,
    pointcloud2_to_xyz,
    pointcloud2_to_xyz_rgb,
    pointfields_to_dtype,
    unpack_rgb,
    xyz_to_pointcloud2,
)
from ocgs_ros.ros.conversions.transforms import (
    check_transform_matrix,
    invert_transform,
    make_transform,
    matrix_to_pose,
    matrix_to_pose_stamped,
    matrix_to_quaternion_xyzw,
    matrix_to_transform,
    matrix_to_transform_stamped,
    normalize_quaternion,
    ns_to_stamp,
    pose_stamped_to_matrix,
    pose_to_matrix,
    quaternion_xyzw_to_matrix,
    rpy_to_matrix,
    stamp_to_ns,
    time_to_ns,
    to_stamp,
    transform_from_param_list,
    transform_from_xyz_rpy,
    transform_stamped_to_matrix,
    transform_to_matrix,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)
from ocgs_ros.ros.conversions.vision_detections import bev_to_vision_detections

__all__ = [
    # pointcloud
    "array_to_pointcloud2", "dtype_to_pointfields", "pack_rgb", "pointcloud2_to_array", "pointcloud2_to_xyz",
    "pointcloud2_to_xyz_rgb", "pointfields_to_dtype", "unpack_rgb", "xyz_to_pointcloud2",
    # image
    "CvBridge", "CvBridgeError", "depth_msg_to_metres", "encoding_to_dtype_with_channels", "get_cv_bridge",
    "image_msg_to_rgb", "metres_to_depth_msg", "rgb_to_image_msg",
    # camera info
    "PinholeCamera", "camera_info_to_model", "make_camera_info", "undistort_image", "undistort_points",
    # transforms
    "check_transform_matrix", "invert_transform", "make_transform", "matrix_to_pose", "matrix_to_pose_stamped",
    "matrix_to_quaternion_xyzw", "matrix_to_transform", "matrix_to_transform_stamped", "normalize_quaternion",
    "ns_to_stamp", "pose_stamped_to_matrix", "pose_to_matrix", "quaternion_xyzw_to_matrix", "rpy_to_matrix",
    "stamp_to_ns", "time_to_ns", "to_stamp", "transform_from_param_list", "transform_from_xyz_rpy",
    "transform_stamped_to_matrix", "transform_to_matrix", "wxyz_to_xyzw", "xyzw_to_wxyz",
    # builders
    "OCCUPANCY_UNKNOWN", "boxes_to_marker_array", "grid_to_occupancy_grid", "occupancy_grid_to_grid",
    "points_to_pointcloud2",
    # typed object / detection outputs
    "InstanceBoxes", "bev_to_detection_array", "codebook_color", "detection_array_to_bev", "detection_markers",
    "instance_markers", "instances_to_boxes", "map_object_to_msg", "map_objects_to_msg", "object_markers",
    # standard vision_msgs output
    "bev_to_vision_detections",
]
