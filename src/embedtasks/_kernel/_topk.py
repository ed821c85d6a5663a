"""Exact top-k and threshold search in tiles, with canonical scores.

A tile is one float32 BLAS product of a block of queries and a slice of the
corpus. BLAS only *selects*: a score survives if it could belong to the answer
given a rigorous bound on BLAS's rounding (:func:`~._exact.error_margin`), and
the survivors (a few per query) are rescored canonically before the final
choice. So the answer (indices, scores, tie order) is the same bits whatever the
tile shapes, the batch, the thread count or the BLAS kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from embedtasks._kernel._corpus import Dense, Quantized, as_corpus, stream_norms
from embedtasks._kernel._exact import (
    chunk_rows,
    error_margin,
    pair_dots_indexed,
    row_norms,
)
from embedtasks._kernel._exact import (
    n_threads as threads_for,
)
from embedtasks._kernel._merge import TopK, merge_top_k
from embedtasks._kernel._screen import (
    MIN_SCREEN_BUILD_QUERIES,
    MIN_SCREEN_ROWS,
    Screen,
    build_screen,
)

#: Bytes of float32 scores one tile of the kernel may hold (queries x corpus rows).
DEFAULT_MEMORY_BUDGET = 8 * 2**20

#: Columns of the first tile whose k-th best seeds the running threshold.
_SEED_COLUMNS = 1024

#: Below this many queries, one thread with multi-threaded BLAS wins (gemv).
_MIN_QUERIES_PER_THREAD = 64

#: Corpus rows per thread below which the corpus is not split between threads.
_MIN_ROWS_PER_THREAD = 4096


#: Bytes of a memory-mapped corpus one tile may hold resident (then released).
_MAPPED_TILE_BYTES = 32 * 2**20


def tile_shape(
    n_queries: int, n_corpus: int, memory_budget: int, *, mapped_d: int = 0
) -> tuple[int, int]:
    """The one block-size rule: (query rows, corpus rows) of a score tile.

    Up to 1,024 query rows by at least 256 corpus rows, within ``memory_budget``
    bytes of float32 scores; for a memory-mapped corpus of width ``mapped_d``,
    also at most 32 MiB of its rows. Shapes only change speed, never a result.
    """
    block = max(1, min(n_queries, 1024, memory_budget // (4 * 256)))
    width = max(256, memory_budget // (4 * block))
    if mapped_d:
        width = min(width, max(256, _MAPPED_TILE_BYTES // (4 * mapped_d)))
    return block, max(1, min(width, n_corpus))


def check_pair(Q: npt.NDArray, src: Dense | Quantized) -> None:
    if Q.ndim != 2 or Q.shape[1] != src.d:
        raise ValueError(
            f"queries and corpus must be 2-D with the same number of features; got "
            f"shapes {Q.shape} and {(src.n, src.d)}."
        )


def corpus_norm(C: Any) -> float:
    """Largest row norm of a corpus: pass it to :func:`top_k` to skip a pass."""
    norms = stream_norms(as_corpus(C))
    return float(norms.max()) if norms.size else 0.0


def exclusion_pairs(
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


def _below(values: npt.NDArray[np.float32], margin: npt.NDArray[np.float32]):
    """``values - margin``, rounded down (never above the true difference)."""
    return np.nextafter(values - margin, np.float32(-np.inf))


def _merge(vals, rows, cand) -> None:
    """Keep in ``vals`` each row's ``k`` largest of its values and new candidates.

    Only the running k-th best *value* matters (it sets the next threshold; the
    answer is chosen on canonical scores), so no indices are tracked. ``rows`` is
    sorted (hits come out of the tile row by row).
    """
    k = vals.shape[1]
    touched, starts, counts = np.unique(rows, return_index=True, return_counts=True)
    pad = np.full((touched.size, k + int(counts.max())), -np.inf, dtype=vals.dtype)
    pad[:, :k] = vals[touched]
    local = np.repeat(np.arange(touched.size), counts)
    pad[local, k + np.arange(rows.size) - starts[local]] = cand
    vals[touched] = np.partition(pad, pad.shape[1] - k, axis=1)[:, -k:]


def _hits(S, threshold, mask_buffer):
    """(row, col) of the scores in ``S`` above each row's threshold."""
    rowmax = S.max(axis=1)
    live = np.flatnonzero(rowmax > threshold)
    if live.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    if live.size < S.shape[0] // 2:
        sub = S[live]
        r, c = np.divmod(np.flatnonzero(sub > threshold[live, None]), S.shape[1])
        return live[r], c
    # Compare into a reused flat mask and read it with flatnonzero: ~9x faster
    # than np.nonzero on a 2-D mask, which walks two index arrays.
    mask = mask_buffer[: S.size].reshape(S.shape)
    np.greater(S, threshold[:, None], out=mask)
    r, c = np.divmod(np.flatnonzero(mask_buffer[: S.size]), S.shape[1])
    return r, c


def _select(Q, C, rows, cols, k, n_rows, norm_bound=None):
    """Canonical top-k of candidate (row, col) pairs: (indices, scores) padded."""
    scores = pair_dots_indexed(Q, C, rows, cols, norm_bound)
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(rows.size) - starts[rows]
    keep = rank < k
    out_i = np.full((n_rows, k), -1, dtype=np.intp)
    out_s = np.full((n_rows, k), -np.inf, dtype=np.float32)
    out_i[rows[keep], rank[keep]] = cols[keep]
    out_s[rows[keep], rank[keep]] = scores[keep]
    return out_i, out_s


def _float_dots(Q, C, rows, cols):
    """float32 ``Q[rows[i]] . C[cols[i]]`` (any order: within Higham's bound).

    The corpus rows are read in increasing order, in chunks of bounded memory.
    """
    out = np.empty(rows.size, dtype=np.float32)
    by_col = np.argsort(cols, kind="stable")
    step = chunk_rows(Q.shape[1])
    for p0 in range(0, rows.size, step):
        at = by_col[p0 : p0 + step]
        out[at] = np.einsum("ij,ij->i", Q[rows[at]], C.rows(cols[at]))
    return out


def _narrow(Q, C, rows, cols, k, margin):
    """Drop candidates that float32 scores prove out of each row's top ``k``.

    The screen's bound is wide, so it passes a few dozen rows per query; their
    float32 dot products (any summation order errs by at most ``margin``) keep
    only those within ``2 * margin`` of the k-th best float32 score, which the
    canonical top k cannot fall below. ``rows`` is sorted.
    """
    if rows.size == 0:
        return rows, cols
    approx = _float_dots(Q, C, rows, cols)
    order = np.lexsort((-approx, rows))
    starts = np.searchsorted(rows, np.arange(Q.shape[0]))
    counts = np.diff(np.append(starts, rows.size))
    kth = np.full(Q.shape[0], -np.inf, dtype=np.float32)
    full = counts >= k
    kth[full] = approx[order[starts[full] + k - 1]]
    keep = approx >= _below(kth, 2 * margin)[rows]
    return rows[keep], cols[keep]


class _Block:
    """One block of queries: running k-th values, candidates, settled top-k.

    BLAS tiles give float32 scores under the float32 ``margin``; an integer
    ``screen`` gives exact integer products under its own, wider bound (integer
    units), and its candidates are narrowed by float32 scores before the
    canonical rescoring.
    """

    def __init__(self, Q, C, k, margin, norm_bound, screen, cap) -> None:
        self.Q, self.C, self.k, self.margin = Q, C, k, margin
        self.norm_bound, self.screen, self.cap = norm_bound, screen, cap
        n = Q.shape[0]
        if screen is None:
            self.m2 = 2 * margin
            self.vals = np.full((n, k), -np.inf, dtype=np.float32)
        else:
            self.enc = screen.encode(Q)
            self.m2 = 2 * self.enc.units
            self.vals = np.full((n, k), -np.inf, dtype=np.float64)
            # Integer scores at or below it cannot be in the top k (see refine).
            self.floor = np.full(n, np.iinfo(np.int32).min, dtype=np.int64)
        self.sure = np.full((n, k), -1, dtype=np.intp)
        self.found_r: list = []
        self.found_c: list = []
        self.found_s: list = []
        self.stored = 0

    def threshold(self, S, first: bool):
        """Per query: tile scores at or below it cannot be in the top k."""
        k = self.k
        if first and self.screen is not None and S.shape[1] > k:
            # The first tile's k best rows per query bound the final k-th twice:
            # by their integer k-th best, and by their float32 scores (refine).
            top = np.argpartition(S, S.shape[1] - k, axis=1)[:, -k:]
            kth = np.take_along_axis(S, top, axis=1).min(axis=1)
            real = np.flatnonzero(kth > np.iinfo(np.int32).min)  # not excluded
            self.refine(real, top[real])
        elif first:
            # The k-th best of the first tile (ties kept) is a lower bound of the
            # final k-th; of a short head only, which keeps the partition cheap
            # when one query's tile is the whole corpus.
            head = S[:, : max(_SEED_COLUMNS, k + 1)]
            if head.shape[1] > k:
                kth = np.partition(head, head.shape[1] - k, axis=1)
                kth = kth[:, head.shape[1] - k]
            else:
                kth = np.full(S.shape[0], -np.inf, dtype=np.float32)
        else:
            kth = self.vals.min(axis=1)
        threshold = _below(kth, self.m2)
        if self.screen is None:
            return threshold
        # Integer tiles: I > t iff I > floor(t).
        info = np.iinfo(np.int32)
        threshold = np.maximum(np.floor(threshold), self.floor)
        return np.clip(threshold, info.min, info.max).astype(np.int32)

    def refine(self, rows, cols) -> None:
        """Raise the integer floor of ``rows`` from k real corpus rows each.

        ``cols[i]`` holds k corpus rows (not excluded) for query ``rows[i]``: the
        smallest of their float32 scores, less the float32 margin, bounds the
        query's true k-th best from below (``L``), and a row can only be in the
        top k if its estimate reaches ``L`` less the screen's bound:
        ``I >= (L - offset) / step - units``. Against the integer k-th best less
        *twice* the bound, this about halves the window.
        """
        if rows.size == 0:
            return
        f = _float_dots(self.Q, self.C, np.repeat(rows, self.k), cols.ravel())
        low = _below(f.reshape(-1, self.k).min(axis=1), self.margin[rows])
        enc = self.enc
        bound = (low - enc.offset[rows]) / enc.step[rows] - enc.units[rows] - 2
        info = np.iinfo(np.int32)
        floor = np.clip(np.floor(bound), info.min, info.max).astype(np.int64)
        self.floor[rows] = np.maximum(self.floor[rows], floor)

    def add(self, r, c, s) -> None:
        """Candidates (row, corpus column, tile score) from one tile."""
        _merge(self.vals, r, s)
        self.found_r.append(r)
        self.found_c.append(c)
        self.found_s.append(s)
        self.stored += r.size
        if self.stored > self.cap:  # many ties (copies): settle what was seen
            self.settle()

    def _refined(self, r, c, s, keep):
        """``keep`` narrowed by a floor refined from each query's k best kept."""
        r_k, c_k, s_k = r[keep], c[keep], s[keep]
        order = np.lexsort((-s_k, r_k))
        r_k, c_k = r_k[order], c_k[order]
        starts = np.searchsorted(r_k, np.arange(self.Q.shape[0]))
        counts = np.diff(np.append(starts, r_k.size))
        rows = np.flatnonzero(counts >= self.k)
        at = starts[rows, None] + np.arange(self.k)
        self.refine(rows, c_k[at])
        return keep & (s > self.floor[r])

    def settle(self):
        """Canonical top-k of the rows settled so far and of the new candidates.

        ``sure`` holds each query's canonical top-k among the candidates settled
        before (-1: none); a new candidate is kept if its tile score is within the
        margin of the running k-th best. The canonical top-k of the union is the
        canonical top-k of everything seen, so candidates never pile up (ties).
        """
        sure = self.sure
        parts_r = [np.nonzero(sure >= 0)[0]]
        parts_c = [sure[sure >= 0]]
        if self.found_r:
            found = (self.found_r, self.found_c, self.found_s)
            r, c, s = (np.concatenate(v) for v in found)
            keep = s >= _below(self.vals.min(axis=1), self.m2)[r]
            if self.screen is not None:
                keep = self._refined(r, c, s, keep)
            parts_r.append(r[keep])
            parts_c.append(c[keep])
        self.found_r, self.found_c, self.found_s, self.stored = [], [], [], 0
        r, c = np.concatenate(parts_r), np.concatenate(parts_c)
        if self.screen is not None:
            order = np.argsort(r, kind="stable")
            r, c = _narrow(self.Q, self.C, r[order], c[order], self.k, self.margin)
        n = self.Q.shape[0]
        sel_i, sel_s = _select(self.Q, self.C, r, c, self.k, n, self.norm_bound)
        sure[:] = sel_i
        return sel_i, sel_s


def _top_k_into(
    Q, C, margin, norm_bound, ex_rows, ex_cols, indices, scores, memory_budget,
    screen=None,
):  # fmt: skip
    """Fill ``indices``/``scores`` (views of the result) on the calling thread."""
    n_q, n_c = Q.shape[0], C.n
    k = indices.shape[1]
    block, width = tile_shape(n_q, n_c, memory_budget, mapped_d=C.mapped * C.d)
    width = max(width, k)
    dtype = np.float32 if screen is None else np.int32
    lowest = -np.inf if screen is None else np.iinfo(np.int32).min
    buffer = np.empty(block * min(width, n_c), dtype=dtype)
    mask_buffer = np.empty(buffer.size, dtype=bool)
    tile_buffer = None if C.kind == "float32" else np.empty((width, C.d), np.float32)

    for q0 in range(0, n_q, block):
        q1 = min(q0 + block, n_q)
        # The screen's wide bound passes more rows: settle less often (memory
        # stays a few times the tile's).
        cap = max(1 << 16, (32 if screen is None else 128) * (q1 - q0) * k)
        run = _Block(Q[q0:q1], C, k, margin[q0:q1], norm_bound[q0:q1], screen, cap)
        in_block = (ex_rows >= q0) & (ex_rows < q1)
        b_rows, b_cols = ex_rows[in_block] - q0, ex_cols[in_block]
        for c0 in range(0, n_c, width):
            c1 = min(c0 + width, n_c)
            # A contiguous tile (the screen's kernel writes rows back to back).
            S = buffer[: (q1 - q0) * (c1 - c0)].reshape(q1 - q0, c1 - c0)
            if screen is not None:
                screen.product(run.enc.codes, c0, c1, S)
            elif q1 - q0 == 1:
                np.matmul(C.tile(c0, c1, tile_buffer), run.Q[0], out=S[0])
            else:
                np.matmul(run.Q, C.tile(c0, c1, tile_buffer).T, out=S)
            C.done(c0, c1)
            lo, hi = np.searchsorted(b_cols, [c0, c1])
            if hi > lo:
                S[b_rows[lo:hi], b_cols[lo:hi] - c0] = lowest
            r, c = _hits(S, run.threshold(S, first=c0 == 0), mask_buffer)
            if r.size:
                run.add(r, c + c0, S[r, c])
        indices[q0:q1], scores[q0:q1] = run.settle()


def top_k(
    queries: npt.ArrayLike,
    corpus: Any,
    k: int,
    *,
    exclude: Sequence[npt.ArrayLike] | None = None,
    self_offset: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    n_jobs: int | None = None,
    corpus_max_norm: float | None = None,
    screen: Screen | bool | None = None,
) -> TopK:
    """Exact top-``k`` corpus rows by dot product for each query, in bounded memory.

    Scores are canonical (see :mod:`embedtasks._kernel`): a query gets the same
    indices and the same score bits whether it is searched alone or in any batch,
    on any number of threads.

    Parameters
    ----------
    queries : array-like of shape (n_queries, n_features)
        Query vectors (float32 is used as is; other dtypes are cast).
    corpus : array-like of shape (n_corpus, n_features)
        Vectors to rank. Not copied when it is C-contiguous float32 (a
        ``np.memmap`` is read in place, tile by tile).
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
        every core; ``1`` stays on the calling thread.
    corpus_max_norm : float, optional
        The largest row norm of ``corpus`` (see :func:`corpus_norm`), if known;
        otherwise it is computed (one pass over the corpus).
    screen : Screen, bool or None, default=None
        How candidates are found in large batches (see ``_screen``): a
        :class:`Screen` of this corpus (from :func:`build_screen`, kept by callers
        that search the same corpus again), ``True``/``None`` to build one when
        the batch is large enough for it to pay, ``False`` for float32 BLAS
        only. It changes speed, never the result.

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
    C = as_corpus(corpus)
    check_pair(Q, C)
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}.")
    n_q, n_c = Q.shape[0], C.n
    indices = np.full((n_q, k), -1, dtype=np.intp)
    scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    result = TopK(indices, scores)
    if n_q == 0 or n_c == 0:
        return result

    ex_rows, ex_cols = exclusion_pairs(n_q, n_c, exclude, self_offset)
    if corpus_max_norm is None:
        corpus_max_norm = corpus_norm(C)
    q_norms = row_norms(Q)
    margin = error_margin(Q.shape[1], q_norms, corpus_max_norm)
    # |q| |c| for every corpus row c, with room for the norms' own rounding.
    norm_bound = q_norms * (corpus_max_norm * (1 + 1e-6))
    # Past n_corpus every slot is padding: rank only what exists.
    indices, scores = indices[:, : min(k, n_c)], scores[:, : min(k, n_c)]
    if screen is None or screen is True:
        screen = _auto_screen(C, n_q, required=screen is True)
    elif screen is False:
        screen = None
    if screen is not None and (screen.n, screen.d) != (n_c, Q.shape[1]):
        raise ValueError(
            f"The screen was built for a {screen.n} x {screen.d} corpus, not this "
            f"{n_c} x {Q.shape[1]} one. Build it with build_screen(corpus)."
        )
    n_threads = threads_for(n_jobs)
    n_threads = min(n_threads, n_q // _MIN_QUERIES_PER_THREAD)
    if n_threads <= 1:
        _top_k_into(
            Q, C, margin, norm_bound, ex_rows, ex_cols, indices, scores,
            memory_budget, screen,
        )  # fmt: skip
        return result
    # Threads split the corpus: each tile is read once, by one thread; each
    # part's canonical top-k merges exactly (canonical scores, same tie rule).
    n_threads = min(n_threads, max(1, n_c // _MIN_ROWS_PER_THREAD))
    if n_threads <= 1:
        _top_k_into(
            Q, C, margin, norm_bound, ex_rows, ex_cols, indices, scores,
            memory_budget, screen,
        )  # fmt: skip
        return result
    bounds = np.linspace(0, n_c, n_threads + 1).astype(int)
    width = indices.shape[1]

    def run(part: int) -> TopK:
        c0, c1 = bounds[part], bounds[part + 1]
        sel = (ex_cols >= c0) & (ex_cols < c1)
        kk = min(width, c1 - c0)
        out = TopK(
            np.full((n_q, kk), -1, dtype=np.intp),
            np.full((n_q, kk), -np.inf, dtype=np.float32),
        )
        part_screen = None if screen is None else screen.rows_slice(c0, c1)
        _top_k_into(
            Q, C.rows_slice(c0, c1), margin, norm_bound, ex_rows[sel],
            ex_cols[sel] - c0, out.indices, out.scores, memory_budget, part_screen,
        )  # fmt: skip
        return out

    with threadpool_limits(limits=1, user_api="blas"):
        with ThreadPoolExecutor(n_threads) as pool:
            parts = list(pool.map(run, range(n_threads)))
    merged = merge_top_k(parts, bounds[:-1].tolist(), width)
    indices[:], scores[:] = merged.indices, merged.scores
    return result


def _auto_screen(C: Dense | Quantized, n_q: int, *, required: bool) -> Screen | None:
    """A screen for this search when it pays (many queries, a large corpus)."""
    if not isinstance(C, Dense):
        return None
    if not required and (n_q < MIN_SCREEN_BUILD_QUERIES or C.n < MIN_SCREEN_ROWS):
        return None
    return build_screen(C)


def top_k_rescored(
    queries: npt.ArrayLike,
    coarse: Any,
    fine: Any,
    k: int,
    n_candidates: int,
    *,
    exclude: Sequence[npt.ArrayLike] | None = None,
    self_offset: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    n_jobs: int | None = None,
) -> TopK:
    """Top-``k`` by ``fine`` scores among the ``n_candidates`` best by ``coarse``.

    The int8 path: ``coarse`` is the quantised corpus (a :class:`Quantized`, 4x
    smaller), searched exactly; its best ``n_candidates`` rows per query are
    rescored canonically against ``fine`` (the float32 rows, e.g. a file mapped
    in place, of which only those rows are read). Equal to :func:`top_k` on
    ``fine`` whenever the true top-``k`` is among the candidates.
    """
    Q = np.ascontiguousarray(queries, dtype=np.float32)
    src, exact = as_corpus(coarse), as_corpus(fine)
    if (src.n, src.d) != (exact.n, exact.d):
        raise ValueError(
            f"coarse and fine corpora must have the same shape; got "
            f"{(src.n, src.d)} and {(exact.n, exact.d)}."
        )
    cand = top_k(
        Q,
        src,
        max(k, n_candidates),
        exclude=exclude,
        self_offset=self_offset,
        memory_budget=memory_budget,
        n_jobs=n_jobs,
    )
    r, j = np.nonzero(cand.indices >= 0)
    indices, scores = _select(Q, exact, r, cand.indices[r, j], k, Q.shape[0])
    return TopK(indices, scores)


def above_threshold(
    queries: npt.ArrayLike,
    corpus: Any,
    threshold: float,
    *,
    self_offset: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    corpus_max_norm: float | None = None,
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]]:
    """Every corpus row whose canonical dot product with a query is >= ``threshold``.

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
    C = as_corpus(corpus)
    check_pair(Q, C)
    n_q, n_c = Q.shape[0], C.n
    margin = np.zeros(n_q, dtype=np.float32)
    if n_q and n_c:
        if corpus_max_norm is None:
            corpus_max_norm = corpus_norm(C)
        margin = error_margin(Q.shape[1], row_norms(Q), corpus_max_norm)
    ex_rows, ex_cols = exclusion_pairs(n_q, n_c, None, self_offset)
    block, width = tile_shape(n_q, n_c, memory_budget, mapped_d=C.mapped * C.d)
    buffer = np.empty((block, width), dtype=np.float32)
    mask_buffer = np.empty(buffer.size, dtype=bool)
    tile_buffer = None if C.kind == "float32" else np.empty((width, C.d), np.float32)
    found_r, found_c = [], []
    for q0 in range(0, n_q, block):
        q1 = min(q0 + block, n_q)
        low = _below(np.full(q1 - q0, threshold, dtype=np.float32), margin[q0:q1])
        in_block = (ex_rows >= q0) & (ex_rows < q1)
        b_rows, b_cols = ex_rows[in_block] - q0, ex_cols[in_block]
        for c0 in range(0, n_c, width):
            c1 = min(c0 + width, n_c)
            S = buffer[: q1 - q0, : c1 - c0]
            np.matmul(Q[q0:q1], C.tile(c0, c1, tile_buffer).T, out=S)
            C.done(c0, c1)
            lo, hi = np.searchsorted(b_cols, [c0, c1])
            S[b_rows[lo:hi], b_cols[lo:hi] - c0] = -np.inf
            r, c = _hits(S, low, mask_buffer)
            found_r.append(r + q0)
            found_c.append(c + c0)
    rows = np.concatenate(found_r) if found_r else np.empty(0, np.intp)
    cols = np.concatenate(found_c) if found_c else np.empty(0, np.intp)
    vals = pair_dots_indexed(Q, C, rows, cols)
    ok = vals >= np.float32(threshold)
    rows, cols, vals = rows[ok], cols[ok], vals[ok]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    bounds = np.searchsorted(rows, np.arange(n_q + 1))
    return [
        (cols[a:b].astype(np.intp), vals[a:b].astype(np.float32))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
