"""sensor_msgs/Image <-> numpy with the ROS 2 ``cv_bridge`` Python API and semantics.

A ROS 2 cv_bridge cannot be installed from PyPI (the ``cv-bridge`` wheel there is ROS 1's and
breaks on numpy 2), so :class:`CvBridge` re-implements the public behaviour of
``cv_bridge.CvBridge``: 1-channel images come back 2-D, multi-channel ones ``[H, W, C]``, row
padding (``step``) and big-endian data are handled, results are contiguous native-endian copies,
and ``desired_encoding`` conversions follow cv_bridge's rules (colour <-> colour via
``cv2.cvtColor``; 8 <-> 16 bit depth changes scale by 255/65535; colour <-> non-colour only
between equal channel counts). :func:`get_cv_bridge` hands out the real one when it works.

The convenience functions at the bottom produce the core's contracts (docs/conventions.md):
uint8 RGB ``[H, W, 3]`` images and float32 metre depth. They check every message first
(:func:`check_image_message`) and reject a malformed one with
:class:`~ocgs_ros.mapping.errors.FrameRejected` naming the problem (``image_empty``,
``image_encoding``, ``depth_step``, ...), so nothing malformed reaches numpy or OpenCV.
"""
from __future__ import annotations

import array
import functools
import re
import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros.conversions.transforms import to_stamp


class CvBridgeError(TypeError):
    """Raised when a conversion is impossible; same name and base class as ``cv_bridge.CvBridgeError``."""


# OpenCV depth names <-> numpy dtypes (cv_bridge's "8UC3"-style type names).
_CV_DEPTH_TO_DTYPE = {
    "8U": np.dtype(np.uint8), "8S": np.dtype(np.int8), "16U": np.dtype(np.uint16), "16S": np.dtype(np.int16),
    "32S": np.dtype(np.int32), "32F": np.dtype(np.float32), "64F": np.dtype(np.float64),
}
_DTYPE_NAME_TO_CV_DEPTH = {dt.name: depth for depth, dt in _CV_DEPTH_TO_DTYPE.items()}
_GENERIC_ENCODING = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([0-9]+)$")
_MAX_CHANNELS = 512  # OpenCV's CV_CN_MAX


@dataclass(frozen=True)
class _ColourEncoding:
    layout: str  # "GRAY", "RGB", "BGR", "RGBA", "BGRA"
    dtype: np.dtype
    channels: int


_COLOUR_ENCODINGS = {
    "mono8": _ColourEncoding("GRAY", np.dtype(np.uint8), 1),
    "mono16": _ColourEncoding("GRAY", np.dtype(np.uint16), 1),
    "rgb8": _ColourEncoding("RGB", np.dtype(np.uint8), 3),
    "bgr8": _ColourEncoding("BGR", np.dtype(np.uint8), 3),
    "rgba8": _ColourEncoding("RGBA", np.dtype(np.uint8), 4),
    "bgra8": _ColourEncoding("BGRA", np.dtype(np.uint8), 4),
    "rgb16": _ColourEncoding("RGB", np.dtype(np.uint16), 3),
    "bgr16": _ColourEncoding("BGR", np.dtype(np.uint16), 3),
    "rgba16": _ColourEncoding("RGBA", np.dtype(np.uint16), 4),
    "bgra16": _ColourEncoding("BGRA", np.dtype(np.uint16), 4),
}

# (source layout, target layout) -> cv2 colour conversion code.
_COLOUR_CODES = {
    ("GRAY", "RGB"): cv2.COLOR_GRAY2RGB, ("GRAY", "BGR"): cv2.COLOR_GRAY2BGR,
    ("GRAY", "RGBA"): cv2.COLOR_GRAY2RGBA, ("GRAY", "BGRA"): cv2.COLOR_GRAY2BGRA,
    ("RGB", "GRAY"): cv2.COLOR_RGB2GRAY, ("RGB", "BGR"): cv2.COLOR_RGB2BGR,
    ("RGB", "RGBA"): cv2.COLOR_RGB2RGBA, ("RGB", "BGRA"): cv2.COLOR_RGB2BGRA,
    ("BGR", "GRAY"): cv2.COLOR_BGR2GRAY, ("BGR", "RGB"): cv2.COLOR_BGR2RGB,
    ("BGR", "RGBA"): cv2.COLOR_BGR2RGBA, ("BGR", "BGRA"): cv2.COLOR_BGR2BGRA,
    ("RGBA", "GRAY"): cv2.COLOR_RGBA2GRAY, ("RGBA", "RGB"): cv2.COLOR_RGBA2RGB,
    ("RGBA", "BGR"): cv2.COLOR_RGBA2BGR, ("RGBA", "BGRA"): cv2.COLOR_RGBA2BGRA,
    ("BGRA", "GRAY"): cv2.COLOR_BGRA2GRAY, ("BGRA", "RGB"): cv2.COLOR_BGRA2RGB,
    ("BGRA", "BGR"): cv2.COLOR_BGRA2BGR, ("BGRA", "RGBA"): cv2.COLOR_BGRA2RGBA,
}


def encoding_to_dtype_with_channels(encoding: str) -> tuple[np.dtype, int]:
    """Encoding string -> (numpy dtype, channel count); unknown encodings raise :class:`CvBridgeError`."""
    colour = _COLOUR_ENCODINGS.get(encoding)
    if colour is not None:
        return colour.dtype, colour.channels
    match = _GENERIC_ENCODING.match(encoding or "")
    if match is not None and 1 <= int(match.group(2)) <= _MAX_CHANNELS:
        return _CV_DEPTH_TO_DTYPE[match.group(1)], int(match.group(2))
    raise CvBridgeError(
        f"unsupported image encoding {encoding!r}: expected one of {sorted(_COLOUR_ENCODINGS)} "
        "or an OpenCV type such as 8UC3, 16UC1, 32FC1"
    )


def _cv_type_name(dtype: np.dtype, channels: int) -> str:
    depth = _DTYPE_NAME_TO_CV_DEPTH.get(np.dtype(dtype).name)
    if depth is None:
        raise CvBridgeError(
            f"image dtype {np.dtype(dtype)} has no OpenCV/ROS equivalent "
            "(use uint8, int8, uint16, int16, int32, float32 or float64)"
        )
    return f"{depth}C{channels}"


def _bit_depth(dtype: np.dtype) -> int:
    return np.dtype(dtype).itemsize * 8


def _convert_depth(image: np.ndarray, target: np.dtype, source_bits: int) -> np.ndarray:
    """OpenCV ``convertTo`` semantics: 8 <-> 16 bit integer scaling, rounding and saturation."""
    target = np.dtype(target)
    if image.dtype == target:
        return image
    target_bits = _bit_depth(target)
    scale = 1.0
    if source_bits == 8 and target_bits == 16:
        scale = 65535.0 / 255.0
    elif source_bits == 16 and target_bits == 8:
        scale = 255.0 / 65535.0
    values = image.astype(np.float64) * scale
    if target.kind in "iu":
        info = np.iinfo(target)
        values = np.clip(np.rint(np.nan_to_num(values, nan=0.0)), info.min, info.max)
    return values.astype(target)


def _convert_encoding(image: np.ndarray, source: str, target: str) -> np.ndarray:
    """cv_bridge's conversion rules between two encodings (both already validated)."""
    src_dtype, src_channels = encoding_to_dtype_with_channels(source)
    dst_dtype, dst_channels = encoding_to_dtype_with_channels(target)
    src_colour, dst_colour = _COLOUR_ENCODINGS.get(source), _COLOUR_ENCODINGS.get(target)
    if src_colour is None and dst_colour is not None:
        raise CvBridgeError(f"[{source}] is not a color format but [{target}] is; the conversion does not make sense")
    if src_colour is None or dst_colour is None:
        if src_channels != dst_channels:
            raise CvBridgeError(f"[{source}] and [{target}] do not have the same number of channels")
        return _convert_depth(image, dst_dtype, _bit_depth(src_dtype))
    if src_colour.layout != dst_colour.layout:
        image = cv2.cvtColor(image, _COLOUR_CODES[(src_colour.layout, dst_colour.layout)])
    return _convert_depth(image, dst_dtype, _bit_depth(src_dtype))


def _buffer_as_uint8(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)


class CvBridge:
    """Drop-in for ROS 2 ``cv_bridge.CvBridge`` (Image and CompressedImage conversions)."""

    def encoding_to_dtype_with_channels(self, encoding: str) -> tuple[str, int]:
        """As cv_bridge: (numpy dtype name, channel count) for an encoding."""
        dtype, channels = encoding_to_dtype_with_channels(encoding)
        return dtype.name, channels

    def imgmsg_to_cv2(self, img_msg: Image, desired_encoding: str = "passthrough") -> np.ndarray:
        """Image message -> contiguous native-endian array, ``[H, W]`` for one channel else ``[H, W, C]``.

        ``desired_encoding="passthrough"`` keeps the message's data; any other encoding converts
        (e.g. ``"bgr8"`` for OpenCV, ``"rgb8"`` for the core). Raises :class:`CvBridgeError` for
        unknown encodings, impossible conversions and data/step sizes that do not fit.
        """
        dtype, channels = encoding_to_dtype_with_channels(img_msg.encoding)
        height, width, step = int(img_msg.height), int(img_msg.width), int(img_msg.step)
        row_bytes = width * channels * dtype.itemsize
        if step < row_bytes:
            raise CvBridgeError(
                f"image step {step} is smaller than width * channels * bytes = {width} * {channels} * "
                f"{dtype.itemsize} = {row_bytes} for encoding {img_msg.encoding!r}"
            )
        buffer = _buffer_as_uint8(img_msg.data)
        if buffer.size != height * step:
            raise CvBridgeError(
                f"image data has {buffer.size} bytes but height * step = {height} * {step} = {height * step}"
            )
        wire_dtype = dtype.newbyteorder(">" if img_msg.is_bigendian else "<")
        shape = (height, width) if channels == 1 else (height, width, channels)
        strides = (step, dtype.itemsize) if channels == 1 else (step, channels * dtype.itemsize, dtype.itemsize)
        image = np.empty(shape, dtype=dtype)  # contiguous, native byte order, never aliasing the message
        if height * width:
            image[...] = np.ndarray(shape=shape, dtype=wire_dtype, buffer=buffer, strides=strides)
        if desired_encoding == "passthrough" or desired_encoding == img_msg.encoding:
            return image
        encoding_to_dtype_with_channels(desired_encoding)  # unknown target -> CvBridgeError naming it
        return _convert_encoding(image, img_msg.encoding, desired_encoding)

    def cv2_to_imgmsg(self, cvim: np.ndarray, encoding: str = "passthrough", header=None) -> Image:
        """Array ``[H, W]`` or ``[H, W, C]`` -> Image message.

        ``"passthrough"`` names the OpenCV type (``"8UC3"``); any other encoding must have the
        array's dtype and channel count, otherwise :class:`CvBridgeError`.
        """
        if not isinstance(cvim, (np.ndarray, np.generic)):
            raise TypeError("Your input type is not a numpy array")
        if cvim.ndim not in (2, 3):
            raise CvBridgeError(f"an image is [H, W] or [H, W, C], got shape {cvim.shape}")
        channels = 1 if cvim.ndim == 2 else int(cvim.shape[2])
        cv_type = _cv_type_name(cvim.dtype, channels)
        msg = Image()
        if header is not None:
            msg.header = header
        msg.height, msg.width = int(cvim.shape[0]), int(cvim.shape[1])
        if encoding == "passthrough":
            msg.encoding = cv_type
        else:
            dtype, enc_channels = encoding_to_dtype_with_channels(encoding)
            if _cv_type_name(dtype, enc_channels) != cv_type:
                raise CvBridgeError(f"encoding specified as {encoding}, but image has incompatible type {cv_type}")
            msg.encoding = encoding
        byteorder = cvim.dtype.byteorder
        msg.is_bigendian = byteorder == ">" or (byteorder == "=" and sys.byteorder == "big")
        data = array.array("B")
        data.frombytes(cvim.tobytes())
        msg.data = data
        msg.step = msg.width * channels * cvim.dtype.itemsize
        return msg

    def compressed_imgmsg_to_cv2(self, cmprs_img_msg: CompressedImage, desired_encoding: str = "passthrough") -> np.ndarray:
        """CompressedImage (jpeg/png) -> array as decoded by OpenCV (BGR order for colour)."""
        buffer = _buffer_as_uint8(cmprs_img_msg.data)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
        if image is None:
            raise CvBridgeError(f"could not decode CompressedImage with format {cmprs_img_msg.format!r}")
        if desired_encoding == "passthrough":
            return image
        channels = 1 if image.ndim == 2 else image.shape[2]
        bits = "8" if image.dtype == np.uint8 else "16"
        source = {1: f"mono{bits}", 3: f"bgr{bits}", 4: f"bgra{bits}"}.get(channels)
        if source is None or source not in _COLOUR_ENCODINGS:
            raise CvBridgeError(f"decoded image has {channels} channels of {image.dtype}; cannot convert to {desired_encoding}")
        encoding_to_dtype_with_channels(desired_encoding)
        return image if source == desired_encoding else _convert_encoding(image, source, desired_encoding)

    def cv2_to_compressed_imgmsg(self, cvim: np.ndarray, dst_format: str = "jpg") -> CompressedImage:
        """Array (BGR order for colour, as OpenCV writes files) -> CompressedImage of ``dst_format``."""
        if not isinstance(cvim, (np.ndarray, np.generic)):
            raise TypeError("Your input type is not a numpy array")
        ok, encoded = cv2.imencode("." + dst_format, cvim)
        if not ok:
            raise CvBridgeError(f"OpenCV could not encode a {cvim.dtype} {cvim.shape} image as {dst_format!r}")
        msg = CompressedImage()
        msg.format = dst_format
        data = array.array("B")
        data.frombytes(encoded.tobytes())
        msg.data = data
        return msg


@functools.lru_cache(maxsize=1)
def _real_cv_bridge_class():
    """The ROS 2 ``cv_bridge.CvBridge`` class if it imports and round-trips a tiny image, else None.

    PyPI's ``cv-bridge`` is ROS 1's: it imports but fails at use with numpy 2 or produces ROS 1
    messages, so we test behaviour rather than trusting the import.
    """
    try:
        import cv_bridge

        bridge = cv_bridge.CvBridge()
        rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        msg = bridge.cv2_to_imgmsg(rgb, encoding="rgb8")
        if not isinstance(msg, Image):
            return None
        if not np.array_equal(np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="bgr8")), rgb[:, :, ::-1]):
            return None
        return cv_bridge.CvBridge
    except Exception:  # noqa: BLE001 - any failure means "not usable", and we fall back
        return None


def get_cv_bridge():
    """A working ROS 2 ``cv_bridge.CvBridge()`` when installed, otherwise this module's :class:`CvBridge`."""
    real = _real_cv_bridge_class()
    return real() if real is not None else CvBridge()


# --------------------------------------------------------------------------------------------
# Core-contract conveniences
# --------------------------------------------------------------------------------------------
_BRIDGE = CvBridge()
_DEPTH_MM_ENCODINGS = ("16UC1", "mono16")
_DEPTH_M_ENCODINGS = ("32FC1",)


#: Largest accepted image side: 16384 px holds any camera sold today (and OpenCV's remap and warp
#: functions stop at 32767); beyond it a message is corrupt, not a picture.
MAX_IMAGE_SIDE = 16384


def check_image_message(msg: Image, encodings, what: str = "image") -> tuple[np.dtype, int]:
    """Validate an Image's layout before any array is built from it -> (dtype, channels).

    Raises :class:`FrameRejected` with reason ``<what>_empty`` (zero width or height),
    ``<what>_too_large`` (a side over :data:`MAX_IMAGE_SIDE`), ``<what>_encoding`` (not one of
    ``encodings``), ``<what>_step`` (step shorter than a row of pixels) or ``<what>_data_length``
    (data is not height * step bytes).
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    label = f"{what} ({msg.encoding!r}, {width}x{height})"
    if width == 0 or height == 0:
        raise FrameRejected(f"{what}_empty", f"{label} has no pixels")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise FrameRejected(f"{what}_too_large", f"{label} exceeds {MAX_IMAGE_SIDE} px per side")
    if msg.encoding not in encodings:
        raise FrameRejected(f"{what}_encoding", f"{label}: encoding must be one of {sorted(encodings)}")
    dtype, channels = encoding_to_dtype_with_channels(msg.encoding)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise FrameRejected(f"{what}_step", f"{label}: step {step} is shorter than a row of pixels "
                                            f"({width} * {channels} * {dtype.itemsize} = {row_bytes} bytes)")
    if len(msg.data) != height * step:
        raise FrameRejected(f"{what}_data_length", f"{label}: data has {len(msg.data)} bytes, "
                                                   f"height * step = {height} * {step} = {height * step}")
    return dtype, channels


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """Any colour/mono Image (rgb/bgr/rgba/bgra 8/16 bit, mono8/16) -> uint8 RGB ``[H, W, 3]``.

    Mono is replicated into the three channels; 16-bit data is scaled to 8 bits as cv_bridge does.
    A malformed message, or a non-colour encoding (8UC3, 32FC1, ...: their channel meaning is
    unknown), raises :class:`FrameRejected` (see :func:`check_image_message`, ``what="image"``).
    """
    check_image_message(msg, _COLOUR_ENCODINGS, "image")
    return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")


def rgb_to_image_msg(rgb: np.ndarray, frame_id: str, stamp) -> Image:
    """uint8 RGB ``[H, W, 3]`` -> ``rgb8`` Image with the given header."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    msg = _BRIDGE.cv2_to_imgmsg(rgb, encoding="rgb8")
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    return msg


def depth_msg_to_metres(msg: Image) -> np.ndarray:
    """Depth Image -> float32 ``[H, W]`` metres, ``0.0`` = no return (the core's convention).

    ``16UC1``/``mono16`` hold millimetres (REP 118: 0 = invalid); ``32FC1`` holds metres, where
    NaN/inf (REP 118's invalid / out-of-range markers) and negative depths become 0. A malformed
    message raises :class:`FrameRejected` (see :func:`check_image_message`, ``what="depth"``).
    """
    check_image_message(msg, _DEPTH_MM_ENCODINGS + _DEPTH_M_ENCODINGS, "depth")
    if msg.encoding in _DEPTH_MM_ENCODINGS:
        return _BRIDGE.imgmsg_to_cv2(msg).astype(np.float32) * np.float32(1e-3)
    depth = _BRIDGE.imgmsg_to_cv2(msg)
    depth[~(np.isfinite(depth) & (depth >= 0.0))] = 0.0  # no sensor measures a negative depth
    return depth


def metres_to_depth_msg(depth: np.ndarray, frame_id: str, stamp, encoding: str = "32FC1") -> Image:
    """float ``[H, W]`` metres (0 = no return) -> depth Image in ``32FC1`` (metres) or ``16UC1`` (mm).

    For ``16UC1``, depths that do not fit (negative, non-finite, > 65.535 m) become 0 = invalid.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    if encoding == "32FC1":
        image = depth
    elif encoding == "16UC1":
        mm = np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float64) * 1000.0)
        mm[(mm < 0) | (mm > np.iinfo(np.uint16).max)] = 0
        image = mm.astype(np.uint16)
    else:
        raise ValueError(f"depth encoding must be '32FC1' or '16UC1', got {encoding!r}")
    msg = _BRIDGE.cv2_to_imgmsg(image, encoding=encoding)
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    return msg
