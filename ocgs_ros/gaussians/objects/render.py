"""Rendered instance masks of map objects (occlusion by the rest of the map respected)."""
from __future__ import annotations

import numpy as np
import torch

from ocgs_ros.gaussians.map import GaussianMap
from ocgs_ros.gaussians.raster import gsplat_intrinsics, rasterize

from .map_object import MapObject


@torch.no_grad()
def render_instance_mask(mapper_or_map, objects: list[MapObject], viewmat, K, width: int, height: int) -> np.ndarray:
    """Instance mask ``int32 [H, W]`` (0 = background, else object id) of ``objects`` seen from a
    camera: ``viewmat`` world→camera ``[4,4]``, ``K`` project-convention intrinsics ``[3,3]``.

    Each object's Gaussians are rendered as a one-hot channel with the map's own geometry and
    opacity, so occlusion by other Gaussians (table, other objects) is respected; a pixel takes the
    object with the largest compositing weight unless ``1 - sum of object weights`` (everything
    else, transparency included) is larger. ``objects`` must come from this map's current state
    (their ``gaussian_indices`` index it)."""
    gmap = getattr(mapper_or_map, "map", mapper_or_map)
    if not isinstance(gmap, GaussianMap):
        raise TypeError(f"render_instance_mask needs a GaussianMap or an OnlineMapper, got {type(mapper_or_map).__name__}")
    if width <= 0 or height <= 0:
        raise ValueError(f"render_instance_mask: width/height must be > 0, got {width}x{height}")
    mask = np.zeros((height, width), np.int32)
    n = gmap.num_gaussians
    if not objects or n == 0:
        return mask
    for o in objects:
        if len(o.gaussian_indices) and (o.gaussian_indices.max() >= n or o.gaussian_indices.min() < 0):
            raise ValueError(f"object {o.id}: gaussian_indices out of range for a map of {n} Gaussians "
                             f"(re-extract objects after the map changed)")
    onehot = torch.zeros(n, len(objects))
    for column, o in enumerate(objects):
        onehot[torch.as_tensor(o.gaussian_indices), column] = 1.0
    viewmat = torch.as_tensor(np.asarray(viewmat), dtype=torch.float32).reshape(1, 4, 4)
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32).reshape(1, 3, 3)
    weights, _, _ = rasterize(gmap.params["means"], gmap.quats_normalized(), gmap.scales_act(),
                              gmap.opacities_act(), onehot, viewmat, gsplat_intrinsics(K), width, height,
                              render_mode="RGB")
    weights = weights[0]  # [H, W, n_objects]
    rest = 1.0 - weights.sum(dim=-1, keepdim=True)
    label = torch.cat([rest, weights], dim=-1).argmax(dim=-1).numpy()
    ids = np.array([0] + [o.id for o in objects], dtype=np.int32)
    return ids[label]
