"""Fused CPU compositing (``csrc/fused_composite.cpp``): the same result and gradients as
:func:`.compositing.composite_pairs`, one pass per pixel instead of a dozen tensors per pair; and
the expansion of footprint segments into pairs sorted by pixel (a counting sort) that
:mod:`.footprints` uses when it is there.

Built once per machine, at set-up (``scripts/setup_env.sh`` calls :func:`build`), with the
toolchain the package already needs (g++ and ninja) through ``torch.utils.cpp_extension``: nothing
is downloaded. The build folder under torch's
extension directory (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) is named by a
hash of the source, so two checkouts or versions never rebuild each other's module.

A process that maps never compiles: it loads the built module if it is there and otherwise uses the
vectorised torch path (:func:`fused_status` says why, logged once). Compiling in a node would stall
its first frame for a minute, and torch's build lock, left behind by a process killed mid-build,
would make every later process wait on it for ever.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.utils import cpp_extension

_SOURCE = Path(__file__).with_name("csrc") / "fused_composite.cpp"
_EXTRA_CFLAGS = ["-O3", "-fopenmp-simd"]
#: a build lock older than this is a killed build's, not a running one's (a build takes ~1.5 min)
_STALE_LOCK_S = 600.0
_log = logging.getLogger(__name__)
_lock = threading.Lock()
_state: dict = {}


def _module_name() -> str:
    """Named by the source's hash: a changed source is another module in another folder."""
    digest = hashlib.sha1(_SOURCE.read_bytes() + " ".join(_EXTRA_CFLAGS).encode()).hexdigest()[:12]
    return f"ocgs_fused_composite_{digest}"


def _build_directory(name: str) -> Path:
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()) / name


def build() -> Path:
    """Compile the extension (set-up time; idempotent: ninja rebuilds nothing when it is current)
    and return the built module's path. A build lock older than ``_STALE_LOCK_S`` is removed first."""
    name = _module_name()
    folder = _build_directory(name)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / "lock"
    if stale.exists() and time.time() - stale.stat().st_mtime > _STALE_LOCK_S:
        stale.unlink(missing_ok=True)
    cpp_extension.load(name, [str(_SOURCE)], extra_cflags=_EXTRA_CFLAGS, build_directory=str(folder), verbose=False)
    return folder / f"{name}.so"


def _load_built():
    """The built module, or None with the reason."""
    name = _module_name()
    folder = _build_directory(name)
    library = folder / f"{name}.so"
    if not library.is_file():
        return None, f"not built (run scripts/setup_env.sh, or python -c 'import {__name__} as f; f.build()')"
    if (folder / "lock").exists():
        return None, f"a build is in progress or was killed ({folder / 'lock'})"
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, "compiled C++ extension loaded"


def _extension():
    """The compiled module, or None (the reason in ``_state["reason"]``)."""
    with _lock:
        if "module" not in _state:
            try:
                _state["module"], _state["reason"] = _load_built()
            except Exception as exc:  # noqa: BLE001 - any load failure means: use the torch path
                _state["module"] = None
                _state["reason"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            if _state["module"] is None:
                _state["reason"] = f"C++ extension unavailable: {_state['reason']}"
                _log.warning("fused CPU compositing off, vectorised torch path used: %s", _state["reason"])
        return _state["module"]


def fused_status() -> tuple[bool, str]:
    """``(usable, reason)``; the first call loads the built extension (it never builds)."""
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
