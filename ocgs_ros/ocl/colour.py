"""ZCA colour whitening for GOCL: the colour space its reconstruction error (and optionally its
encoder input) lives in.

The transform is ``W (rgb - mean)`` with ``W = s * C^(-1/2)`` (``C`` = the training pixels' RGB
covariance): colour axes become uncorrelated and equally varied, so a difference along a weak axis
(a yellow object on a brown table differs almost only in blue) costs as much as one along the
dominant brightness axis. ``s = sqrt(trace(C) / 3)`` keeps the total colour variance of RGB, so
a per-value MSE keeps its scale and the loss weights keep their meaning (see ocl/losses.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Eigenvalues of C below this are floored: a (near-)constant colour axis would otherwise get an
# unbounded gain and amplify quantisation noise.
MIN_EIGENVALUE = 1e-6


def fit_colour_whitening(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [3], matrix [3, 3])`` of the variance-preserving ZCA transform of ``pixels [N, 3]``."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    if pixels.shape[0] < 2 or not np.isfinite(pixels).all():
        raise ValueError(f"need >= 2 finite RGB pixels to fit a colour whitening, got {pixels.shape[0]}")
    mean = pixels.mean(axis=0)
    covariance = np.cov(pixels, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.maximum(eigenvalues, MIN_EIGENVALUE)
    matrix = eigenvectors @ np.diag(eigenvalues ** -0.5) @ eigenvectors.T
    matrix *= np.sqrt(np.trace(covariance) / 3.0)
    return mean.astype(np.float32), matrix.astype(np.float32)


class ColourWhitening(nn.Module):
    """``[B, 3, H, W]`` -> ``W (x - mean)`` per pixel; the identity until :meth:`set`. Both are
    buffers, so a checkpoint carries the fitted transform."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("matrix", torch.eye(3))

    @torch.no_grad()
    def set(self, mean: np.ndarray, matrix: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.matrix.copy_(torch.as_tensor(matrix, dtype=self.matrix.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        centred = images - self.mean.to(images.dtype)[None, :, None, None]
        return torch.einsum("ij,bjhw->bihw", self.matrix.to(images.dtype), centred)
