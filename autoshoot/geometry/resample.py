"""One-pass resampling of an image under an axis-aligned affine map (scale and shift).

The composite pastes the product from the ORIGINAL photo straight to the final picture, so the
map input px → final px is one scale and one shift per axis. OpenCV has no single call for
that with a prefilter: ``warpAffine`` samples bilinearly (a 1500-px packshot shrunk to half size
aliases) and ``resize`` with ``INTER_AREA`` cannot shift by a fraction of a pixel (resize then
warp is two resamplings). This module builds the exact weights of each output pixel per axis
and applies them as two sparse matrix products:

    shrinking (k < 1)   area: each output pixel is the mean of the input it covers, fractional
                        pixels weighted by the part covered (what ``INTER_AREA`` computes, at
                        any sub-pixel offset)
    growing   (k >= 1)  Lanczos-3 on the input pixel centres

Coordinates: pixel centres at integers, ``out_xy = in_xy * k + t`` per axis (the placement
convention of prepare.json). Outside the input, weights are dropped and the rest renormalised
(as an edge-replicating border would do for the part inside).
"""

from __future__ import annotations

import numpy as np


def axis_weights(n_in: int, n_out: int, k: float, t: float) -> object:
    """Sparse (n_out, n_in) float32 weights of one axis for ``out = in * k + t`` (centres).

    Rows sum to 1, or are all zero where the output pixel sees none of the input.
    """
    from scipy import sparse

    if k <= 0:
        raise ValueError(f"the scale must be positive, got {k}")
    j = np.arange(n_out, dtype=np.float64)[:, None]
    if k < 1.0:
        # output pixel j covers input edge coordinates [a, b) (input pixel i covers [i, i + 1))
        a = (j - 0.5 - t) / k + 0.5
        b = (j + 0.5 - t) / k + 0.5
        taps = int(np.ceil(1.0 / k)) + 2
        i = np.floor(a) + np.arange(taps)[None, :]
        w = np.minimum(b, i + 1.0) - np.maximum(a, i)
        w = np.clip(w, 0.0, None)
    else:
        x = (j - t) / k  # the output centre in input centre coordinates
        i = np.floor(x) + np.arange(-2, 4)[None, :]
        w = lanczos3(x - i)
    valid = (i >= 0) & (i < n_in) & (w != 0)
    w = np.where(valid, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=np.abs(total) > 1e-12)
    rows = np.broadcast_to(np.arange(n_out)[:, None], i.shape)
    keep = valid & (w != 0)
    return sparse.csr_matrix(
        (w[keep].astype(np.float32), (rows[keep], i[keep].astype(np.int64))), shape=(n_out, n_in)
    )


def lanczos3(x: np.ndarray) -> np.ndarray:
    """The Lanczos kernel with a = 3."""
    x = np.asarray(x, np.float64)
    out = np.sinc(x) * np.sinc(x / 3.0)
    return np.where(np.abs(x) < 3.0, out, 0.0)


def resample_affine(array: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample ``array`` onto a ``size`` = (w, h) grid under a scale-and-shift 2x3 ``matrix``.

    array: (H, W) or (H, W, C), any real dtype (uint8 images, float masks). matrix: input px →
    output px, ``[[kx, 0, tx], [0, ky, ty]]`` (no rotation or shear). Returns float32 (h, w[, C]),
    not clipped: Lanczos (growing) may overshoot the input's range slightly.
    """
    m = np.asarray(matrix, np.float64)
    if abs(m[0, 1]) > 1e-12 or abs(m[1, 0]) > 1e-12:
        raise ValueError("resample_affine takes a scale and a shift only (no rotation or shear)")
    w_out, h_out = int(size[0]), int(size[1])
    src = np.asarray(array, np.float32)
    squeeze = src.ndim == 2
    if squeeze:
        src = src[..., None]
    h_in, w_in, c = src.shape
    wy = axis_weights(h_in, h_out, m[1, 1], m[1, 2])
    wx = axis_weights(w_in, w_out, m[0, 0], m[0, 2])
    # rows first: (h_out, W·C), then columns: (w_out, h_out·C)
    rows = (wy @ src.reshape(h_in, w_in * c)).reshape(h_out, w_in, c)
    cols = wx @ rows.transpose(1, 0, 2).reshape(w_in, h_out * c)
    out = np.ascontiguousarray(np.asarray(cols, np.float32).reshape(w_out, h_out, c).transpose(1, 0, 2))
    return out[..., 0] if squeeze else out
