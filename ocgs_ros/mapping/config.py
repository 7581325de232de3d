"""The one configuration of the object-mapping pipeline: every default the node, the evaluator and
the benchmarks run with lives here or in the nested core configs (``ocgs_ros.settings``: fields
declared with ``setting()`` are the user-facing ones, ROS parameters under dotted names such as
``view.process_width`` or ``mapper.iterations_per_frame``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ocgs_ros.gaussians.map import GaussianMapConfig
from ocgs_ros.gaussians.mapper import MapperConfig
from ocgs_ros.gaussians.objects import ObjectConfig
from ocgs_ros.image_fit import DEFAULT_FIT, FIT_POLICIES
from ocgs_ros.settings import non_negative, one_of, positive, setting, unit_interval

#: values of ``gocl.checkpoint`` that name no file
SHIPPED_CHECKPOINT = "shipped"
NO_CHECKPOINT = "none"


def _checkpoint_exists(value: str) -> str | None:
    if value in ("", SHIPPED_CHECKPOINT, NO_CHECKPOINT):
        return None
    return None if Path(value).is_file() else f"file {value!r} not found"


@dataclass(frozen=True)
class ViewConfig:
    """What of each frame the map is built from."""

    process_width: int = setting(160, "Image width the map is built at (0 = camera resolution).", non_negative)
    process_height: int = setting(120, "Image height the map is built at (0 = camera resolution).", non_negative)
    max_points: int = setting(6000, "LiDAR points per frame inside the camera view (random subset; 0 = all).",
                              non_negative)
    # One policy from the camera to the view and from the view to GOCL's square input, so no
    # stage distorts the image (ocgs_ros/image_fit.py). For the view, letterbox keeps the whole
    # camera image scaled to fit inside the view size without adding bars: bar pixels are seen by
    # no camera ray, and the mapper would learn black Gaussians there.
    fit: str = setting(DEFAULT_FIT, "How an image of another aspect ratio reaches the view size and GOCL's input: "
                                    "'crop' (centre-crop) or 'letterbox' (whole image, scaled to fit).",
                       one_of(*FIT_POLICIES))

    def __post_init__(self):
        if bool(self.process_width) != bool(self.process_height):
            raise ValueError(f"ViewConfig: set both process_width and process_height, or neither (0); got "
                             f"{self.process_width}x{self.process_height}")


@dataclass(frozen=True)
class GoclConfig:
    """The identity source: the GOCL segmenter and how its per-pixel distributions are read."""

    checkpoint: str = setting(SHIPPED_CHECKPOINT, "GOCL checkpoint: a path, 'shipped' (ocgs_ros.models.GOCL_TABLETOP), "
                                                  "or 'none' (map without identities).", _checkpoint_exists)
    mask_temperature: float = setting(0.5, "GOCL soft-mask temperature (below 1 sharpens; see ocl/segment.py).",
                                      positive)
    flip_average: bool = setting(True, "Average GOCL's per-pixel distributions with those of the mirror image "
                                       "(a second GOCL pass; steadier identities, see ocl/segment.py).")
    num_codebook_entries: int = setting(32, "Codebook size when gocl.checkpoint is 'none' (else the model's).",
                                        positive)


@dataclass(frozen=True)
class MappingConfig:
    """Everything the pipeline does with a frame. ``map.num_codebook_entries`` is not a setting: it
    is the identity source's (the GOCL model's codebook, or ``gocl.num_codebook_entries``)."""

    view: ViewConfig = field(default_factory=ViewConfig)
    gocl: GoclConfig = field(default_factory=GoclConfig)
    map: GaussianMapConfig = field(default_factory=GaussianMapConfig)
    mapper: MapperConfig = field(default_factory=MapperConfig)
    objects: ObjectConfig = field(default_factory=ObjectConfig)
    min_object_confidence: float = setting(0.0, "Publish objects with at least this confidence.", unit_interval)
    # Live frames only (the node): extraction runs in a background thread on a copy of the map, its
    # cost grows with the map and the objects, and its result changes slowly; a frame's update
    # carries the newest finished extraction. The gap is also at least the last extraction's
    # duration, so extraction never takes more than half of the time. Offline callers extract
    # after every frame (docs/mapping_speed.md). Off (0) by default: the extraction is mostly
    # Python under the GIL, and with it running in the background the executor's callbacks starved
    # at shutdown (test_shutdown's second-SIGINT case failed 4 times out of 4: a callback still in
    # flight when the nodes were destroyed); until extraction releases the GIL (or runs in its own
    # process), it stays in the frame.
    objects_period_s: float = setting(0.0, "Live frames: extract the objects in the background when this long (s) "
                                           "has passed since the last extraction ended (and at least its duration); "
                                           "each update carries the newest objects. 0 = after every frame, within "
                                           "it (as offline).", non_negative)
    seed: int = setting(0, "Seed of the mapper and of point subsampling.", non_negative)
