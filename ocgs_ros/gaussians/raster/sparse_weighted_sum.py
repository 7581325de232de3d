"""``out[p] = sum_k w_k * features[col_k]`` over the pairs k of row p, differentiable in ``w`` and
``features`` without ever forming a ``[pairs, channels]`` tensor.

Why a custom backward: the obvious gather-multiply-scatter (``features[col] * w[:, None]`` then
``index_add``) materialises pairs x channels floats, which for a map rendering 64 channels over a few
million pixel-Gaussian pairs is gigabytes, and torch's own autograd for sparse-CSR matmul densifies
the sparse operand. Here the forward is one CSR x dense product and the backward two sparse kernels:
``grad_w = (grad_out @ features^T)`` sampled at the pairs (``torch.sparse.sampled_addmm``) and
``grad_features = W^T @ grad_out`` (``W^T`` rebuilt as CSR by sorting the column indices). Both are exactly the derivatives of the forward; the tests
compare them with autograd on the dense formula.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


def _csr(crow: Tensor, col: Tensor, values: Tensor, num_cols: int) -> Tensor:
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta" — the ops used here are stable on CPU and CUDA.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=(crow.numel() - 1, num_cols),
                                       check_invariants=False)


def _transposed_csr(crow: Tensor, col: Tensor, values: Tensor, num_cols: int) -> Tensor:
    """``W^T`` as CSR, built by one stable sort of the column indices (torch's own CSC @ dense
    path converts through a slower general routine)."""
    rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device, dtype=crow.dtype),
                                   crow[1:] - crow[:-1], output_size=col.numel())
    sorted_col, order = torch.sort(col, stable=True)
    crow_t = torch.zeros(num_cols + 1, dtype=crow.dtype, device=crow.device)
    torch.cumsum(torch.bincount(sorted_col, minlength=num_cols), dim=0, out=crow_t[1:])
    return _csr(crow_t, rows.index_select(0, order), values.index_select(0, order), crow.numel() - 1)


class _SparseWeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, crow: Tensor, col: Tensor, weights: Tensor, features: Tensor) -> Tensor:
        ctx.save_for_backward(crow, col, weights, features)
        if col.numel() == 0:
            return features.new_zeros(crow.numel() - 1, features.shape[1])
        return _csr(crow, col, weights, features.shape[0]) @ features

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        crow, col, weights, features = ctx.saved_tensors
        grad_weights = grad_features = None
        if col.numel() == 0:
            if ctx.needs_input_grad[2]:
                grad_weights = torch.zeros_like(weights)
            if ctx.needs_input_grad[3]:
                grad_features = torch.zeros_like(features)
            return None, None, grad_weights, grad_features
        grad_out = grad_out.contiguous()
        matrix = _csr(crow, col, weights, features.shape[0])
        if ctx.needs_input_grad[2]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sampled = torch.sparse.sampled_addmm(matrix, grad_out, features.t(), beta=0.0)
            grad_weights = sampled.values()
        if ctx.needs_input_grad[3]:
            grad_features = _transposed_csr(crow, col, weights, features.shape[0]) @ grad_out
        return None, None, grad_weights, grad_features


def sparse_weighted_sum(crow: Tensor, col: Tensor, weights: Tensor, features: Tensor) -> Tensor:
    """Rows ``p`` of the result are ``sum(weights[k] * features[col[k]])`` for ``k`` in
    ``crow[p]:crow[p+1]`` (CSR layout: ``crow [R+1]`` and ``col [M]`` both int32 or both int64, ``weights [M]``,
    ``features [F, X]``) → ``[R, X]``. Differentiable in ``weights`` and ``features``."""
    if weights.dtype != features.dtype:
        raise ValueError(f"weights ({weights.dtype}) and features ({features.dtype}) must share a dtype")
    return _SparseWeightedSum.apply(crow, col, weights, features.contiguous())
