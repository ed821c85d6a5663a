"""All-pairs statistics of one set of rows: the symmetric scan and its companions.

:func:`neighbour_scan` multiplies each pair of row blocks once (the upper
triangle of ``X @ X.T``), so every pair is computed once and serves both rows.
As in :mod:`._topk`, BLAS only selects candidates under a rigorous rounding
bound; the answers (nearest neighbours, pairs above a threshold) carry
canonical scores, identical however the work is split.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from embedtasks._kernel._exact import (
    error_margin,
    group_sum,
    pair_dots_indexed,
    row_norms,
    similarity,
)
from embedtasks._kernel._exact import (
    n_threads as threads_for,
)
from embedtasks._kernel._topk import DEFAULT_MEMORY_BUDGET

F32 = npt.NDArray[np.float32]
Idx = npt.NDArray[np.intp]
#: Row indices, column indices and their scores, aligned.
Triple = tuple[Idx, Idx, F32]


class NeighbourScan(NamedTuple):
    """Result of :func:`neighbour_scan`.

    ``nn_sim``/``nn_idx``: each row's most similar other row (ties: lower index;
    ``-inf``/``-1`` for a lone row). ``pairs``/``pair_scores``: the at most
    ``max_kept`` most similar pairs ``i < j`` at or above the threshold (best
    first; ties by ``i`` then ``j``); ``n_pairs``: how many pairs reach it in all.
    ``pair_sims``: every pairwise similarity (upper triangle, row-major) when
    asked for, else None. ``degree``: with ``weights``, each row's weight plus
    the weights of the rows at or above the threshold with it, else None.
    """

    nn_sim: npt.NDArray[np.float32]
    nn_idx: npt.NDArray[np.intp]
    pairs: npt.NDArray[np.intp]
    pair_scores: npt.NDArray[np.float32]
    n_pairs: int
    pair_sims: npt.NDArray[np.float32] | None
    degree: npt.NDArray[np.int64] | None = None


def best_per_row(
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    scores: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Each row's best ``(col, score)`` among candidate triples (ties: lower col).

    Returns the distinct rows (sorted) with their best column and score.

    Examples
    --------
    >>> rows, cols = np.array([1, 0, 1]), np.array([5, 2, 3])
    >>> best_per_row(rows, cols, np.float32([0.5, 0.1, 0.5]))
    (array([0, 1]), array([2, 3]), array([0.1, 0.5], dtype=float32))
    """
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    return rows[first], cols[first], scores[first]


def square_block(memory_budget: int) -> int:
    """Rows per side of a symmetric-scan tile: a power of two in [16, 2048].

    The largest square of float32 scores within ``memory_budget`` (1,024 for the
    default 8 MiB); shapes change speed, never a result.
    """
    side = int(np.sqrt(max(memory_budget, 4) / 4))
    return int(min(2048, max(16, 2 ** int(np.log2(max(side, 1))))))


class _ScanState:
    """One thread's running state (merged at the end, so threads never share)."""

    def __init__(
        self, X: npt.NDArray[np.float32], weights: npt.NDArray[np.float64] | None = None
    ) -> None:
        self.X = X
        self.weights = weights
        self.degree: npt.NDArray[np.float64] | None = (
            None if weights is None else np.zeros(X.shape[0], np.float64)
        )
        self.deg_parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.n_deg = 0
        self.best = np.full(X.shape[0], -np.inf, dtype=np.float32)
        self.nn: list[Triple] = []
        self.n_nn = 0
        self.pairs: list[Triple] = []
        self.n_stored = 0
        self.n_found = 0

    def add_nn(self, rows: Idx, cols: Idx, s: F32, m2: np.float32) -> None:
        self.nn.append((rows, cols, s))
        self.n_nn += rows.size
        cap = 4 * self.best.size + 65536
        if self.n_nn <= cap:
            return
        r, c, v = (np.concatenate(x) for x in zip(*self.nn, strict=True))
        keep = v >= np.nextafter(self.best[r] - m2, np.float32(-np.inf))
        r, c, v = r[keep], c[keep], v[keep]
        if r.size > cap:  # ties (copies): settle each row's canonical best so far
            v = pair_dots_indexed(self.X, self.X, r, c)
            order = np.lexsort((c, -v, r))
            r, c, v = r[order], c[order], v[order]
            first = np.ones(r.size, dtype=bool)
            first[1:] = r[1:] != r[:-1]
            r, c, v = r[first], c[first], v[first]
        self.nn = [(r, c, v)]
        self.n_nn = r.size

    def add_degree(self, i: Idx, j: Idx, flush: bool = False) -> None:
        """Count each pair for both rows (weighted), in batches of bincounts."""
        self.deg_parts.append((i, j))
        self.n_deg += i.size
        if self.n_deg < 2**20 and not flush:
            return
        assert self.degree is not None and self.weights is not None
        a = np.concatenate([np.concatenate(p) for p in self.deg_parts])
        b = np.concatenate([np.concatenate(p[::-1]) for p in self.deg_parts])
        self.degree += np.bincount(a, self.weights[b], self.X.shape[0])
        self.deg_parts, self.n_deg = [], 0

    def add_pairs(self, i: Idx, j: Idx, s: F32, max_kept: int, m2: np.float32) -> None:
        self.pairs.append((i, j, s))
        self.n_stored += i.size
        cap = 4 * max_kept + 65536
        if self.n_stored <= cap:
            return
        i, j, s = _prune_pairs(self.pairs, max_kept, m2)
        if i.size > cap:  # ties: keep the canonical best max_kept
            s = pair_dots_indexed(self.X, self.X, i, j)
            order = np.lexsort((j, i, -s))[:max_kept]
            i, j, s = i[order], j[order], s[order]
        self.pairs = [(i, j, s)]
        self.n_stored = i.size


def _row_candidates(
    S: F32, best: F32, rmax: F32, m2: np.float32, *, columns: bool = False
) -> tuple[Idx, Idx]:
    """(row, col) in ``S`` within ``m2`` of the running best of each row.

    With ``columns=True`` the "rows" are the columns of ``S`` (the pairs' other
    side) and the result is (column, row). Few live rows: only they are scanned;
    many: one comparison over ``S`` in place, without copying it.
    """
    live = np.flatnonzero(rmax >= np.nextafter(best - m2, np.float32(-np.inf)))
    if live.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    low = np.nextafter(np.maximum(best, rmax) - m2, np.float32(-np.inf))
    if live.size < rmax.size // 4:
        sub = S[:, live].T if columns else S[live]
        r, c = np.divmod(np.flatnonzero(sub >= low[live, None]), sub.shape[1])
        return live[r], c
    if columns:
        c, r = np.divmod(np.flatnonzero(S >= low[None, :]), S.shape[1])
        return r, c
    r, c = np.divmod(np.flatnonzero(S >= low[:, None]), S.shape[1])
    return r, c


def _scan_pair(
    X: F32,
    a0: int,
    a1: int,
    b0: int,
    b1: int,
    state: _ScanState,
    X_c: F32,
    threshold: float | None,
    m: float,
    max_kept: int,
) -> None:
    S = X[a0:a1] @ X[b0:b1].T
    diagonal = a0 == b0
    if diagonal:
        np.fill_diagonal(S, -np.inf)
    m2 = np.float32(2 * m)
    # Nearest neighbours of the block's rows, then of its columns.
    rmax = S.max(axis=1)
    r, c = _row_candidates(S, state.best[a0:a1], rmax, m2)
    if r.size:
        state.add_nn(r + a0, c + b0, S[r, c], m2)
    np.maximum(state.best[a0:a1], rmax, out=state.best[a0:a1])
    if not diagonal:
        cmax = S.max(axis=0)
        c2, r2 = _row_candidates(S, state.best[b0:b1], cmax, m2, columns=True)
        if c2.size:
            state.add_nn(c2 + b0, r2 + a0, S[r2, c2], m2)
        np.maximum(state.best[b0:b1], cmax, out=state.best[b0:b1])
    if threshold is None:
        return
    low = np.nextafter(np.float32(threshold - m), np.float32(-np.inf))
    live = np.flatnonzero(rmax >= low)
    if live.size == 0:
        return
    i, j = np.divmod(np.flatnonzero(S[live] >= low), S.shape[1])
    i = live[i]
    if diagonal:
        upper = j > i
        i, j = i[upper], j[upper]
    if i.size == 0:
        return
    i, j, s = i + a0, j + b0, S[i, j]
    # Count what is canonically >= threshold: sure above the margin, else rescored.
    sure = s >= threshold + m
    unsure = np.flatnonzero(~sure)
    ok = sure.copy()
    if unsure.size:
        canon = pair_dots_indexed(X_c, X_c, i[unsure], j[unsure])
        ok[unsure] = canon >= np.float32(threshold)
    i, j, s = i[ok], j[ok], s[ok]
    state.n_found += i.size
    if state.degree is not None and i.size:
        state.add_degree(i, j)
    if max_kept and i.size:
        state.add_pairs(i, j, s, max_kept, m2)


def _prune_pairs(pairs: list[Triple], max_kept: int, m2: np.float32) -> Triple:
    """Keep pairs that can still be among the ``max_kept`` best (BLAS +- margin)."""
    i, j, s = (np.concatenate(x) for x in zip(*pairs, strict=True))
    if s.size > max_kept:
        kth = np.partition(s, s.size - max_kept)[s.size - max_kept]
        keep = s >= np.nextafter(kth - m2, np.float32(-np.inf))
        i, j, s = i[keep], j[keep], s[keep]
    return i, j, s


def neighbour_scan(
    X: npt.ArrayLike,
    threshold: float | None = None,
    max_kept: int = 0,
    *,
    keep_all: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    n_jobs: int | None = None,
    max_norm: float | None = None,
    weights: npt.ArrayLike | None = None,
) -> NeighbourScan:
    """Each row's nearest other row and the pairs above ``threshold``, exactly.

    One pass over the upper triangle of ``X @ X.T`` in square tiles (each pair
    computed once, serving both its rows), spread over threads with BLAS
    single-threaded. Scores are canonical, so the result does not depend on the
    tile size or the number of threads.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The rows (usually unit vectors).
    threshold : float, optional
        Report pairs whose similarity is at least this (near-duplicates).
    max_kept : int, default=0
        Keep at most this many of those pairs (the most similar); all are counted.
    keep_all : bool, default=False
        Also return every pairwise similarity (for small inputs only).
    memory_budget : int, default=8 MiB
        Bytes of scores one tile may hold.
    n_jobs : int, optional
        Threads (``None``: every core).
    max_norm : float, optional
        The largest row norm of ``X``, if known (else one pass computes it).
    weights : array-like of int, optional
        Count, for each row, the weights of the rows at or above ``threshold``
        with it (plus its own): ``degree``, in memory independent of the pairs.

    Returns
    -------
    NeighbourScan

    Examples
    --------
    >>> scan = neighbour_scan([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], 0.7, 5)
    >>> scan.nn_idx, scan.nn_sim
    (array([2, 2, 1]), array([0.6, 0.8, 0.8], dtype=float32))
    >>> scan.pairs, scan.n_pairs
    (array([[1, 2]]), 1)
    """
    Xc = np.ascontiguousarray(X, dtype=np.float32)
    if Xc.ndim != 2:
        raise ValueError(f"neighbour_scan needs a 2-D array, got shape {Xc.shape}.")
    n, d = Xc.shape
    if max_norm is None:
        max_norm = float(row_norms(Xc).max()) if n else 0.0
    m = float(error_margin(d, np.array([max_norm]), max_norm)[0])
    side = square_block(memory_budget)
    starts = list(range(0, n, side))
    tasks = [(a, b) for ia, a in enumerate(starts) for b in starts[ia:]]
    n_threads = threads_for(n_jobs)
    n_threads = max(1, min(n_threads, len(tasks)))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    states = [_ScanState(Xc, w) for _ in range(n_threads)]

    def run(t: int) -> None:
        for a0, b0 in tasks[t::n_threads]:
            _scan_pair(
                Xc, a0, min(a0 + side, n), b0, min(b0 + side, n), states[t],
                Xc, threshold, m, max_kept,
            )  # fmt: skip

    if n_threads == 1:
        run(0)
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            with ThreadPoolExecutor(n_threads) as pool:
                list(pool.map(run, range(n_threads)))
    nn_sim, nn_idx = _final_nn(Xc, states, np.float32(2 * m))
    pi, pj, ps = _final_pairs(Xc, states, max_kept, np.float32(2 * m))
    pair_sims = None
    if keep_all:
        pair_sims = similarity(Xc, Xc)[np.triu_indices(n, k=1)]
    degree = None
    if w is not None:
        total = w.copy()
        for state in states:
            if state.deg_parts:
                state.add_degree(*state.deg_parts.pop(), flush=True)
            if state.degree is not None:
                total += state.degree
        degree = total.astype(np.int64)
    return NeighbourScan(
        nn_sim,
        nn_idx,
        np.column_stack([pi, pj]).astype(np.intp).reshape(-1, 2),
        ps,
        int(sum(s.n_found for s in states)),
        pair_sims,
        degree,
    )


def cross_scan(
    A: npt.ArrayLike,
    B: npt.ArrayLike,
    threshold: float | None = None,
    max_kept: int = 0,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> NeighbourScan:
    """:func:`neighbour_scan` restricted to pairs (row of ``A``, row of ``B``).

    For a scan split in blocks (Dask shards): the tiles of ``[A; B]`` that pair a
    row of ``A`` with a row of ``B`` are scanned, each pair once, with canonical
    scores; indices refer to the stacked ``[A; B]``. A row's nearest neighbour is
    its best on the other side (``-inf``/``-1`` if that side is empty).
    """
    X = np.ascontiguousarray(np.concatenate([A, B]), dtype=np.float32)
    n_a, n = np.shape(A)[0], X.shape[0]
    max_norm = float(row_norms(X).max()) if n else 0.0
    m = float(error_margin(X.shape[1], np.array([max_norm]), max_norm)[0])
    side = square_block(memory_budget)
    state = _ScanState(X)
    for a0 in range(0, n_a, side):
        for b0 in range(n_a, n, side):
            a1, b1 = min(a0 + side, n_a), min(b0 + side, n)
            _scan_pair(X, a0, a1, b0, b1, state, X, threshold, m, max_kept)
    m2 = np.float32(2 * m)
    nn_sim, nn_idx = _final_nn(X, [state], m2)
    i, j, s = _final_pairs(X, [state], max_kept, m2)
    pairs = np.column_stack([i, j]).astype(np.intp).reshape(-1, 2)
    return NeighbourScan(nn_sim, nn_idx, pairs, s, state.n_found, None)


def _final_nn(X: F32, states: list[_ScanState], m2: np.float32) -> tuple[F32, Idx]:
    n = X.shape[0]
    best = np.max([s.best for s in states], axis=0) if states else np.empty(0)
    parts = [p for s in states for p in s.nn]
    nn_sim = np.full(n, -np.inf, dtype=np.float32)
    nn_idx = np.full(n, -1, dtype=np.intp)
    if not parts:
        return nn_sim, nn_idx
    r, c, v = (np.concatenate(x) for x in zip(*parts, strict=True))
    keep = v >= np.nextafter(best[r] - m2, np.float32(-np.inf))
    r, c = r[keep], c[keep]
    canon = pair_dots_indexed(X, X, r, c)
    order = np.lexsort((c, -canon, r))
    r, c, canon = r[order], c[order], canon[order]
    first = np.ones(r.size, dtype=bool)
    first[1:] = r[1:] != r[:-1]
    nn_sim[r[first]] = canon[first]
    nn_idx[r[first]] = c[first]
    return nn_sim, nn_idx


def _final_pairs(
    X: F32, states: list[_ScanState], max_kept: int, m2: np.float32
) -> Triple:
    parts = [p for s in states for p in s.pairs]
    if not parts or not max_kept:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, np.empty(0, dtype=np.float32)
    i, j, _ = _prune_pairs(parts, max_kept, m2)
    canon = pair_dots_indexed(X, X, i, j)
    order = np.lexsort((j, i, -canon))[:max_kept]
    return i[order], j[order], canon[order]


def sample_pair_similarities(
    X: npt.ArrayLike, m: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Canonical similarities of about ``m`` pairs: all pairs among random rows.

    The rows are drawn without replacement, so every pair is equally likely to be
    included (an unbiased sample of the pairwise distribution), and one matrix
    product replaces ``m`` scattered row gathers.
    """
    A = np.asarray(X, dtype=np.float32)
    n = A.shape[0]
    size = min(n, int(np.ceil((1 + np.sqrt(1 + 8 * m)) / 2)))
    rows = np.sort(rng.choice(n, size=size, replace=False))
    sub = A[rows]
    return similarity(sub, sub)[np.triu_indices(size, k=1)]


def gram(X: npt.NDArray[np.floating], block: int = 4096) -> npt.NDArray[np.float64]:
    """``X.T @ X`` summed in float64 over fixed row blocks (BLAS on one thread).

    Float32 blocks of 4,096 unit rows keep the relative error near 1e-8 (measured
    on 100k MiniLM rows) at sgemm speed, with no float64 copy of ``X``. The block
    size and the single BLAS thread are fixed, so the result is too.
    """
    A = np.asarray(X)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    G = np.zeros((A.shape[1], A.shape[1]), dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
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
    total = group_sum(A, np.zeros(n, dtype=np.intp), 1)[0]
    return mean_std_from_moments(total, row_norms(A) ** 2, gram(A), n)


def mean_std_from_moments(
    total: npt.NDArray[np.float64],
    self_sq: npt.NDArray[np.float64],
    G: npt.NDArray[np.float64],
    n: int,
) -> tuple[float, float]:
    """Pairwise mean and std from the row sum, squared norms and Gram matrix.

    The formulas of :func:`pairwise_mean_std`, for moments summed elsewhere
    (shard by shard on Dask workers).
    """
    n_pairs = n * (n - 1)
    mean = (float(np.sum(total * total)) - float(self_sq.sum())) / n_pairs
    sum_sq = float((G**2).sum() - (self_sq**2).sum())
    var = max(sum_sq / n_pairs - mean**2, 0.0)
    return float(mean), float(np.sqrt(var))


def vendi_from_gram(G: npt.NDArray[np.float64]) -> float:
    """Vendi score from ``X.T @ X`` (or ``X @ X.T``): exp of the eigen-entropy."""
    eigenvalues = np.clip(np.linalg.eigvalsh(G), 0.0, None)
    total = eigenvalues.sum()
    if total <= 0:
        return 0.0
    p = eigenvalues[eigenvalues > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def group_mean_similarity(
    X: npt.ArrayLike, groups: npt.ArrayLike, n_groups: int
) -> npt.NDArray[np.float64]:
    """Mean similarity between the rows of every two groups (self-pairs left out).

    Entry ``(g, h)`` is the mean of ``x_i . x_j`` over ``i`` in ``g``, ``j`` in
    ``h``, ``i != j``; NaN where a group has no such pair (a lone row).
    """
    A = np.asarray(X, dtype=np.float32)
    g = np.asarray(groups, dtype=np.intp)
    sums = group_sum(A, g, n_groups)
    counts = np.bincount(g, minlength=n_groups).astype(np.float64)
    self_sq = np.bincount(g, weights=row_norms(A) ** 2, minlength=n_groups)
    cross = sums @ sums.T
    denom = np.outer(counts, counts)
    np.fill_diagonal(cross, np.diag(cross) - self_sq)
    np.fill_diagonal(denom, counts * (counts - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cross / denom, np.nan)


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
        M = gram(A)
    else:
        B = A.astype(np.float64)
        with threadpool_limits(limits=1, user_api="blas"):
            M = B @ B.T
    return vendi_from_gram(M)
