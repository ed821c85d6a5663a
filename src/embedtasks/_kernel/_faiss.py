"""Optional faiss backend of :class:`~embedtasks.DotProductNeighbors`.

Builds a faiss index from an index-factory description (``"Flat"`` is exact;
``"IVF1024,Flat"`` and ``"HNSW32"`` are approximate), searches it with the same
exclusion semantics as :func:`embedtasks._kernel.top_k`, and turns it into bytes
and back so that estimators holding one pickle (and travel to Dask workers).

faiss is imported lazily through :func:`embedtasks._optional.import_optional`, so
the package imports without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._exact import pair_dots_indexed
from embedtasks._kernel._topk import TopK, exclusion_pairs
from embedtasks._optional import import_optional

__all__ = [
    "SerializedIndex",
    "build_index",
    "deserialize_index",
    "search_index",
    "serialize_index",
]

_PURPOSE = "DotProductNeighbors(backend='faiss')"


def _faiss() -> Any:
    return import_optional("faiss", extra="faiss", purpose=_PURPOSE)


class _Threads:
    """Context manager: faiss's OpenMP thread count set for a block, then restored."""

    def __init__(self, faiss: Any, n_jobs: int | None) -> None:
        self.faiss, self.n_jobs, self.before = faiss, n_jobs, 0

    def __enter__(self) -> None:
        self.before = self.faiss.omp_get_max_threads()
        if self.n_jobs is not None:
            self.faiss.omp_set_num_threads(int(self.n_jobs))

    def __exit__(self, *exc: object) -> None:
        self.faiss.omp_set_num_threads(self.before)


def build_index(
    X: npt.NDArray[np.float32],
    description: str,
    *,
    params: Mapping[str, float] | None = None,
    n_jobs: int | None = None,
) -> Any:
    """Build (train if needed) and fill an inner-product faiss index over ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The vectors to index, C-contiguous.
    description : str
        A faiss ``index_factory`` string: ``"Flat"`` (exact), ``"IVF<nlist>,Flat"``,
        ``"HNSW<M>"``, ``"IVF<nlist>,PQ<m>"``, ...
    params : mapping of str to number, optional
        Search-time parameters set through ``faiss.ParameterSpace``, e.g.
        ``{"nprobe": 32}`` (IVF) or ``{"efSearch": 128}`` (HNSW).
    n_jobs : int, optional
        OpenMP threads faiss may use while building; ``None`` keeps its default.

    Returns
    -------
    faiss.Index
        The filled index (metric: inner product).
    """
    faiss = _faiss()
    d = X.shape[1]
    try:
        index = faiss.index_factory(d, description, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"faiss could not build an index from faiss_index={description!r} for "
            f"{d}-dimensional vectors: {_first_line(exc)}. Use an index_factory "
            "string such as 'Flat', 'IVF1024,Flat' or 'HNSW32'."
        ) from exc
    with _Threads(faiss, n_jobs):
        if not index.is_trained:
            n_lists = getattr(faiss.extract_index_ivf(index), "nlist", 0)
            if X.shape[0] < n_lists:
                raise ValueError(
                    f"faiss_index={description!r} has {n_lists} lists but only "
                    f"{X.shape[0]} vectors to train them on. Use fewer lists (about "
                    "sqrt(n_samples) to 4*sqrt(n_samples)) or 'Flat'."
                )
            index.train(X)
        index.add(X)
    set_search_params(index, params)
    return index


def set_search_params(index: Any, params: Mapping[str, float] | None) -> None:
    """Apply ``params`` (``{"nprobe": 32}``, ``{"efSearch": 128}``) to ``index``."""
    if not params:
        return
    faiss = _faiss()
    space = faiss.ParameterSpace()
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as exc:
            raise ValueError(
                f"faiss_params: the {type(index).__name__} index has no parameter "
                f"{name!r} (= {value!r}). IVF indexes take 'nprobe', HNSW indexes "
                "'efSearch'; exact 'Flat' takes none."
            ) from exc


def search_index(
    index: Any,
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    exclude: Sequence[npt.ArrayLike] | None = None,
    self_offset: int | None = None,
    n_jobs: int | None = None,
    corpus: npt.NDArray[np.float32] | None = None,
) -> TopK:
    """Top-``k`` of ``index`` for each query, with :func:`top_k`'s exclusions.

    faiss has no per-query exclusion lists, so each query asks for ``k`` plus the
    most exclusions any query has, and the excluded rows are dropped afterwards.
    With ``corpus`` (the indexed vectors) the rows faiss found are rescored
    canonically, as the exact kernel scores them, so a row's score never depends
    on the batch (which rows an approximate index finds still may). Results are
    sorted by decreasing score, ties by the lower index, and padded with index
    ``-1`` / score ``-inf`` where fewer than ``k`` rows are found.
    """
    faiss = _faiss()
    n_q, n_c = queries.shape[0], index.ntotal
    ex_rows, ex_cols = exclusion_pairs(n_q, n_c, exclude, self_offset)
    per_query = np.bincount(ex_rows, minlength=n_q) if ex_rows.size else None
    extra = int(per_query.max()) if per_query is not None and n_q else 0
    fetch = min(k + extra, n_c)
    indices = np.full((n_q, k), -1, dtype=np.intp)
    scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    if n_q == 0 or n_c == 0:
        return TopK(indices, scores)
    Q = np.ascontiguousarray(queries, dtype=np.float32)
    with _Threads(faiss, n_jobs):
        found_scores, found = index.search(Q, fetch)
    found = found.astype(np.intp, copy=False)
    keep = found >= 0
    if ex_rows.size:
        banned = np.unique(ex_rows * n_c + ex_cols)
        rows = np.broadcast_to(np.arange(n_q, dtype=np.intp)[:, None], found.shape)
        keep &= ~np.isin(rows * n_c + found, banned)
    if corpus is not None:
        r, c = np.nonzero(keep)
        found_scores = np.array(found_scores, dtype=np.float32)
        found_scores[r, c] = pair_dots_indexed(Q, corpus, r, found[r, c])
    found_scores = np.where(keep, found_scores, -np.inf).astype(np.float32)
    found = np.where(keep, found, n_c)  # the sentinel sorts after every real index
    order = np.lexsort((found, -found_scores), axis=-1)[:, :k]
    top_idx = np.take_along_axis(found, order, axis=1)
    top_scores = np.take_along_axis(found_scores, order, axis=1)
    missing = top_idx == n_c
    top_idx[missing], top_scores[missing] = -1, -np.inf
    width = top_idx.shape[1]
    indices[:, :width], scores[:, :width] = top_idx, top_scores
    return TopK(indices, scores)


class SerializedIndex:
    """A faiss index as bytes: what a pickled estimator stores in its place."""

    def __init__(self, data: npt.NDArray[np.uint8]) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"SerializedIndex({self.data.nbytes} bytes)"


def serialize_index(index: Any) -> SerializedIndex:
    """Turn a faiss index into picklable bytes (``faiss.serialize_index``)."""
    return SerializedIndex(np.asarray(_faiss().serialize_index(index)))


def deserialize_index(blob: SerializedIndex) -> Any:
    """Rebuild the faiss index :func:`serialize_index` wrote."""
    return _faiss().deserialize_index(blob.data)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
