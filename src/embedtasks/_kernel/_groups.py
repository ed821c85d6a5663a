"""Near-duplicate groups: exact copies, star groups around a centre, lowest similarity.

The linkage rule (the *star* rule) never chains unrelated rows. Exact copies
(identical vectors) are collapsed first, each distinct vector weighted by its
copies. Each distinct vector's *degree* is the number of rows within
``threshold`` of it (its copies included). Rows are visited by degree, highest
first (ties: lower row); a row not yet claimed becomes a *centre* and claims
every unclaimed row within ``threshold`` of it. Then every other row joins the
most similar centre within ``threshold`` (ties: the lower centre). So every member
is within ``threshold`` of its group's centre, two centres are never within
``threshold`` of each other, and two members of one group are at least
``cos(2 * arccos(threshold))`` similar (0.805 at 0.95); :func:`lowest_similarity`
measures the actual lowest.

The pairs come from the symmetric scan (:func:`~._pairs.neighbour_scan`) or the
approximate self-join (:func:`~._approx.approximate_scan`). Where more than
``max_pairs`` pairs reach the threshold (thousands of near-identical rows), only
the rows with a near-duplicate are revisited, query block by query block with
:func:`~._topk.above_threshold`, so memory stays bounded: same rule, same groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._approx import approximate_scan
from embedtasks._kernel._exact import (
    error_margin,
    pair_dots_indexed,
    row_norms,
    similarity,
)
from embedtasks._kernel._pairs import best_per_row, neighbour_scan, square_block
from embedtasks._kernel._topk import DEFAULT_MEMORY_BUDGET, above_threshold, top_k

F32 = npt.NDArray[np.float32]
Idx = npt.NDArray[np.intp]

#: Most near-duplicate pairs held at once (about 20 MB); past it, the dense path.
MAX_GROUP_PAIRS = 1_000_000

#: Most matches one block of :func:`above_threshold` queries may return.
_MAX_BLOCK_MATCHES = 2_000_000


class StarGroups(NamedTuple):
    """Result of :func:`star_groups` (indices refer to the rows given).

    ``labels``: each row's group, numbered by the group's first row (0, 1, ...);
    ``centres``: each group's centre row; ``centre_similarity``: each row's
    similarity to its centre; ``degree``: rows within the threshold of each row
    (itself included); ``n_pairs``: pairs of distinct rows found at or above it;
    ``pairs``: those pairs ``(i, j)``, ``i < j`` (None where the dense path ran).
    """

    labels: npt.NDArray[np.intp]
    centres: npt.NDArray[np.intp]
    centre_similarity: npt.NDArray[np.float32]
    degree: npt.NDArray[np.int64]
    n_pairs: int
    pairs: npt.NDArray[np.intp] | None


def row_keys(X: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    """A 64-bit key per row: equal rows (bit for bit, 0.0 == -0.0) share it.

    A fixed random odd multiplier per column, summed modulo 2**64 over the
    float32 bit patterns; different rows collide with probability ~2**-64, and
    callers verify matches on the rows themselves.
    """
    A = np.ascontiguousarray(X, dtype=np.float32)
    mult = np.random.default_rng(0x5EED).integers(
        1, 2**63, A.shape[1], dtype=np.uint64, endpoint=False
    )
    mult |= np.uint64(1)
    keys = np.zeros(A.shape[0], dtype=np.uint64)
    for c0 in range(0, A.shape[0], 2048):  # blocks that stay in cache
        block = (A[c0 : c0 + 2048] + np.float32(0)).view(np.uint32)  # -0.0 -> 0.0
        block = block.astype(np.uint64)
        keys[c0 : c0 + 2048] = (block * mult).sum(axis=1, dtype=np.uint64)
    return keys


def unique_rows(
    X: npt.NDArray[np.float32],
    keys: npt.NDArray[np.uint64] | None = None,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Identical rows (bit for bit): ``(first row of each, row -> distinct, counts)``.

    ``keys``: :func:`row_keys` of ``X``, if already computed (the distinct rows'
    keys are then ``keys[first]``).

    Distinct rows are numbered in order of their first row, so the numbering does
    not depend on the values. Rows are matched by :func:`row_keys`, verified.

    Examples
    --------
    >>> unique_rows(np.float32([[1, 0], [0, 1], [1, 0]]))
    (array([0, 1]), array([0, 1, 0]), array([2, 1]))
    """
    A = np.ascontiguousarray(X, dtype=np.float32)
    n = A.shape[0]
    if n == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty, np.empty(0, dtype=np.int64)
    keys = row_keys(A) if keys is None else keys
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    copy = np.flatnonzero(first[inverse] != np.arange(n))  # verify the copies only
    if not (A[copy] + np.float32(0) == A[first[inverse[copy]]]).all():  # ~2**-64
        A = A + np.float32(0)  # -0.0 -> 0.0, then compare bytes
        raw = A.view(np.dtype((np.void, A.dtype.itemsize * A.shape[1]))).ravel()
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
    order = np.argsort(first, kind="stable")  # number by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    inverse = rank[inverse]
    counts = np.bincount(inverse, minlength=order.size).astype(np.int64)
    return first[order].astype(np.intp), inverse.astype(np.intp), counts


def match_rows(
    keys: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.float32],
    X: npt.NDArray[np.float32],
    index: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.intp]:
    """For each row of ``X``, the position of the identical row among the keyed
    rows, else -1.

    ``keys`` are :func:`row_keys` of distinct rows: ``rows`` itself, or
    ``rows[index]`` (so a large matrix is not copied to look a few rows up).
    """
    Q = np.ascontiguousarray(X, dtype=np.float32) + np.float32(0)
    out = np.full(Q.shape[0], -1, dtype=np.intp)
    if keys.size == 0 or Q.shape[0] == 0:
        return out
    order = np.argsort(keys, kind="stable")
    q_keys = row_keys(Q)
    pos = np.minimum(np.searchsorted(keys[order], q_keys), keys.size - 1)
    cand = order[pos]
    hit = np.flatnonzero(keys[cand] == q_keys)
    found = cand[hit] if index is None else index[cand[hit]]
    same = (rows[found] == Q[hit]).all(axis=1)
    out[hit[same]] = cand[hit[same]]
    return out


def _csr(n: int, i: Idx, j: Idx) -> tuple[Idx, Idx]:
    """Each row's neighbours (both directions of every pair), sorted by row."""
    rows = np.concatenate([i, j])
    cols = np.concatenate([j, i])
    order = np.lexsort((cols, rows))
    indptr = np.searchsorted(rows[order], np.arange(n + 1))
    return indptr, cols[order]


def _claim(
    order: Idx,
    neighbours_of: Callable[[Idx], list[Idx]],
    n: int,
    block: int,
    *,
    adaptive: bool = False,
) -> npt.NDArray[np.bool_]:
    """The greedy pass: rows in ``order`` become centres unless already claimed.

    Neighbours are fetched for up to ``block`` unclaimed rows at a time; with
    ``adaptive``, the next batch is twice the centres the last one made (a dense
    blob is claimed by its first row, so its other rows are never queried).
    """
    claimed = np.zeros(n, dtype=bool)
    is_centre = np.zeros(n, dtype=bool)
    pos, size = 0, 1 if adaptive else block
    while pos < order.size:
        rest = order[pos:]
        unclaimed = np.flatnonzero(~claimed[rest])
        if unclaimed.size == 0:
            break
        take = unclaimed[:size]
        pos += int(take[-1]) + 1
        batch = rest[take]
        made = 0
        for row, nbrs in zip(batch, neighbours_of(batch), strict=True):
            if claimed[row]:
                continue
            is_centre[row] = True
            claimed[row] = True
            claimed[nbrs] = True
            made += 1
        if adaptive:
            size = min(block, max(1, 2 * made))
    return is_centre


def star_groups(
    X: npt.ArrayLike,
    threshold: float,
    *,
    weights: npt.ArrayLike | None = None,
    approximate: bool = False,
    random_state: int = 0,
    n_jobs: int | None = None,
    max_pairs: int = MAX_GROUP_PAIRS,
) -> StarGroups:
    """Group rows by the star rule (module docstring) around centres.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Distinct rows (usually unit vectors; see :func:`unique_rows`).
    threshold : float
        Rows at least this similar to a centre join it.
    weights : array-like of int, optional
        Copies of each row (its degree counts them); 1 each by default.
    approximate : bool, default=False
        Find the pairs with the inverted-file self-join instead of every pair.
    random_state : int, default=0
        Seeds the approximate path's centroids.
    n_jobs : int, optional
        Threads of the scan.
    max_pairs : int, default=1,000,000
        Pairs held at once; past it the dense path (same groups, bounded memory).

    Returns
    -------
    StarGroups

    Examples
    --------
    >>> X = np.float32([[1, 0], [0.96, 0.28], [0.28, 0.96], [0.6, 0.8]])
    >>> g = star_groups(X, 0.95)
    >>> g.labels, g.centres
    (array([0, 0, 1, 2]), array([0, 2, 3]))
    """
    A = np.ascontiguousarray(X, dtype=np.float32)
    n = A.shape[0]
    w = np.ones(n, np.int64) if weights is None else np.asarray(weights, np.int64)
    t = np.float32(threshold)
    if n < 2:
        empty = np.empty(0, dtype=np.intp)
        members = (empty, empty, np.empty(0, dtype=np.float32))
        return _finish(A, w, np.ones(n, dtype=bool), members, t, w.copy(), 0)
    if approximate:
        scan = approximate_scan(A, threshold, max_pairs, random_state=random_state,
                                n_jobs=n_jobs)  # fmt: skip
    else:
        scan = neighbour_scan(A, threshold, max_pairs, n_jobs=n_jobs, weights=w)
    i, j = scan.pairs[:, 0], scan.pairs[:, 1]
    if scan.degree is not None:
        degree = scan.degree
    else:
        degree = w + np.bincount(i, w[j], n).astype(np.int64)
        degree += np.bincount(j, w[i], n).astype(np.int64)
    if approximate or scan.n_pairs <= max_pairs:
        indptr, cols = _csr(n, i, j)
        order = _by_degree(degree, np.flatnonzero(np.diff(indptr)))
        is_centre = _claim(
            order, lambda rows: [cols[indptr[r] : indptr[r + 1]] for r in rows], n,
            4096,
        )  # fmt: skip
        is_centre[np.diff(indptr) == 0] = True
        members = (i, j, scan.pair_scores)
        return _finish(A, w, is_centre, members, t, degree, int(scan.pairs.shape[0]))
    return _dense_groups(
        A, w, t, degree, np.flatnonzero(scan.nn_sim >= t), scan.n_pairs
    )


def _by_degree(degree: npt.NDArray[np.int64], rows: Idx) -> Idx:
    """``rows`` by decreasing degree, ties by the lower row."""
    return rows[np.lexsort((rows, -degree[rows]))]


def _dense_groups(
    A: F32,
    w: npt.NDArray[np.int64],
    t: np.float32,
    degree: npt.NDArray[np.int64],
    live: Idx,
    n_pairs: int,
) -> StarGroups:
    """The star rule on rows with a near-duplicate, by threshold queries (no pairs)."""
    n = A.shape[0]
    V = A[live]
    max_norm = float(row_norms(V).max()) if live.size else 0.0

    def matches(rows: Idx) -> list[Idx]:
        found = above_threshold(V[rows], V, float(t), corpus_max_norm=max_norm)
        return [idx for idx, _ in found]

    order = _by_degree(degree[live], np.arange(live.size))
    cap = max(1, _MAX_BLOCK_MATCHES // max(live.size, 1))
    local = _claim(order, matches, live.size, cap, adaptive=True)
    is_centre = np.ones(n, dtype=bool)
    is_centre[live] = local
    return _finish(A, w, is_centre, None, t, degree, n_pairs)


def _finish(
    A: F32,
    w: npt.NDArray[np.int64],
    is_centre: npt.NDArray[np.bool_],
    pairs: tuple[Idx, Idx, F32] | None,
    t: np.float32,
    degree: npt.NDArray[np.int64],
    n_pairs: int,
) -> StarGroups:
    """Every other row joins its most similar centre; groups numbered by first row."""
    n = A.shape[0]
    centres = np.flatnonzero(is_centre)
    owner = np.arange(n)
    sim = np.zeros(n, dtype=np.float32)
    others = np.flatnonzero(~is_centre)
    if others.size and pairs is not None:
        i, j, s = pairs
        r = np.concatenate([i, j])
        c = np.concatenate([j, i])
        v = np.concatenate([s, s])
        ok = is_centre[c] & ~is_centre[r]
        r, c, v = best_per_row(r[ok], c[ok], v[ok])
        owner[r], sim[r] = c, v
    elif others.size:
        best = top_k(A[others], A[centres], 1)
        owner[others] = centres[best.indices[:, 0]]
        sim[others] = best.scores[:, 0]
    sim[centres] = pair_dots_indexed(A, A, centres, centres)
    labels = _number_by_first_row(owner)
    found = None if pairs is None else np.column_stack(pairs[:2]).astype(np.intp)
    return StarGroups(
        labels, _centres_of(labels, is_centre), sim, degree, n_pairs, found
    )


def _number_by_first_row(owner: Idx) -> Idx:
    """Groups named by their centre, renumbered 0.. in order of their first row."""
    _, first, inverse = np.unique(owner, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def _centres_of(labels: Idx, is_centre: npt.NDArray[np.bool_]) -> Idx:
    centres = np.empty(int(labels.max()) + 1 if labels.size else 0, dtype=np.intp)
    rows = np.flatnonzero(is_centre)
    centres[labels[rows]] = rows
    return centres


def lowest_similarity(
    X: npt.ArrayLike, *, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> np.float32:
    """The lowest canonical similarity between two distinct rows of ``X``.

    One BLAS pass over the upper triangle in square tiles finds the smallest score
    within a rigorous bound; the candidates near it are rescored canonically. NaN
    for fewer than two rows.

    Examples
    --------
    >>> float(lowest_similarity([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]]))
    0.6000000238418579
    """
    A = np.ascontiguousarray(X, dtype=np.float32)
    n = A.shape[0]
    if n < 2:
        return np.float32(np.nan)
    if n <= 512:
        S = similarity(A, A)
        return np.float32(S[np.triu_indices(n, k=1)].min())
    max_norm = float(row_norms(A).max())
    m2 = 2 * float(error_margin(A.shape[1], np.array([max_norm]), max_norm)[0])
    side = square_block(memory_budget)
    lows: list[tuple[float, int, int]] = []
    for a0 in range(0, n, side):
        for b0 in range(a0, n, side):
            S = A[a0 : a0 + side] @ A[b0 : b0 + side].T
            if a0 == b0:
                S[np.tril_indices(S.shape[0], m=S.shape[1])] = np.inf
            lows.append((float(S.min()), a0, b0))
    floor = min(low for low, _, _ in lows) + m2
    best = np.inf
    for low, a0, b0 in lows:
        if low > floor:
            continue
        S = A[a0 : a0 + side] @ A[b0 : b0 + side].T
        if a0 == b0:
            S[np.tril_indices(S.shape[0], m=S.shape[1])] = np.inf
        r, c = np.nonzero(S <= floor)
        best = min(best, float(pair_dots_indexed(A, A, r + a0, c + b0).min()))
    return np.float32(best)


def group_lowest_similarity(
    X: npt.ArrayLike,
    labels: npt.NDArray[np.intp],
    n_groups: int,
    weights: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`lowest_similarity` of each group of rows.

    A group of one distinct row with ``weights`` above 1 (exact copies) gets the
    row's similarity to itself; a lone row, or a group without rows, gets NaN.
    """
    A = np.asarray(X, dtype=np.float32)
    out = np.full(n_groups, np.nan, dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_groups + 1))
    sizes = np.diff(bounds)
    pairs = np.flatnonzero(sizes == 2)  # most groups: one product each, at once
    if pairs.size:
        a, b = order[bounds[pairs]], order[bounds[pairs] + 1]
        out[pairs] = pair_dots_indexed(A, A, a, b)
    for g in np.flatnonzero(sizes > 2):
        out[g] = lowest_similarity(A[order[bounds[g] : bounds[g + 1]]])
    if weights is not None:
        w = np.asarray(weights)
        ones = np.flatnonzero(sizes == 1)
        rows = order[bounds[ones]]
        copies = w[rows] > 1
        out[ones[copies]] = pair_dots_indexed(A, A, rows[copies], rows[copies])
    return out


class Separation(NamedTuple):
    """Result of :func:`separating_threshold`.

    ``threshold``: the similarity chosen; ``valley``: the least dense similarity
    between the unrelated and the near-copy modes (None: no such valley, so
    ``threshold`` is the cap); ``near_share``: the share of rows above the valley.
    """

    threshold: float
    valley: float | None
    near_share: float


#: Fewest rows, and least share of them, each side of a valley must hold.
_VALLEY_MIN_ROWS, _VALLEY_MIN_SHARE = 5, 0.01
#: A valley counts when its density is at most this share of the lower mode's.
_VALLEY_DEPTH = 0.5


def separating_threshold(
    nearest: npt.ArrayLike, *, cap: float = 0.95, quantile: float = 0.985
) -> Separation:
    """The similarity that separates near-copies from unrelated neighbours.

    ``nearest`` holds rows' similarity to their most similar other (distinct)
    row. Unrelated rows' nearest similarities form one mode (paragraphs: ~0.5
    with all-MiniLM-L6-v2; one-line queries: ~0.9), near-copies another, near 1.
    The density of ``nearest`` is estimated (a Gaussian kernel, Silverman's
    bandwidth, reflected at 1); the valley is the least dense point between two
    of its modes, each side holding at least 1% of the rows (and 5 rows), the
    deepest such valley if its density is at most half its lower mode's. The
    threshold is then the ``quantile`` of the rows below the valley: at most
    1.5% of unrelated rows reach it, and as they reach it in pairs (each other's
    nearest), at most about 0.75% of groups join two unrelated rows; edited
    copies, which spread down from 1 towards the valley, stay above it. Where
    the two modes do not touch (an empty stretch wider than five bandwidths above
    that quantile), the threshold is the middle of that stretch instead.
    Without a valley (no near-copies, or unrelated rows as similar as copies, as
    one-line queries are), ``cap``. The result never exceeds ``cap``.
    """
    s = np.sort(np.asarray(nearest, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    m = s.size
    if m < 20 * _VALLEY_MIN_ROWS:
        return Separation(float(cap), None, 0.0)
    h = max(0.9 * float(s.std()) * m**-0.2, 1e-3)
    grid = np.linspace(max(-1.0, s[0] - 3 * h), 1.0, 1001)
    density = np.zeros(grid.size)
    for start in range(0, m, 4096):  # bounded memory: grid x 4096 at a time
        part = s[start : start + 4096]
        for centre in (part, 2.0 - part):  # reflected at 1
            density += np.exp(-0.5 * ((grid[:, None] - centre) / h) ** 2).sum(1)
    inner = (density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:])
    modes = np.flatnonzero(inner) + 1
    if density[-1] >= density[-2]:
        modes = np.append(modes, grid.size - 1)
    least = max(_VALLEY_MIN_ROWS / m, _VALLEY_MIN_SHARE)
    best: tuple[float, int] | None = None
    for a, lo in enumerate(modes):
        for hi in modes[a + 1 :]:
            v = lo + int(np.argmin(density[lo : hi + 1]))
            below = np.searchsorted(s, grid[v]) / m
            if below < least or 1 - below < least:
                continue
            depth = density[v] / min(density[lo], density[hi])
            if best is None or depth < best[0]:
                best = (float(depth), int(v))
    if best is None or best[0] > _VALLEY_DEPTH:
        return Separation(float(cap), None, 0.0)
    valley = float(grid[best[1]])
    below = s[s < valley]
    level = float(np.quantile(below, quantile, method="higher"))
    above = s[s >= level]
    if above.size > 1:  # the modes apart, with nothing between: the gap's middle
        gaps = np.diff(above)
        i = int(np.argmax(gaps))
        if gaps[i] > 5 * h:
            level = float(above[i] + above[i + 1]) / 2
    return Separation(min(float(cap), level), valley, 1 - below.size / m)
