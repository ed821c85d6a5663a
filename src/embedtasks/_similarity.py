"""The one similarity kernel: normalisation, exact chunked top-k, float32 blobs.

Every estimator in embedtasks compares vectors through this module and nothing else.
It knows only numpy: no scikit-learn, no I/O.

Exact top-k works in tiles: a block of queries is multiplied against a slice of the
corpus (one BLAS call), and only scores that beat each query's current k-th best
survive to a small vectorised merge. Memory stays bounded by ``memory_budget`` however
large the corpus is, results are exact, and ties are broken by the lower corpus index.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "NeighbourScan",
    "TopK",
    "above_threshold",
    "from_bytes",
    "group_sum",
    "l2_normalize",
    "matrix_from_bytes",
    "mmr_rerank",
    "neighbour_scan",
    "pairwise_mean_std",
    "pool_chunks",
    "to_bytes",
    "top_k",
    "vendi_score",
]

#: Bytes of float32 scores one tile of the kernel may hold (queries x corpus rows).
DEFAULT_MEMORY_BUDGET = 8 * 2**20

_BLOB_DTYPE = np.dtype("<f4")


class TopK(NamedTuple):
    """Result of :func:`top_k`: both arrays have shape ``(n_queries, k)``.

    ``indices`` are corpus rows by decreasing score (ties: lower index first);
    ``scores`` the matching dot products. Where fewer than ``k`` corpus rows are
    eligible (a small corpus, or exclusions) the row is padded with index ``-1``
    and score ``-inf``.
    """

    indices: npt.NDArray[np.intp]
    scores: npt.NDArray[np.float32]


def l2_normalize(X: npt.ArrayLike, *, copy: bool = True) -> npt.NDArray[np.float32]:
    """Scale each row of ``X`` to unit Euclidean length, as float32.

    Zero rows have no direction: they stay zero (their similarity to anything is 0),
    instead of becoming NaN.

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
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64))
    nonzero = norms > 0
    if nonzero.all():
        rows /= norms.astype(np.float32)[:, None]
    else:
        rows[nonzero] /= norms[nonzero].astype(np.float32)[:, None]
    return out


def _exclusion_pairs(
    n_queries: int,
    n_corpus: int,
    exclude: Sequence[npt.ArrayLike] | None,
    self_offset: int | None,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(query row, corpus column) pairs to skip, sorted by column."""
    rows: list[npt.NDArray[np.intp]] = []
    cols: list[npt.NDArray[np.intp]] = []
    if self_offset is not None:
        q = np.arange(n_queries, dtype=np.intp)
        c = q + self_offset
        ok = (c >= 0) & (c < n_corpus)
        rows.append(q[ok])
        cols.append(c[ok])
    if exclude is not None:
        if len(exclude) != n_queries:
            raise ValueError(
                f"exclude must hold one array of corpus indices per query: got "
                f"{len(exclude)} for {n_queries} queries."
            )
        for i, items in enumerate(exclude):
            c = np.asarray(items, dtype=np.intp).ravel()
            if c.size and (c.min() < -n_corpus or c.max() >= n_corpus):
                raise IndexError(
                    f"exclude[{i}] holds an index outside the corpus of {n_corpus} "
                    f"rows: {c[(c < -n_corpus) | (c >= n_corpus)][:5].tolist()}."
                )
            c = np.where(c < 0, c + n_corpus, c)
            rows.append(np.full(c.size, i, dtype=np.intp))
            cols.append(c)
    if not rows:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    r, c = np.concatenate(rows), np.concatenate(cols)
    order = np.argsort(c, kind="stable")
    return r[order], c[order]


def _merge(
    vals: npt.NDArray[np.float32],
    idx: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    cand: npt.NDArray[np.float32],
) -> None:
    """Merge candidates into the running top-k (in place), ties to the lower index."""
    touched = np.unique(rows)
    k = vals.shape[1]
    # Renumber the touched rows 0..t-1 so only they are merged.
    local = np.searchsorted(touched, rows)
    all_rows = np.concatenate([np.repeat(np.arange(touched.size), k), local])
    all_vals = np.concatenate([vals[touched].ravel(), cand])
    all_idx = np.concatenate([idx[touched].ravel(), cols])
    order = np.lexsort((all_idx, -all_vals, all_rows))
    counts = np.bincount(all_rows, minlength=touched.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = order[(starts[:, None] + np.arange(k)).ravel()]
    vals[touched] = all_vals[take].reshape(-1, k)
    idx[touched] = all_idx[take].reshape(-1, k)


#: Below this many queries per thread, one thread with multi-threaded BLAS wins.
_MIN_QUERIES_PER_THREAD = 64


def _top_k_into(
    Q: npt.NDArray[np.float32],
    C: npt.NDArray[np.float32],
    ex_rows: npt.NDArray[np.intp],
    ex_cols: npt.NDArray[np.intp],
    indices: npt.NDArray[np.intp],
    scores: npt.NDArray[np.float32],
    memory_budget: int,
) -> None:
    """Fill ``indices``/``scores`` (views of the result) on the calling thread."""
    n_q, n_c = Q.shape[0], C.shape[0]
    k = indices.shape[1]
    block = max(1, min(n_q, 1024, memory_budget // (4 * 256)))
    width = max(k, 256, memory_budget // (4 * block))
    buffer = np.empty((block, min(width, n_c)), dtype=np.float32)
    mask_buffer = np.empty(buffer.size, dtype=bool)
    sentinel = n_c  # sorts after every real index on equal scores

    for q0 in range(0, n_q, block):
        q1 = min(q0 + block, n_q)
        Qb = Q[q0:q1]
        vals = np.full((q1 - q0, k), -np.inf, dtype=np.float32)
        idx = np.full((q1 - q0, k), sentinel, dtype=np.intp)
        in_block = (ex_rows >= q0) & (ex_rows < q1)
        b_rows, b_cols = ex_rows[in_block] - q0, ex_cols[in_block]
        for c0 in range(0, n_c, width):
            c1 = min(c0 + width, n_c)
            S = buffer[: q1 - q0, : c1 - c0]
            if q1 - q0 == 1:
                np.matmul(C[c0:c1], Qb[0], out=S[0])
            else:
                np.matmul(Qb, C[c0:c1].T, out=S)
            lo, hi = np.searchsorted(b_cols, [c0, c1])
            if hi > lo:
                S[b_rows[lo:hi], b_cols[lo:hi] - c0] = -np.inf
            if c0 == 0:
                # First tile: the k-th best of the tile (ties kept) seeds the run.
                if S.shape[1] > k:
                    part = np.partition(S, S.shape[1] - k, axis=1)
                    kth = part[:, S.shape[1] - k]
                else:
                    kth = S.min(axis=1)
                threshold = np.nextafter(kth, np.float32(-np.inf))
            else:
                threshold = vals[:, -1]
            # Compare into a reused flat mask and read it with flatnonzero: ~9x
            # faster than np.nonzero on a 2-D mask, which walks two index arrays.
            mask = mask_buffer[: S.size].reshape(S.shape)
            np.greater(S, threshold[:, None], out=mask)
            r, c = np.divmod(np.flatnonzero(mask_buffer[: S.size]), S.shape[1])
            if r.size:
                _merge(vals, idx, r, c + c0, S[r, c])
        missing = idx == sentinel
        idx[missing] = -1
        vals[missing] = -np.inf
        indices[q0:q1], scores[q0:q1] = idx, vals


def top_k(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    k: int,
    *,
    exclude: Sequence[npt.ArrayLike] | None = None,
    self_offset: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    n_jobs: int | None = None,
) -> TopK:
    """Exact top-``k`` corpus rows by dot product for each query, in bounded memory.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query vectors (float32 is used as is; other dtypes are cast).
    corpus : array-like of shape (n_corpus, n_features)
        Vectors to rank. Not copied when it is C-contiguous float32.
    k : int
        Number of results per query; values above ``n_corpus`` are padded.
    exclude : sequence of array-like of int, optional
        ``exclude[i]`` lists corpus rows that query ``i`` must not return
        (e.g. items a user has already seen).
    self_offset : int, optional
        Query ``i`` is corpus row ``self_offset + i`` and must not return itself
        (``0`` when the queries are the corpus).
    memory_budget : int, default=8 MiB
        Bytes of scores one tile may hold; the kernel's extra memory is a small
        multiple of it (per thread) whatever the corpus size.
    n_jobs : int, optional
        Threads for large query batches (each takes a share of the queries, with
        BLAS single-threaded, so selection runs in parallel too). ``None`` uses
        every core; ``1`` stays on the calling thread. Small batches always run
        on one thread with multi-threaded BLAS (the bandwidth-bound case).

    Returns
    -------
    TopK
        ``indices`` (intp) and ``scores`` (float32), each of shape ``(n_queries, k)``,
        best first, ties broken by the lower corpus index; padded with ``-1`` and
        ``-inf`` where fewer than ``k`` rows are eligible.

    Examples
    --------
    >>> corpus = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    >>> result = top_k([[1.0, 0.0]], corpus, k=2)
    >>> result.indices
    array([[0, 2]])
    >>> result.scores
    array([[1. , 0.6]], dtype=float32)
    >>> top_k(corpus, corpus, k=1, self_offset=0).indices.ravel()  # not itself
    array([2, 2, 1])
    """
    Q = np.ascontiguousarray(queries, dtype=np.float32)
    C = np.ascontiguousarray(corpus, dtype=np.float32)
    if Q.ndim != 2 or C.ndim != 2 or Q.shape[1] != C.shape[1]:
        raise ValueError(
            f"queries and corpus must be 2-D with the same number of features; got "
            f"shapes {Q.shape} and {C.shape}."
        )
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}.")
    n_q, n_c = Q.shape[0], C.shape[0]
    indices = np.full((n_q, k), -1, dtype=np.intp)
    scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    if n_q == 0 or n_c == 0:
        return TopK(indices, scores)

    ex_rows, ex_cols = _exclusion_pairs(n_q, n_c, exclude, self_offset)
    result = TopK(indices, scores)
    # Past n_corpus every slot is padding: rank only what exists.
    indices, scores = indices[:, : min(k, n_c)], scores[:, : min(k, n_c)]
    n_threads = (os.cpu_count() or 1) if n_jobs is None else max(1, n_jobs)
    n_threads = min(n_threads, n_q // _MIN_QUERIES_PER_THREAD)
    if n_threads <= 1:
        _top_k_into(Q, C, ex_rows, ex_cols, indices, scores, memory_budget)
        return result
    bounds = np.linspace(0, n_q, n_threads + 1).astype(int)

    def run(part: int) -> None:
        q0, q1 = bounds[part], bounds[part + 1]
        sel = (ex_rows >= q0) & (ex_rows < q1)
        _top_k_into(
            Q[q0:q1],
            C,
            ex_rows[sel] - q0,
            ex_cols[sel],
            indices[q0:q1],
            scores[q0:q1],
            memory_budget,
        )

    with threadpool_limits(limits=1, user_api="blas"):
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(run, range(n_threads)))
    return result


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
    np.add.at(out, g, A)
    return out


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


def to_bytes(vector: npt.ArrayLike) -> bytes:
    """Serialise one vector as little-endian float32 bytes (4 bytes per value).

    Examples
    --------
    >>> blob = to_bytes([1.0, -0.5])
    >>> len(blob), from_bytes(blob)
    (8, array([ 1. , -0.5], dtype=float32))
    """
    array = np.asarray(vector)
    if array.ndim != 1:
        raise ValueError(f"to_bytes expects one 1-D vector, got shape {array.shape}.")
    return array.astype(_BLOB_DTYPE, copy=False).tobytes()


def from_bytes(blob: bytes, dim: int | None = None) -> npt.NDArray[np.float32]:
    """Read a vector written by :func:`to_bytes` (native float32, writeable copy).

    Raises ``ValueError`` if the blob is not a whole number of float32 values, or
    holds a different number of values than ``dim``.
    """
    if len(blob) % 4:
        raise ValueError(
            f"A float32 blob must be a multiple of 4 bytes long, got {len(blob)}."
        )
    if dim is not None and len(blob) != 4 * dim:
        raise ValueError(
            f"Expected a blob of {dim} float32 values ({4 * dim} bytes), got "
            f"{len(blob) // 4} values: was it written by another model?"
        )
    return np.frombuffer(blob, dtype=_BLOB_DTYPE).astype(np.float32)


def matrix_from_bytes(blobs: Sequence[bytes], dim: int) -> npt.NDArray[np.float32]:
    """Stack many :func:`to_bytes` blobs of ``dim`` values into an (n, dim) matrix."""
    data = b"".join(blobs)
    if len(data) != 4 * dim * len(blobs):
        bad = next(i for i, b in enumerate(blobs) if len(b) != 4 * dim)
        raise ValueError(
            f"Blob {bad} holds {len(blobs[bad]) / 4:g} float32 values, expected {dim}."
        )
    return np.frombuffer(data, dtype=_BLOB_DTYPE).astype(np.float32).reshape(-1, dim)


def above_threshold(
    queries: npt.ArrayLike,
    corpus: npt.ArrayLike,
    threshold: float,
    *,
    self_offset: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]]:
    """Every corpus row whose dot product with a query is at least ``threshold``.

    Works tile by tile like :func:`top_k`, so the scratch memory stays bounded; the
    result itself grows with the number of matches.

    Returns
    -------
    list of (indices, scores)
        One pair per query, best first, ties broken by the lower index.

    Examples
    --------
    >>> corpus = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    >>> [(indices, scores)] = above_threshold([[0.0, 1.0]], corpus, 0.5)
    >>> indices, scores
    (array([1, 2]), array([1. , 0.8], dtype=float32))
    """
    Q = np.ascontiguousarray(queries, dtype=np.float32)
    C = np.ascontiguousarray(corpus, dtype=np.float32)
    if Q.ndim != 2 or C.ndim != 2 or Q.shape[1] != C.shape[1]:
        raise ValueError(
            f"queries and corpus must be 2-D with the same number of features; got "
            f"shapes {Q.shape} and {C.shape}."
        )
    n_q, n_c = Q.shape[0], C.shape[0]
    ex_rows, ex_cols = _exclusion_pairs(n_q, n_c, None, self_offset)
    width = max(256, memory_budget // (4 * max(n_q, 1)))
    found_r, found_c, found_v = [], [], []
    for c0 in range(0, n_c, width):
        c1 = min(c0 + width, n_c)
        S = Q @ C[c0:c1].T
        lo, hi = np.searchsorted(ex_cols, [c0, c1])
        S[ex_rows[lo:hi], ex_cols[lo:hi] - c0] = -np.inf
        r, c = np.divmod(np.flatnonzero(S >= threshold), S.shape[1])  # see top_k
        found_r.append(r)
        found_c.append(c + c0)
        found_v.append(S[r, c])
    rows = np.concatenate(found_r) if found_r else np.empty(0, np.intp)
    cols = np.concatenate(found_c) if found_c else np.empty(0, np.intp)
    vals = np.concatenate(found_v) if found_v else np.empty(0, np.float32)
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    bounds = np.searchsorted(rows, np.arange(n_q + 1))
    return [
        (cols[a:b].astype(np.intp), vals[a:b].astype(np.float32))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def mmr_rerank(
    query: npt.ArrayLike,
    candidates: npt.ArrayLike,
    corpus: npt.ArrayLike,
    n_select: int,
    diversity: float,
) -> npt.NDArray[np.intp]:
    """Maximal marginal relevance: pick ``n_select`` candidates, relevant yet varied.

    Each step takes the candidate maximising ``(1 - diversity) * sim(query, c) -
    diversity * max(sim(c, already chosen))``. ``diversity=0`` keeps the relevance
    order; ``diversity=1`` picks the most mutually dissimilar items.

    Returns
    -------
    ndarray of intp
        The chosen corpus indices, in the order they were picked.

    Examples
    --------
    >>> corpus = [[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]]
    >>> mmr_rerank([0.8, 0.6], [0, 1, 2], corpus, n_select=2, diversity=0.0).tolist()
    [1, 0]
    >>> mmr_rerank([0.8, 0.6], [0, 1, 2], corpus, n_select=2, diversity=0.7).tolist()
    [1, 2]
    """
    cand = np.asarray(candidates, dtype=np.intp)
    vectors = np.asarray(corpus, dtype=np.float32)[cand]
    relevance = vectors @ np.asarray(query, dtype=np.float32)
    pairwise = vectors @ vectors.T
    n_select = min(n_select, cand.size)
    chosen: list[int] = []
    redundancy = np.full(cand.size, -np.inf, dtype=np.float32)
    available = np.ones(cand.size, dtype=bool)
    for _ in range(n_select):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = (1.0 - diversity) * relevance - diversity * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))  # argmax takes the first (best-ranked) on ties
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, pairwise[best])
    return cand[np.asarray(chosen, dtype=np.intp)]


def _gram(X: npt.NDArray[np.floating], block: int = 4096) -> npt.NDArray[np.float64]:
    """``X.T @ X`` summed in float64 over row blocks, each block in X's own dtype.

    Float32 blocks of 4,096 unit rows keep the relative error near 1e-8 (measured
    on 100k MiniLM rows) at sgemm speed, with no float64 copy of ``X``.
    """
    A = np.asarray(X)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    G = np.zeros((A.shape[1], A.shape[1]), dtype=np.float64)
    for r0 in range(0, A.shape[0], block):
        B = A[r0 : r0 + block]
        G += B.T @ B
    return G


def pairwise_mean_std(X: npt.ArrayLike) -> tuple[float, float]:
    """Exact mean and standard deviation of ``x_i . x_j`` over all pairs ``i != j``.

    The mean costs O(n*d): the sum over all ordered pairs is ``|sum_i x_i|^2``
    minus the self terms. The standard deviation costs O(n*d^2): the sum of squared
    dot products is ``||X.T @ X||_F^2`` minus the self terms. No n x n matrix is
    formed.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Vectors (unit rows give cosine similarities); at least 2 rows.

    Returns
    -------
    (mean, std) : tuple of float

    Examples
    --------
    >>> X = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    >>> [round(v, 4) for v in pairwise_mean_std(X)]  # pairs: 0, 0.6, 0.8
    [0.4667, 0.3399]
    """
    A = np.asarray(X)
    n = A.shape[0]
    if A.ndim != 2 or n < 2:
        raise ValueError(
            f"pairwise_mean_std needs at least 2 rows, got shape {A.shape}."
        )
    total = A.sum(axis=0, dtype=np.float64)
    self_sq = np.einsum("ij,ij->i", A, A, dtype=np.float64)
    n_pairs = n * (n - 1)
    mean = (total @ total - self_sq.sum()) / n_pairs
    sum_sq = float((_gram(A) ** 2).sum() - (self_sq**2).sum())
    var = max(sum_sq / n_pairs - mean**2, 0.0)
    return float(mean), float(np.sqrt(var))


def vendi_score(X: npt.ArrayLike, *, method: str = "auto") -> float:
    """Vendi score: the effective number of distinct rows (Friedman & Dieng, 2023).

    ``exp`` of the Shannon entropy of the eigenvalues of ``K / n``, where ``K = X @
    X.T`` is the similarity matrix of unit rows (each eigenvalue share is divided by
    the trace, so zero rows are ignored). It is 1 when all rows are the same and
    ``n`` when they are mutually orthogonal. ``K / n`` has the same non-zero
    eigenvalues as the d x d matrix ``X.T @ X / n``, so for ``n > d`` the score costs
    O(n*d^2) and no n x n matrix is formed.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Unit-length rows.
    method : {"auto", "covariance", "kernel"}, default="auto"
        ``"covariance"``: eigenvalues of the d x d matrix; ``"kernel"``: of the
        n x n matrix; ``"auto"``: whichever is smaller.

    Returns
    -------
    float

    Examples
    --------
    >>> round(vendi_score([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), 4)
    2.0
    >>> round(vendi_score([[1.0, 0.0]] * 5), 4)
    1.0
    """
    A = np.asarray(X)
    if A.ndim != 2 or A.shape[0] < 1:
        raise ValueError(f"vendi_score needs a 2-D array with rows, got {A.shape}.")
    if method not in {"auto", "covariance", "kernel"}:
        raise ValueError(
            f"method must be 'auto', 'covariance' or 'kernel', got {method!r}."
        )
    n, d = A.shape
    if method == "covariance" or (method == "auto" and n > d):
        M = _gram(A)
    else:
        B = A.astype(np.float64)
        M = B @ B.T
    eigenvalues = np.clip(np.linalg.eigvalsh(M), 0.0, None)
    total = eigenvalues.sum()
    if total <= 0:
        return 0.0
    p = eigenvalues[eigenvalues > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


class NeighbourScan:
    """Result of :func:`neighbour_scan` (attributes set by it)."""

    __slots__ = ("nn_sim", "nn_idx", "pairs", "pair_scores", "n_pairs", "pair_sims")


#: Rows per block side of :func:`neighbour_scan`.
_SCAN_BLOCK = 2048


def neighbour_scan(X, threshold, max_kept, *, keep_all, block=None):
    """One exact pass over the upper triangle of ``X @ X.T``, block by block.

    Finds each row's nearest other row and every pair at or above ``threshold``
    (keeping the ``max_kept`` most similar); with ``keep_all`` also returns every
    pairwise similarity (only for small inputs). Each block pair is multiplied
    once and serves both rows' nearest neighbours (half the work of a
    :func:`top_k` self-join), with ``block`` rows per side (default
    ``_SCAN_BLOCK``).
    """
    block = _SCAN_BLOCK if block is None else block
    n = X.shape[0]
    nn_sim = np.full(n, -np.inf, dtype=np.float32)
    nn_idx = np.full(n, -1, dtype=np.intp)
    found_i, found_j, found_s, all_sims = [], [], [], []
    n_found = stored = 0
    for a0 in range(0, n, block):
        a1 = min(a0 + block, n)
        A = X[a0:a1]
        for b0 in range(a0, n, block):
            b1 = min(b0 + block, n)
            S = A @ X[b0:b1].T
            if b0 == a0:
                upper = np.triu(np.ones(S.shape, dtype=bool), k=1)
                if keep_all:
                    all_sims.append(S[upper])
                np.fill_diagonal(S, -np.inf)
                i, j = np.nonzero(upper & (S >= threshold))
            else:
                if keep_all:
                    all_sims.append(S.ravel().copy())
                i, j = np.nonzero(S >= threshold)
            _update_nn(nn_sim, nn_idx, a0, S, b0)
            _update_nn(nn_sim, nn_idx, b0, S.T, a0)
            if i.size:
                n_found += i.size
                if max_kept:
                    found_i.append(i + a0)
                    found_j.append(j + b0)
                    found_s.append(S[i, j])
                    stored += i.size
                    if stored > 2 * max_kept + block:  # prune to the best
                        found_i, found_j, found_s = _best(
                            found_i, found_j, found_s, max_kept
                        )
                        stored = found_i[0].size
    scan = NeighbourScan()
    scan.nn_sim, scan.nn_idx = nn_sim, nn_idx
    pi, pj, ps = _best(found_i, found_j, found_s, max_kept)
    scan.pairs = np.column_stack([pi[0], pj[0]]).astype(np.intp)
    scan.pair_scores = ps[0].astype(np.float32)
    scan.n_pairs = int(n_found)
    scan.pair_sims = np.concatenate(all_sims) if keep_all else None
    return scan


def _update_nn(nn_sim, nn_idx, row0, S, col0):
    best = S.argmax(axis=1)
    score = S[np.arange(S.shape[0]), best]
    rows = slice(row0, row0 + S.shape[0])
    better = score > nn_sim[rows]
    nn_sim[rows] = np.where(better, score, nn_sim[rows])
    nn_idx[rows] = np.where(better, best + col0, nn_idx[rows])


def _best(found_i, found_j, found_s, k):
    """The ``k`` most similar pairs (ties: lower i, then lower j), as 1-lists."""
    if not found_i:
        empty = np.empty(0, dtype=np.intp)
        return [empty], [empty], [np.empty(0, dtype=np.float32)]
    i, j, s = (np.concatenate(v) for v in (found_i, found_j, found_s))
    order = np.lexsort((j, i, -s))[:k]
    return [i[order]], [j[order]], [s[order]]
