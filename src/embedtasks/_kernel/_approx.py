"""Approximate all-pairs work for millions of rows: an inverted-file self-join.

Rows are grouped by their ``n_probe`` most similar of ``n_lists`` spherical
k-means centroids (trained on a sample); every list is then scanned exactly, with
the symmetric scan or :func:`top_k`, and the lists' answers are merged. Two rows
are compared when they share a list, so near-duplicates (which sit in the same
lists) are found with high recall at a small fraction of the quadratic cost; each
score found is canonical, so results do not depend on the list order or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from embedtasks._kernel._exact import (
    group_mean_direction,
    l2_normalize,
    row_norms,
    similarity,
)
from embedtasks._kernel._exact import (
    n_threads as threads_for,
)
from embedtasks._kernel._pairs import NeighbourScan, best_per_row, neighbour_scan
from embedtasks._kernel._topk import TopK, top_k

F32 = npt.NDArray[np.float32]
Idx = npt.NDArray[np.intp]
_T = TypeVar("_T")

#: Rows above which "auto" neighbour search turns approximate.
APPROXIMATE_ABOVE = 200_000


def use_approximate(neighbors: str, n: int) -> bool:
    """Whether all-pairs work on ``n`` rows takes the approximate path.

    ``neighbors`` is an estimator's setting: ``"approximate"``, ``"exact"`` or
    ``"auto"`` (approximate past :data:`APPROXIMATE_ABOVE` rows).
    """
    return neighbors == "approximate" or (neighbors == "auto" and n > APPROXIMATE_ABOVE)


def default_lists(n: int) -> int:
    """About sqrt(n) lists (1,000 for a million rows), at least 1."""
    return int(max(1, min(4096, round(np.sqrt(n)))))


def train_centroids(
    X: npt.NDArray[np.float32],
    n_lists: int,
    *,
    sample: int | None = None,
    n_iter: int = 8,
    random_state: int = 0,
    init: str = "random",
) -> npt.NDArray[np.float32]:
    """Spherical k-means centroids (unit rows) trained on a random sample of ``X``.

    ``init="random"`` starts from random sample rows; ``"k-means++"`` picks each
    start with probability proportional to its distance to the nearest start
    chosen so far (Arthur and Vassilvitskii), which separates topics better.
    """
    rng = np.random.default_rng(random_state)
    n = X.shape[0]
    size = min(n, sample or max(50 * n_lists, 10_000))
    S = l2_normalize(X[np.sort(rng.choice(n, size, replace=False))])
    n_lists = min(n_lists, size)
    if init == "k-means++":
        C = _plus_plus(S, n_lists, rng)
    else:
        C = S[rng.choice(size, n_lists, replace=False)].copy()
    for _ in range(n_iter):
        assign = top_k(S, C, 1).indices[:, 0]
        counts = np.bincount(assign, minlength=n_lists)
        C = group_mean_direction(S, assign, n_lists)
        empty = np.flatnonzero(counts == 0)
        if empty.size:  # re-seed empty lists with random sample rows
            C[empty] = S[rng.choice(size, empty.size, replace=False)]
    return C


def _plus_plus(
    S: npt.NDArray[np.float32], n_lists: int, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Greedy k-means++ starts among the unit rows ``S`` (as scikit-learn's).

    Each step draws ``2 + log(k)`` candidates with probability proportional to
    their distance to the nearest start so far (``1 - cos``, half the squared
    distance) and keeps the one that lowers the total distance most.
    """
    n_trials = 2 + int(np.log(n_lists))
    chosen = [int(rng.integers(S.shape[0]))]
    best = similarity(S, S[chosen[-1:]])[:, 0].astype(np.float64)
    for _ in range(1, n_lists):
        weight = np.maximum(1.0 - best, 0.0)
        total = weight.sum()
        if total <= 0:  # every row is a copy of a start already chosen
            chosen.append(int(rng.integers(S.shape[0])))
            continue
        candidates = rng.choice(S.shape[0], size=n_trials, p=weight / total)
        sims = np.maximum(best[:, None], similarity(S, S[candidates]))
        pick = int(np.argmin((1.0 - sims).sum(axis=0)))
        chosen.append(int(candidates[pick]))
        best = sims[:, pick]
    return S[chosen].copy()


def _lists(X: F32, centroids: F32, n_probe: int) -> list[Idx]:
    """Row ids of each list (sorted), each row in its ``n_probe`` nearest lists."""
    probe = top_k(X, centroids, min(n_probe, centroids.shape[0])).indices
    rows = np.repeat(np.arange(X.shape[0]), probe.shape[1])
    lists = probe.ravel()
    order = np.lexsort((rows, lists))
    rows, lists = rows[order], lists[order]
    bounds = np.searchsorted(lists, np.arange(centroids.shape[0] + 1))
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _inverted_lists(
    X: Any, n_lists: int | None, n_probe: int, random_state: int
) -> tuple[F32, list[Idx], float]:
    """(rows as float32, each list's members, the largest row norm)."""
    A = np.ascontiguousarray(X, dtype=np.float32)
    n = A.shape[0]
    C = train_centroids(A, n_lists or default_lists(n), random_state=random_state)
    max_norm = float(row_norms(A).max()) if n else 0.0
    return A, _lists(A, C, n_probe), max_norm


def _map_lists(
    fn: Callable[[Idx], _T], members: list[Idx], n_jobs: int | None
) -> list[_T]:
    """``fn`` over the lists, largest first, spread over threads (BLAS on one)."""
    order = np.argsort([-m.size for m in members], kind="stable")
    todo = [members[i] for i in order if members[i].size > 1]
    n_threads = threads_for(n_jobs)
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads == 1:
            return [fn(m) for m in todo]
        with ThreadPoolExecutor(n_threads) as pool:
            return list(pool.map(fn, todo))


def approximate_scan(
    X: Any,
    threshold: float | None = None,
    max_kept: int = 0,
    *,
    n_lists: int | None = None,
    n_probe: int = 2,
    random_state: int = 0,
    n_jobs: int | None = None,
) -> NeighbourScan:
    """:func:`neighbour_scan` (nearest other row, pairs above a threshold), approximate.

    Each row is compared with the rows that share one of its ``n_probe`` lists.
    Rows alone in their lists get no neighbour (``-inf``/``-1``). Measured on a
    million Banking77-like rows: recall of the pairs above 0.95 >= 0.99 (see
    ``benchmarks/bench_scale.py``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = l2_normalize(rng.standard_normal((2000, 16)))
    >>> X[1000:1010] = X[:10]  # ten exact copies
    >>> scan = approximate_scan(X, 0.999, 100, n_lists=8)
    >>> scan.n_pairs, sorted(map(tuple, scan.pairs.tolist()))[:2]
    (10, [(0, 1000), (1, 1001)])
    """
    A, members, max_norm = _inverted_lists(X, n_lists, n_probe, random_state)
    n = A.shape[0]

    def scan(rows: Idx) -> tuple[Idx, NeighbourScan]:
        found = neighbour_scan(
            A[rows], threshold, max_kept, n_jobs=1, max_norm=max_norm
        )
        return rows, found

    results = _map_lists(scan, members, n_jobs)
    nn_sim = np.full(n, -np.inf, dtype=np.float32)
    nn_idx = np.full(n, -1, dtype=np.intp)
    if results:
        r = np.concatenate([rows for rows, _ in results])
        s = np.concatenate([res.nn_sim for _, res in results])
        j = np.concatenate([rows[res.nn_idx] for rows, res in results])
        ok = np.isfinite(s)
        r, j, s = best_per_row(r[ok], j[ok], s[ok])
        nn_sim[r], nn_idx[r] = s, j
    pi, pj, ps, n_pairs = _merge_pairs(results, n, max_kept)
    return NeighbourScan(
        nn_sim, nn_idx, np.column_stack([pi, pj]).reshape(-1, 2), ps, n_pairs, None
    )


def _merge_pairs(
    results: list[tuple[Idx, NeighbourScan]], n: int, max_kept: int
) -> tuple[Idx, Idx, F32, int]:
    empty = np.empty(0, dtype=np.intp)
    parts = [(rows[res.pairs[:, 0]], rows[res.pairs[:, 1]], res.pair_scores)
             for rows, res in results if res.pairs.size]  # fmt: skip
    if not parts:
        return empty, empty, np.empty(0, dtype=np.float32), 0
    i, j, s = (np.concatenate(x) for x in zip(*parts, strict=True))
    key, first = np.unique(i * n + j, return_index=True)
    i, j, s = i[first], j[first], s[first]
    order = np.lexsort((j, i, -s))
    # A pair shared by several lists is counted once; counts beyond max_kept per
    # list are not known, so n_pairs counts the pairs kept (set max_kept high).
    n_pairs = int(key.size)
    order = order[:max_kept]
    return i[order], j[order], s[order], n_pairs


def approximate_top_k(
    X: Any,
    k: int,
    *,
    n_lists: int | None = None,
    n_probe: int = 2,
    random_state: int = 0,
    n_jobs: int | None = None,
) -> TopK:
    """Each row's ``k`` most similar other rows, among the rows sharing a list."""
    A, members, max_norm = _inverted_lists(X, n_lists, n_probe, random_state)
    n = A.shape[0]

    def search(rows: Idx) -> tuple[Idx, TopK]:
        B = A[rows]
        found = top_k(
            B, B, min(k, rows.size - 1), self_offset=0, n_jobs=1,
            corpus_max_norm=max_norm,
        )  # fmt: skip
        return rows, found

    results = _map_lists(search, members, n_jobs)
    indices = np.full((n, k), -1, dtype=np.intp)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    if not results:
        return TopK(indices, scores)
    r = np.concatenate([np.repeat(rows, f.indices.shape[1]) for rows, f in results])
    j = np.concatenate([rows[f.indices].ravel() for rows, f in results])
    s = np.concatenate([f.scores.ravel() for _, f in results])
    ok = np.isfinite(s)
    r, j, s = r[ok], j[ok], s[ok]
    _, first = np.unique(r * n + j, return_index=True)  # a pair from two lists
    r, j, s = r[first], j[first], s[first]
    order = np.lexsort((j, -s, r))
    r, j, s = r[order], j[order], s[order]
    starts = np.searchsorted(r, np.arange(n))
    rank = np.arange(r.size) - starts[r]
    keep = rank < k
    indices[r[keep], rank[keep]] = j[keep]
    scores[r[keep], rank[keep]] = s[keep]
    return TopK(indices, scores)
