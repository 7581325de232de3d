"""Fused CPU compositing (``csrc/fused_composite.cpp``): the same result and gradients as
:func:`.compositing.composite_pairs`, one pass per pixel instead of a dozen tensors per pair; and
the expansion of footprint segments into pairs sorted by pixel (a counting sort) that
:mod:`.footprints` uses when it is there.

The C++ source is compiled once per machine with the toolchain the package already needs (g++ and
ninja, see README) through ``torch.utils.cpp_extension`` — nothing is downloaded — and cached
under torch's extension directory (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``);
a changed source is rebuilt. When it cannot be built or loaded, :func:`fused_status` says why (logged
once) and :func:`.compositing.composite_pairs` keeps using the vectorised torch path.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from torch import Tensor
from torch.utils import cpp_extension

_SOURCE = Path(__file__).with_name("csrc") / "fused_composite.cpp"
_EXTENSION_NAME = "ocgs_fused_composite"
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {}


def _extension():
    """The compiled module, or None (the reason in ``_state["reason"]``)."""
    with _lock:
        if "module" not in _state:
            try:
                _state["module"] = cpp_extension.load(_EXTENSION_NAME, [str(_SOURCE)],
                                                      extra_cflags=["-O3", "-fopenmp-simd"], verbose=False)
                _state["reason"] = "compiled C++ extension loaded"
            except Exception as exc:  # noqa: BLE001 - any build/load failure means: use the torch path
                _state["module"] = None
                _state["reason"] = f"C++ extension unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                _log.warning("fused CPU compositing off, vectorised torch path used: %s", _state["reason"])
        return _state["module"]


def fused_status() -> tuple[bool, str]:
    """``(usable, reason)``; the first call builds or loads the extension."""
    module = _extension()
    return module is not None, _state["reason"]


class _FusedComposite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, features: Tensor, gaussian_ids: Tensor, row_starts: Tensor, width: int,
                height: int):
        out, alpha = _extension().forward(table, features, gaussian_ids, row_starts, width, height)
        ctx.save_for_backward(table, features, gaussian_ids, row_starts)
        ctx.image_size = (width, height)
        return out, alpha

    @staticmethod
    def backward(ctx, grad_out: Tensor, grad_alpha: Tensor):
        table, features, gaussian_ids, row_starts = ctx.saved_tensors
        grad_table, grad_features = _extension().backward(table, features, gaussian_ids, row_starts,
                                                          *ctx.image_size, grad_out, grad_alpha)
        return grad_table, grad_features, None, None, None, None


def expand_segments_by_pixel(segment_gaussian: Tensor, pixel_start: Tensor, length: Tensor, num_pixels: int,
                             index_dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
    """Pairs ``(gaussian_ids, pixel_ids)`` of footprint segments (segment ``s``: pixels
    ``pixel_start[s] ... + length[s] - 1`` of Gaussian row ``segment_gaussian[s]``, segments front to
    back), sorted by pixel and front to back within one; None when the extension is unavailable or
    the tensors are not on the CPU (the caller expands and sorts)."""
    if pixel_start.device.type != "cpu" or _extension() is None:
        return None
    gaussian_ids, pixel_ids = _extension().expand_segments_by_pixel(
        segment_gaussian.long(), pixel_start.long(), length.long(), int(num_pixels), index_dtype == torch.int32)
    return gaussian_ids, pixel_ids


def fused_composite(gaussian_table: Tensor, features: Tensor, gaussian_ids: Tensor, row_starts: Tensor, width: int,
                    height: int) -> tuple[Tensor, Tensor]:
    """``gaussian_table [6, G]`` (mean x, mean y, conic a, b, c, opacity), ``features [G, X]``,
    pairs ``gaussian_ids [M]`` in CSR order over pixels (``row_starts [P+1]`` int64) → ``(features
    [P, X], alpha [P])``; differentiable in the table and the features."""
    return _FusedComposite.apply(gaussian_table.contiguous(), features.contiguous(), gaussian_ids.contiguous(),
                                 row_starts.contiguous(), int(width), int(height))
