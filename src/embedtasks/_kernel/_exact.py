"""Canonical arithmetic: dot products whose float32 value never depends on batching.

BLAS rounds a dot product differently with the matrix shape, the CPU kernel
(``OPENBLAS_CORETYPE``) and the thread count. Every score embedtasks returns is
instead *canonical*: the float64 products of the float32 inputs (exact), added by
a fixed pairwise tree, rounded once to float32. It depends on the two vectors
alone, so it is bit-identical whatever the batch, order, partition, thread count,
machine or BLAS.

BLAS still does the heavy lifting: :func:`similarity` takes a float64 matrix
product and proves, element by element, that it rounds to the same float32 as
the tree (a rigorous error bound against the distance to the nearest float32
rounding boundary); the few elements it cannot prove are recomputed by the tree.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

#: Unit roundoff of float64 and float32.
_U64 = 2.0**-53
_U32 = 2.0**-24

#: Elements of float64 scratch one chunk of canonical arithmetic may hold (8 MiB).
_TREE_ELEMENTS = 1 << 20


def n_threads(n_jobs: int | None) -> int:
    """The threads an ``n_jobs`` setting stands for: one meaning in every estimator.

    ``None`` or ``-1``: every core; a positive number: that many threads; ``-2``:
    every core but one, and so on (joblib's rule for negative values).

    Examples
    --------
    >>> n_threads(1), n_threads(3)
    (1, 3)
    >>> import os
    >>> n_threads(None) == n_threads(-1) == (os.cpu_count() or 1)
    True
    """
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, n_jobs)


def chunk_rows(width: int) -> int:
    """Rows per chunk when each row holds ``width`` float64 values of scratch.

    The kernel's rule for streaming work (canonical dot products, norms, dense
    similarity, passes over a corpus); score tiles follow
    :func:`~embedtasks._kernel.tile_shape`. Chunks change memory, never a
    result.
    """
    return max(1, _TREE_ELEMENTS // max(width, 1))


def _tree_sum(P: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Sum each row of ``P`` (float64, modified in place) by a fixed pairwise tree.

    The order of the additions depends only on the row length, never on the
    row's position, the number of rows or the machine: each step adds the upper
    half of the columns onto the lower half (element-wise IEEE additions).
    """
    width = P.shape[1]
    while width > 1:
        half = width // 2
        np.add(P[:, :half], P[:, half : 2 * half], out=P[:, :half])
        if width % 2:
            np.add(P[:, 0], P[:, width - 1], out=P[:, 0])
        width = half
    if width == 0:
        return np.zeros(P.shape[0], dtype=np.float64)
    return P[:, 0].copy()


def _as_2d_float32(X: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    A = np.asarray(X, dtype=np.float32)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {A.shape}.")
    return A


def pair_dots(A: npt.ArrayLike, B: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Canonical ``A[i] . B[i]`` for each row pair, as float32.

    Parameters
    ----------
    A, B : array-like of shape (n_pairs, n_features)
        Row ``i`` of ``A`` is paired with row ``i`` of ``B``.

    Returns
    -------
    ndarray of float32 of shape (n_pairs,)

    Examples
    --------
    >>> pair_dots([[1.0, 2.0], [0.5, 0.5]], [[3.0, 4.0], [1.0, -1.0]])
    array([11.,  0.], dtype=float32)
    """
    A32 = _as_2d_float32(A, "A")
    B32 = _as_2d_float32(B, "B")
    if A32.shape != B32.shape:
        raise ValueError(
            f"pair_dots pairs rows of equal shape; got {A32.shape} and {B32.shape}."
        )
    n, d = A32.shape
    out = np.empty(n, dtype=np.float32)
    step = chunk_rows(d)
    for r0 in range(0, n, step):
        P = A32[r0 : r0 + step].astype(np.float64)
        P *= B32[r0 : r0 + step]
        out[r0 : r0 + step] = _tree_sum(P)
    return out


def pair_dots_indexed(
    Q: npt.NDArray[np.float32],
    C: Any,
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    norm_bound: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float32]:
    """Canonical ``Q[rows[i]] . C[cols[i]]`` without gathering all pairs at once.

    ``C`` is an array or a corpus with a ``rows(indices)`` method (a mapped file,
    int8 codes: see ``_corpus``). ``norm_bound[j]``, if given, bounds
    ``|Q[j]| |c|`` for every row ``c`` of ``C`` (it saves computing the norms).
    """
    gather = C.rows if hasattr(C, "rows") else C.__getitem__
    out = np.empty(rows.size, dtype=np.float32)
    d = Q.shape[1]
    step = chunk_rows(d)
    for p0 in range(0, rows.size, step):
        r, c = rows[p0 : p0 + step], cols[p0 : p0 + step]
        A, B = Q[r], gather(c)
        # float64 sums of the exact products in einsum's order, certified to
        # round like the tree; the rare uncertain pair is summed by the tree.
        R = np.einsum("ij,ij->i", A, B, dtype=np.float64)
        if norm_bound is None:
            norms = np.einsum("ij,ij->i", A, A, dtype=np.float64)
            norms *= np.einsum("ij,ij->i", B, B, dtype=np.float64)
            scale = np.sqrt(norms)  # their rounding is far inside the slack
        else:
            scale = norm_bound[r]
        err = _SLACK * max(d, 2) * scale
        F, unsure = _round_certified(R, err)
        if unsure.any():
            P = A[unsure].astype(np.float64)
            P *= B[unsure]
            F[unsure] = _tree_sum(P)
        out[p0 : p0 + step] = F
    return out


#: ``|float64 sum in any order - tree sum| <= (gamma_d + gamma_log2d) * sum|p_i|``
#: and ``sum|p_i| <= |a| |b|``: ``_SLACK * d * u64 * |a| |b|`` covers both.
_SLACK = 2.5 * _U64


def _round_certified(
    R: npt.NDArray[np.float64], err: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """``R`` rounded to float32, and where ``R +- err`` could round otherwise.

    Rounding is monotone: if both ends of ``[R - err, R + err]`` clear the
    midpoints to the neighbouring float32 values, every sum in that interval (the
    canonical tree's included) rounds to the same float32.
    """
    F = R.astype(np.float32)
    F64 = F.astype(np.float64)
    up = np.nextafter(F, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(F, np.float32(-np.inf)).astype(np.float64)
    unsure = (R + err >= (F64 + up) * 0.5) | (R - err <= (F64 + down) * 0.5)
    return F, unsure


def row_norms(X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Canonical Euclidean norm of each row (float64, from float32 values)."""
    A = _as_2d_float32(X, "X")
    return np.sqrt(pair_dots(A, A).astype(np.float64)) if A.size else _zeros(A)


def _zeros(A: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return np.zeros(A.shape[0], dtype=np.float64)


def _squared_norms(A: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Canonical float64 squared norms (the tree's sum, before float32 rounding)."""
    n, d = A.shape
    out = np.empty(n, dtype=np.float64)
    step = chunk_rows(d)
    for r0 in range(0, n, step):
        P = A[r0 : r0 + step].astype(np.float64)
        P *= P
        out[r0 : r0 + step] = _tree_sum(P)
    return out


def l2_normalize(X: npt.ArrayLike, *, copy: bool = True) -> npt.NDArray[np.float32]:
    """Scale each row of ``X`` to unit Euclidean length, as float32.

    Each row's norm is canonical (see the module docstring), so a row is
    normalised to the same bits whatever else is in the batch. Zero rows have no
    direction: they stay zero (their similarity to anything is 0), instead of
    becoming NaN.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_features,)
        Vectors to normalise.
    copy : bool, default=True
        If False and ``X`` is already a writeable float32 ndarray, scale it in place.

    Returns
    -------
    ndarray of float32, same shape as ``X``
        Unit-length rows (zero rows left at zero).

    Examples
    --------
    >>> l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    out = np.array(X, dtype=np.float32, copy=copy or None, order="C")
    if not out.flags.writeable:
        out = out.copy()
    rows = out.reshape(1, -1) if out.ndim == 1 else out
    if rows.ndim != 2:
        raise ValueError(f"l2_normalize expects 1-D or 2-D input, got {out.shape}.")
    norms = np.sqrt(_squared_norms(rows)).astype(np.float32)
    nonzero = norms > 0
    if nonzero.all():
        rows /= norms[:, None]
    else:
        rows[nonzero] /= norms[nonzero][:, None]
    return out


def similarity(
    queries: npt.ArrayLike, corpus: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """Canonical dot products of every query with every corpus row (dense).

    A float64 matrix product does the work; each element is certified to round
    to the same float32 as the canonical tree (a rigorous error bound clears the
    nearest float32 rounding boundary), and the rare uncertain element is
    recomputed by the tree. For large corpora prefer :func:`top_k` or
    :func:`above_threshold`, which never hold the whole matrix.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
    corpus : array-like of shape (n_corpus, n_features)

    Returns
    -------
    ndarray of float32 of shape (n_queries, n_corpus)

    Examples
    --------
    >>> similarity([[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.6, 0.8]])
    array([[0. , 0.6],
           [0.8, 1. ]], dtype=float32)
    """
    Q = np.ascontiguousarray(_as_2d_float32(queries, "queries"))
    C = np.ascontiguousarray(_as_2d_float32(corpus, "corpus"))
    if Q.shape[1] != C.shape[1]:
        raise ValueError(
            f"queries and corpus must have the same number of features; got "
            f"shapes {Q.shape} and {C.shape}."
        )
    d = Q.shape[1]
    out = np.empty((Q.shape[0], C.shape[0]), dtype=np.float32)
    if out.size == 0:
        return out
    C64 = C.astype(np.float64)
    c_norm = np.sqrt(_squared_norms(C))
    q_norm = np.sqrt(_squared_norms(Q))
    slack = _SLACK * max(d, 2)
    step = chunk_rows(C.shape[0])
    for r0 in range(0, Q.shape[0], step):
        r1 = min(r0 + step, Q.shape[0])
        R = Q[r0:r1].astype(np.float64) @ C64.T
        err = (slack * q_norm[r0:r1])[:, None] * c_norm[None, :]
        F, unsure = _round_certified(R, err)
        ur, uc = np.nonzero(unsure)
        if ur.size:
            F[ur, uc] = pair_dots_indexed(Q, C, ur + r0, uc)
        out[r0:r1] = F
    return out


def quadratic_form(X: npt.ArrayLike, M: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Canonical ``x_i^T M x_i`` for each row (``M`` symmetric), e.g. Mahalanobis.

    Examples
    --------
    >>> quadratic_form([[1.0, 2.0]], [[2.0, 0.0], [0.0, 1.0]])
    array([6.], dtype=float32)
    """
    A = _as_2d_float32(X, "X")
    return pair_dots(similarity(A, M), A)


def error_margin(
    d: int, query_norms: npt.NDArray[np.float64], corpus_norm: float
) -> npt.NDArray[np.float32]:
    """A bound on |float32 BLAS score - canonical score| per query (float32).

    Any float32 summation order errs by at most ``gamma_d * sum|q_i c_i|``
    (Higham, Accuracy and Stability, 3.1) and the canonical score is within one
    float32 rounding of the exact value; ``sum|q_i c_i| <= |q| |c|``.
    """
    gamma = (d + 2) * _U32 / (1 - (d + 2) * _U32)
    margin = 1.01 * gamma * query_norms * corpus_norm + 1e-30
    return margin.astype(np.float32)


def group_sum(
    X: npt.ArrayLike,
    groups: npt.ArrayLike,
    n_groups: int,
    *,
    weights: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Sum the rows of ``X`` that share a group, in float64, in row order.

    The one group reduction of the package (class centroids, chunk pooling,
    per-group statistics). Rows are added one after another in their order, so
    the result depends only on the rows and their order, never on BLAS.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to add up.
    groups : array-like of int of shape (n_samples,)
        Group of each row, in ``[0, n_groups)``.
    n_groups : int
        Number of groups (groups with no rows sum to zero).
    weights : array-like of shape (n_samples,), optional
        Multiply each row by its weight first.

    Returns
    -------
    ndarray of float64 of shape (n_groups, n_features)

    Examples
    --------
    >>> group_sum([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], [0, 1, 0], 2)
    array([[4., 3.],
           [0., 2.]])
    """
    A = np.asarray(X, dtype=np.float64)
    g = np.asarray(groups, dtype=np.intp).ravel()
    if A.ndim != 2 or g.shape[0] != A.shape[0]:
        raise ValueError(
            f"group_sum needs a 2-D X and one group per row; got X of shape "
            f"{A.shape} and {g.shape[0]} groups."
        )
    if weights is not None:
        A = A * np.asarray(weights, dtype=np.float64).reshape(-1, 1)
    out = np.zeros((n_groups, A.shape[1]), dtype=np.float64)
    if g.size == 0:
        return out
    # Rows of a group are added in row order (a stable sort keeps it), group by
    # group: the same order whatever the machine.
    order = np.argsort(g, kind="stable")
    present, starts = np.unique(g[order], return_index=True)
    out[present] = np.add.reduceat(A[order], starts, axis=0)
    return out


def group_mean_direction(
    X: npt.ArrayLike, groups: npt.ArrayLike, n_groups: int
) -> npt.NDArray[np.float32]:
    """Unit mean direction of each group's unit rows (class centroids, topics)."""
    return l2_normalize(group_sum(l2_normalize(X), groups, n_groups))


def pool_chunks(
    vectors: npt.ArrayLike,
    owners: npt.ArrayLike,
    weights: npt.ArrayLike,
    n_rows: int,
) -> npt.NDArray[np.float32]:
    """One unit vector per row from the vectors of its chunks.

    The weighted mean (weights: each chunk's token count) of the chunks' unit
    vectors, normalised again: how an over-long text embedded in pieces gets one
    vector, for the API and the local model alike.

    Examples
    --------
    >>> pool_chunks([[1.0, 0.0], [0.0, 2.0], [0.6, 0.8]], [0, 0, 1], [1, 1, 5], 2)
    array([[0.70710677, 0.70710677],
           [0.6       , 0.8       ]], dtype=float32)
    """
    units = l2_normalize(vectors)
    return l2_normalize(group_sum(units, owners, n_rows, weights=weights))


def softmax(logits: npt.ArrayLike, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    """Row-wise softmax of ``logits / temperature`` in float64 (stable).

    Examples
    --------
    >>> softmax([[0.0, 0.0], [1.0, 0.0]], temperature=1.0).round(3)
    array([[0.5  , 0.5  ],
           [0.731, 0.269]])
    """
    Z: npt.NDArray[np.float64] = np.asarray(logits, dtype=np.float64) / temperature
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z
