"""A corpus sharded over Dask workers: exact search, self-joins and scans by block.

An estimator fitted on a :mod:`dask.array` keeps each row block (a *shard*) on the
worker that computed it (normalised there, never gathered to the client) and
records where each shard starts. Every question is then asked shard by shard on
the workers and merged exactly on the client: the kernel's scores are canonical
(bit-identical however the work is split), so the merge of per-shard answers, by
score with ties to the lower global row, equals the in-memory answer bit for bit.

- search: the queries are broadcast, :func:`~embedtasks._top_k` runs
  on each shard, :func:`~embedtasks._kernel.merge_top_k` merges;
- self-join (``kneighbors(X=None)``, outlier training scores): one task per
  (query block, shard) pair, each row excluding itself, merged per query block;
- near-duplicate scan: :func:`~embedtasks._neighbour_scan` on each
  shard and a cross scan on each pair of shards ``i < j``, merged.

The estimators hold a :class:`ShardedCorpus` where they would hold the matrix and
call the dispatchers here (``top_k``, ``above_threshold``, ``neighbour_scan``...),
which fall through to the kernel for in-memory arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._exact import group_sum, l2_normalize, row_norms
from embedtasks._kernel._merge import merge_top_k
from embedtasks._kernel._pairs import NeighbourScan, cross_scan, gram, neighbour_scan
from embedtasks._kernel._topk import (
    TopK,
    above_threshold,
    corpus_norm,
    exclusion_pairs,
    top_k,
)
from embedtasks._optional import import_optional

F32 = npt.NDArray[np.float32]
Idx = npt.NDArray[np.intp]
Hits = list[tuple[Idx, F32]]
#: What one shard's scan sends back: NeighbourScan's fields but ``pair_sims``.
ScanPart = tuple[F32, Idx, Idx, F32, int]

__all__ = [
    "ShardedCorpus",
    "is_dask_array",
]


def is_dask_array(X: Any) -> bool:
    """Whether ``X`` is a :class:`dask.array.Array` (without importing dask)."""
    module = type(X).__module__ or ""
    return module.startswith("dask.array") and type(X).__name__ == "Array"


# -- tasks run on the workers ---------------------------------------------------


def _prepare(block: Any, offset: int, normalize: bool, owner: str) -> F32:
    """One shard as C-contiguous float32 (unit rows if asked), rows checked."""
    A = np.asarray(block)
    if A.dtype.kind not in "fiub":
        raise TypeError(
            f"{owner} needs numeric embeddings; the dask array's block at row "
            f"{offset} has dtype {A.dtype}. Cast it first: X.astype('float32')."
        )
    source = A
    if A.dtype.kind != "f":
        A = A.astype(np.float64)
    A = np.ascontiguousarray(A, dtype=np.float32)
    # Normalise in place only a copy of ours: the block may be a persisted array.
    owned = not np.shares_memory(A, source)
    finite = np.isfinite(A).all(axis=1)
    if not finite.all():
        row = offset + int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"{owner} got NaN or infinity in row {row} of the dask array X. Drop or "
            "fill the rows with missing embeddings before fit (e.g. re-embed them)."
        )
    return l2_normalize(A, copy=not owned) if normalize else A


def _shard_top_k(
    Q: F32,
    C: F32,
    self_offset: int | None,
    max_norm: float,
    k: int,
    exclude: Sequence[npt.ArrayLike] | None,
    budget: int,
    n_jobs: int,
) -> TopK:
    return top_k(
        Q,
        C,
        k,
        exclude=exclude,
        self_offset=self_offset,
        memory_budget=budget,
        n_jobs=n_jobs,
        corpus_max_norm=max_norm,
    )


def _merge_parts(
    parts: Sequence[TopK], offsets: npt.NDArray[np.intp], k: int, *_: object
) -> TopK:
    return merge_top_k(parts, offsets.tolist(), k)


def _shard_above(
    Q: F32,
    C: F32,
    self_offset: int | None,
    max_norm: float,
    threshold: float,
    budget: int,
) -> Hits:
    return above_threshold(
        Q,
        C,
        threshold,
        self_offset=self_offset,
        memory_budget=budget,
        corpus_max_norm=max_norm,
    )


def _merge_above(
    parts: Sequence[Hits], offsets: npt.NDArray[np.intp], *_: object
) -> Hits:
    """Merge per-shard threshold hits: by score, ties to the lower global row."""
    merged: Hits = []
    for hits in zip(*parts, strict=True):
        idx = np.concatenate(
            [i + o for (i, _), o in zip(hits, offsets, strict=True)]
        ).astype(np.intp)
        val = np.concatenate([s for _, s in hits]).astype(np.float32)
        order = np.lexsort((idx, -val))
        merged.append((idx[order], val[order]))
    return merged


def _diagonal_scan(
    A: F32, threshold: float | None, max_kept: int, budget: int, n_jobs: int
) -> ScanPart:
    scan = neighbour_scan(A, threshold, max_kept, memory_budget=budget, n_jobs=n_jobs)
    return scan.nn_sim, scan.nn_idx, scan.pairs, scan.pair_scores, scan.n_pairs


def _cross_scan(
    A: F32, B: F32, threshold: float | None, max_kept: int, budget: int
) -> ScanPart:
    """The symmetric scan restricted to pairs (row of ``A``, row of ``B``)."""
    scan = cross_scan(A, B, threshold, max_kept, memory_budget=budget)
    return scan.nn_sim, scan.nn_idx, scan.pairs, scan.pair_scores, scan.n_pairs


def _moments(
    A: F32,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Row sum, squared row norms and Gram matrix of one shard (float64)."""
    total = group_sum(A, np.zeros(A.shape[0], dtype=np.intp), 1)[0]
    return total, row_norms(A) ** 2, gram(A)


def _take(A: F32, rows: Idx) -> F32:
    return np.asarray(A)[rows]


# -- the sharded corpus ---------------------------------------------------------


class ShardedCorpus:
    """A row-sharded float32 corpus held on Dask workers (futures), plus offsets.

    Built by :meth:`from_dask`; estimators keep it where they keep the matrix. It
    does not pickle (its shards live on a cluster): :func:`to_local` gathers it.
    """

    def __init__(
        self,
        client: Any,
        shards: Sequence[Any],
        offsets: npt.ArrayLike,
        max_norms: Sequence[float],
        n_features: int,
        owner: str,
    ) -> None:
        self.client = client
        self.shards = list(shards)
        self.offsets = np.asarray(offsets, dtype=np.intp)  # one per shard, + total
        self.max_norms = [float(v) for v in max_norms]
        self.n_features = int(n_features)
        self.owner = owner

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_dask(
        cls, X: Any, *, normalize: bool, owner: str, min_rows: int = 1
    ) -> ShardedCorpus:
        """Persist ``X`` blockwise on the workers (checked, float32, unit rows)."""
        distributed = import_optional(
            "distributed", extra="dask", purpose=f"{owner}.fit on a dask array"
        )
        if X.ndim != 2:
            raise ValueError(
                f"{owner} expects a 2-D dask array of embeddings, got shape "
                f"{X.shape}. Reshape it to (n_samples, n_features)."
            )
        if any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError(
                f"{owner} needs the row-chunk sizes of the dask array X, which are "
                "unknown (e.g. after a filter or DataFrame.to_dask_array()). Call "
                "X.compute_chunk_sizes() first."
            )
        if len(X.chunks[1]) != 1:
            raise ValueError(
                f"{owner} shards the dask array X by rows, but its columns are split "
                f"into {len(X.chunks[1])} chunks {X.chunks[1]}: each row must lie in "
                "one block. Rechunk it: X = X.rechunk({1: -1})."
            )
        n, d = int(X.shape[0]), int(X.shape[1])
        if n < min_rows or d < 1:
            raise ValueError(
                f"{owner} needs at least {min_rows} row(s) and 1 feature, got a dask "
                f"array of shape {X.shape}."
            )
        try:
            client = distributed.get_client()
        except ValueError as exc:
            raise ValueError(
                f"{owner}.fit on a dask array shards it over a Dask cluster, but no "
                "distributed Client is running. Start one first: "
                "client = distributed.Client(...) (or LocalCluster()), or pass "
                "X.compute() to fit in memory."
            ) from exc
        from dask.delayed import delayed

        starts = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.intp)
        blocks = X.to_delayed()[:, 0]
        keep = [b for b in range(len(blocks)) if X.chunks[0][b] > 0]
        prepare = delayed(_prepare, pure=True)
        futures = client.compute(
            [prepare(blocks[b], int(starts[b]), normalize, owner) for b in keep]
        )
        # The norms are a few floats; gathering them surfaces any block's error.
        norms = client.gather([client.submit(corpus_norm, f) for f in futures])
        offsets = np.append(starts[keep], n)
        return cls(client, futures, offsets, norms, d, owner)

    # -- shape, refusal to pickle or densify -------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return int(self.offsets[-1]), self.n_features

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def max_norm(self) -> float:
        return max(self.max_norms)

    def __repr__(self) -> str:
        n, d = self.shape
        return f"ShardedCorpus(shape=({n}, {d}), n_shards={self.n_shards})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"This {self.owner} was fitted on a dask array: its corpus is "
            f"{self.n_shards} shard(s) held on the Dask workers, which cannot be "
            "pickled. Call .to_local() first to gather it into an in-memory "
            "estimator (the corpus must fit in memory), or refit after loading."
        )

    def __array__(self, dtype: object = None, copy: object = None) -> NoReturn:
        raise TypeError(
            f"This {self.owner} keeps its corpus sharded on Dask workers and does "
            "not gather it implicitly. Call .to_local() to get an in-memory copy."
        )

    # -- rows --------------------------------------------------------------------
    def gather(self) -> F32:
        """The whole corpus as one ndarray on the client."""
        return np.concatenate(self.client.gather(self.shards))

    def take(self, rows: npt.ArrayLike) -> F32:
        """Rows (global indices, in the given order) gathered from their shards."""
        rows = np.asarray(rows, dtype=np.intp).ravel()
        out = np.empty((rows.size, self.n_features), dtype=np.float32)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        tasks: dict[int, tuple[Idx, Any]] = {}
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            local = rows[sel] - self.offsets[s]
            tasks[int(s)] = (sel, self.client.submit(_take, self.shards[s], local))
        for sel, future in tasks.values():
            out[sel] = future.result()
        return out

    def __getitem__(self, rows: npt.ArrayLike) -> F32:
        return self.take(rows)

    # -- search ------------------------------------------------------------------
    def _spans(self) -> Iterator[tuple[Any, int, int]]:
        return zip(self.shards, self.offsets[:-1], self.offsets[1:], strict=True)

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int,
        n_jobs: int | None,
    ) -> TopK:
        """Top-k of every query over the whole corpus: per shard, merged exactly."""
        if Q is self:
            if exclude is not None:
                raise ValueError(
                    f"search(X=None, exclude=...) is not supported on a {self.owner} "
                    "fitted on a dask array yet: search the rows you need as queries "
                    "(with exclude listing each one's own row), or use to_local()."
                )
            found: TopK = self._self_top_k(k, memory_budget, n_jobs)  # Q is self: Any
            return found
        if self_offset is not None:
            raise ValueError("self_offset needs the queries to be the corpus.")
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        n_q = Q.shape[0]
        per_shard = self._split_exclude(n_q, exclude)
        q = self.client.scatter(Q, broadcast=True, hash=False)
        jobs = 1 if n_jobs is None else n_jobs
        parts = [
            self.client.submit(
                _shard_top_k, q, shard, None, norm, k, ex, memory_budget, jobs
            )
            for shard, ex, norm in zip(
                self.shards, per_shard, self.max_norms, strict=True
            )
        ]
        return _merge_parts(self.client.gather(parts), self.offsets[:-1], k)

    def _split_exclude(
        self, n_q: int, exclude: Sequence[npt.ArrayLike] | None
    ) -> list[list[Idx]] | list[None]:
        if exclude is None:
            return [None] * self.n_shards
        rows, cols = exclusion_pairs(n_q, self.shape[0], exclude, None)
        out: list[list[Idx]] = []
        for _, start, stop in self._spans():
            sel = (cols >= start) & (cols < stop)
            r, c = rows[sel], cols[sel] - start
            order = np.argsort(r, kind="stable")
            r, c = r[order], c[order]
            bounds = np.searchsorted(r, np.arange(n_q + 1))
            out.append([c[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return out

    def _self_join(
        self, task: Callable[..., Any], merge: Callable[..., Any], *args: Any
    ) -> list[Any]:
        """``task(query block i, shard j, self_offset, norm_j, *args)`` on every
        pair, each row excluding itself; ``merge(parts, offsets, *args)`` per query
        block on a worker. Returns the merged results, in query-block order."""
        submit = self.client.submit
        merged: list[Any] = []
        for i, query in enumerate(self.shards):
            parts = [
                submit(task, query, shard, 0 if i == j else None, norm, *args)
                for j, (shard, norm) in enumerate(
                    zip(self.shards, self.max_norms, strict=True)
                )
            ]
            merged.append(submit(merge, parts, self.offsets[:-1], *args))
        gathered: list[Any] = self.client.gather(merged)
        return gathered

    def _self_top_k(self, k: int, memory_budget: int, n_jobs: int | None) -> TopK:
        """Each row's top-k among the other rows: (query block, shard) pairs."""
        jobs = 1 if n_jobs is None else n_jobs
        results = self._self_join(
            _shard_top_k, _merge_parts, k, None, memory_budget, jobs
        )
        return TopK(
            np.vstack([r.indices for r in results]),
            np.vstack([r.scores for r in results]),
        )

    def above_threshold(
        self,
        Q: Any,
        threshold: float,
        *,
        self_offset: int | None = None,
        memory_budget: int,
    ) -> Hits:
        """Every corpus row at least ``threshold`` similar to each query, merged."""
        submit = self.client.submit
        if Q is self:
            results = self._self_join(
                _shard_above, _merge_above, threshold, memory_budget
            )
            return [hit for block in results for hit in block]
        Q = np.ascontiguousarray(Q, dtype=np.float32)
        q = self.client.scatter(Q, broadcast=True, hash=False)
        parts = [
            submit(_shard_above, q, shard, None, norm, threshold, memory_budget)
            for shard, norm in zip(self.shards, self.max_norms, strict=True)
        ]
        return _merge_above(self.client.gather(parts), self.offsets[:-1])

    # -- all pairs ---------------------------------------------------------------
    def scan(
        self,
        threshold: float | None,
        max_kept: int,
        *,
        memory_budget: int,
        n_jobs: int | None,
    ) -> NeighbourScan:
        """:func:`~embedtasks._neighbour_scan` by pairs of shards."""
        jobs = 1 if n_jobs is None else n_jobs
        submit = self.client.submit
        futures: list[Any] = []
        where: list[tuple[int, int]] = []
        for i, a in enumerate(self.shards):
            futures.append(
                submit(_diagonal_scan, a, threshold, max_kept, memory_budget, jobs)
            )
            where.append((i, i))
            for j in range(i + 1, self.n_shards):
                futures.append(
                    submit(
                        _cross_scan,
                        a,
                        self.shards[j],
                        threshold,
                        max_kept,
                        memory_budget,
                    )  # fmt: skip
                )
                where.append((i, j))
        n = self.shape[0]
        best = np.full(n, -np.inf, dtype=np.float32)
        best_idx = np.full(n, -1, dtype=np.intp)
        pairs: list[Idx] = []
        scores: list[F32] = []
        n_found = 0
        for (i, j), future in zip(where, futures, strict=True):
            nn_sim, nn_idx, p, s, found = future.result()
            rows, to_global = self._local_to_global(i, j)
            cand = np.where(nn_idx >= 0, to_global(nn_idx), -1)
            better = (nn_sim > best[rows]) | (
                (nn_sim == best[rows]) & (cand >= 0) & (cand < best_idx[rows])
            )
            best[rows[better]] = nn_sim[better]
            best_idx[rows[better]] = cand[better]
            pairs.append(to_global(p))
            scores.append(s)
            n_found += int(found)
        p = np.concatenate(pairs).reshape(-1, 2)
        s = np.concatenate(scores).astype(np.float32)
        order = np.lexsort((p[:, 1], p[:, 0], -s))[:max_kept]
        return NeighbourScan(
            best, best_idx, p[order].reshape(-1, 2), s[order], n_found, None
        )

    def _local_to_global(self, i: int, j: int) -> tuple[Idx, Callable[[Idx], Idx]]:
        """Rows covered by the (i, j) scan and its index map to global rows."""
        a0, a1 = self.offsets[i], self.offsets[i + 1]
        if i == j:
            return np.arange(a0, a1), lambda x: x + a0
        b0, b1 = self.offsets[j], self.offsets[j + 1]
        n_a = a1 - a0

        def to_global(x: Idx) -> Idx:
            rows: Idx = np.where(x < n_a, x + a0, x - n_a + b0)
            return rows

        return np.concatenate([np.arange(a0, a1), np.arange(b0, b1)]), to_global

    def moments(
        self,
    ) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
    ]:
        """Row sum, squared norms and Gram matrix of the corpus, summed by shard."""
        parts = self.client.gather(
            [self.client.submit(_moments, s) for s in self.shards]
        )
        total = np.sum([p[0] for p in parts], axis=0)
        return total, np.concatenate([p[1] for p in parts]), sum(p[2] for p in parts)
