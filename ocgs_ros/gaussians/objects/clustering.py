"""Radius-graph connectivity of Gaussian centres, shared by extraction and the ground-level split."""
from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def connected_labels(points: np.ndarray, radius: float) -> np.ndarray:
    """Connected-component label of each of ``points [P,3]`` when points closer than ``radius`` are linked."""
    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    return connected_components(graph, directed=False)[1]
