"""Which storage answers a query: one protocol, one builder, four kinds.

A fitted corpus is a *store*. Estimators build it once with :func:`build_store`
and then only ask it questions (top-k, rows above a threshold, the all-pairs
scan, pair statistics, rows by index); they never learn whether the rows are an
array in memory, a file mapped in place, int8 codes rescored in float32, a faiss
index or shards on Dask workers (scikit-learn's ``NeighborsBase`` plays this part
for its trees: ``LocalOutlierFactor`` never asks which tree answered).

=============  ==========================================================
kind           built for
=============  ==========================================================
``InMemory``   a float32 array, or a float32 file searched in place
``Int8``       ``storage="int8"``: int8 codes searched, float32 rescored
``Indexed``    ``backend="faiss"``: a faiss index answers top-k
``Sharded``    a dask array: the shards stay on the workers
=============  ==========================================================

Every kind returns canonical scores (see :mod:`embedtasks._kernel`), so the
answers agree bit for bit wherever the kinds are exact. A store pickles itself: a
mapped file by its location, a faiss index as bytes, the integer screen not at
all (rebuilt on demand); a sharded store refuses (``to_local()`` first).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import _faiss
from embedtasks._kernel._corpus import (
    Dense,
    Quantized,
    find_mmap,
    mapped_file,
    quantize,
    stream_norms,
)
from embedtasks._kernel._exact import similarity
from embedtasks._kernel._pairs import (
    NeighbourScan,
    mean_std_from_moments,
    neighbour_scan,
    pairwise_mean_std,
    sample_pair_similarities,
    vendi_from_gram,
    vendi_score,
)
from embedtasks._kernel._screen import MIN_SCREEN_QUERIES, MIN_SCREEN_ROWS, build_screen
from embedtasks._kernel._shard import ShardedCorpus
from embedtasks._kernel._topk import (
    DEFAULT_MEMORY_BUDGET,
    TopK,
    above_threshold,
    top_k,
    top_k_rescored,
)

__all__ = [
    "Indexed",
    "InMemory",
    "Int8",
    "Sharded",
    "Store",
    "build_store",
    "is_mapped",
]

Hits = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]]


def is_mapped(X: Any) -> bool:
    """Whether ``X`` is a C-contiguous float32 array mapped from a file (searched in
    place rather than copied)."""
    return (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and X.dtype == np.float32
        and X.flags.c_contiguous
        and find_mmap(X) is not None
    )


class Store:
    """The protocol every kind answers. ``rows`` is what the estimator exposes as
    its fitted vectors (an ndarray, a memmap, or a :class:`ShardedCorpus`)."""

    rows: Any

    @property
    def shape(self) -> tuple[int, int]:
        n_rows, n_features = self.rows.shape
        return int(n_rows), int(n_features)

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> TopK:
        """The ``k`` best rows for each query (``Q`` is :attr:`rows` for the self
        join, with ``self_offset=0``)."""
        raise NotImplementedError

    def above_threshold(
        self,
        Q: Any,
        threshold: float,
        *,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Hits:
        """Every row at least ``threshold`` similar to each query."""
        raise NotImplementedError

    def scan(
        self,
        threshold: float | None,
        max_kept: int,
        *,
        keep_all: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> NeighbourScan:
        """Each row's nearest other row and the pairs above ``threshold``."""
        raise NotImplementedError

    def mean_std(self) -> tuple[float, float]:
        """Mean and standard deviation of every pairwise similarity."""
        raise NotImplementedError

    def vendi(self) -> float:
        """The Vendi score (effective number of distinct rows)."""
        raise NotImplementedError

    def sample_pairs(self, m: int, rng: Any) -> npt.NDArray[np.float32]:
        """Similarities of about ``m`` pairs of rows drawn with ``rng``."""
        raise NotImplementedError

    def take(self, indices: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Rows by index, as a float32 array in memory."""
        return np.asarray(self.rows[np.asarray(indices)], dtype=np.float32)

    def local(self) -> Store:
        """The same store with its rows in this process (a copy where sharded)."""
        return self


class InMemory(Store):
    """Float32 rows in memory, or a float32 file searched in place (pages released
    tile by tile; the pickle stores the file's location)."""

    def __init__(
        self, rows: npt.NDArray[np.float32], max_norm: float | None = None
    ) -> None:
        self.rows = rows
        if max_norm is None:
            max_norm = float(stream_norms(Dense(rows)).max()) if len(rows) else 0.0
        self.max_norm = max_norm
        self._screen: Any = None  # the integer screen, built at a large batch

    def screen_for(self, n_queries: int) -> Any:
        """The kernel's integer screen of the rows, kept once built; ``False``
        (float32 BLAS) where it cannot pay. It changes speed, never a result."""
        small = n_queries < MIN_SCREEN_QUERIES or self.rows.shape[0] < MIN_SCREEN_ROWS
        if small:
            return False
        if self._screen is None:
            # None: a mapped corpus, or no exact integer kernel on this machine
            self._screen = build_screen(self.rows) or False
        return self._screen

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> TopK:
        return top_k(
            Q,
            self.rows,
            k,
            exclude=exclude,
            self_offset=self_offset,
            memory_budget=memory_budget,
            n_jobs=n_jobs,
            corpus_max_norm=self.max_norm,
            screen=self.screen_for(np.shape(Q)[0]),
        )

    def above_threshold(
        self,
        Q: Any,
        threshold: float,
        *,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Hits:
        return above_threshold(
            Q,
            self.rows,
            threshold,
            self_offset=self_offset,
            memory_budget=memory_budget,
            corpus_max_norm=self.max_norm,
        )

    def scan(
        self,
        threshold: float | None,
        max_kept: int,
        *,
        keep_all: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> NeighbourScan:
        return neighbour_scan(
            self.rows,
            threshold,
            max_kept,
            keep_all=keep_all,
            memory_budget=memory_budget,
            n_jobs=n_jobs,
        )

    def mean_std(self) -> tuple[float, float]:
        return pairwise_mean_std(self.rows)

    def vendi(self) -> float:
        return vendi_score(self.rows)

    def sample_pairs(self, m: int, rng: Any) -> npt.NDArray[np.float32]:
        return sample_pair_similarities(self.rows, m, rng)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_screen"] = None  # rebuilt on demand
        source = mapped_file(self.rows)
        if source is not None:  # a file searched in place: pickle where it is
            state["rows"] = MappedRows(*source)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("rows"), MappedRows):
            state = {**state, "rows": state["rows"].open()}
        self.__dict__.update(state)


class Int8(InMemory):
    """int8 codes searched exactly, their best candidates rescored in float32."""

    def __init__(
        self,
        rows: npt.NDArray[np.float32],
        max_norm: float | None = None,
        *,
        rescore_factor: int = 4,
    ) -> None:
        super().__init__(rows, max_norm)
        self.codes, scale, zero = quantize(rows)
        self.coarse = Quantized(self.codes, scale, zero)
        self.rescore_factor = rescore_factor

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> TopK:
        return top_k_rescored(
            Q,
            self.coarse,
            self.rows,
            k,
            self.rescore_factor * k,
            exclude=exclude,
            self_offset=self_offset,
            memory_budget=memory_budget,
            n_jobs=n_jobs,
        )


class Indexed(InMemory):
    """A faiss index answers top-k (rescored canonically); the rows answer the rest."""

    def __init__(
        self,
        rows: npt.NDArray[np.float32],
        max_norm: float | None = None,
        *,
        description: str = "Flat",
        params: Mapping[str, float] | None = None,
        n_jobs: int | None = None,
    ) -> None:
        super().__init__(rows, max_norm)
        self.params = params
        self.index = _faiss.build_index(rows, description, params=params, n_jobs=n_jobs)

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> TopK:
        return _faiss.search_index(
            self.index,
            Q,
            k,
            exclude=exclude,
            self_offset=self_offset,
            n_jobs=n_jobs,
            corpus=self.rows,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["index"] = _faiss.serialize_index(self.index)  # indexes do not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        index = _faiss.deserialize_index(state["index"])
        _faiss.set_search_params(index, state.get("params"))
        super().__setstate__({**state, "index": index})


class Sharded(Store):
    """Row blocks kept on Dask workers; every answer equals the in-memory one."""

    rows: ShardedCorpus

    def __init__(self, corpus: ShardedCorpus) -> None:
        self.rows = corpus
        self.max_norm = corpus.max_norm

    def top_k(
        self,
        Q: Any,
        k: int,
        *,
        exclude: Sequence[npt.ArrayLike] | None = None,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> TopK:
        return self.rows.top_k(
            Q, k, exclude=exclude, self_offset=self_offset,
            memory_budget=memory_budget, n_jobs=n_jobs,
        )  # fmt: skip

    def above_threshold(
        self,
        Q: Any,
        threshold: float,
        *,
        self_offset: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Hits:
        return self.rows.above_threshold(
            Q, threshold, self_offset=self_offset, memory_budget=memory_budget
        )

    def scan(
        self,
        threshold: float | None,
        max_kept: int,
        *,
        keep_all: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        n_jobs: int | None = None,
    ) -> NeighbourScan:
        """By pairs of shards; ``keep_all`` (every pairwise similarity: small
        inputs only) gathers the rows to the client for those alone."""
        scan = self.rows.scan(
            threshold, max_kept, memory_budget=memory_budget, n_jobs=n_jobs
        )
        if keep_all:
            A = self.rows.gather()
            scan = scan._replace(pair_sims=similarity(A, A)[np.triu_indices(len(A), 1)])
        return scan

    def mean_std(self) -> tuple[float, float]:
        """From shard sums: the Gram is summed over other row blocks than in
        memory, so it equals the in-memory figure to ~1e-8 relative."""
        total, self_sq, G = self.rows.moments()
        return mean_std_from_moments(total, self_sq, G, self.rows.shape[0])

    def vendi(self) -> float:
        return vendi_from_gram(self.rows.moments()[2])

    def sample_pairs(self, m: int, rng: Any) -> npt.NDArray[np.float32]:
        """The same rows as in memory are drawn (same ``rng`` use) and only they
        are gathered, so the sample equals the in-memory one bit for bit."""
        n = self.rows.shape[0]
        size = min(n, int(np.ceil((1 + np.sqrt(1 + 8 * m)) / 2)))
        sub = self.rows.take(np.sort(rng.choice(n, size=size, replace=False)))
        pairs: npt.NDArray[np.float32] = similarity(sub, sub)[np.triu_indices(size, 1)]
        return pairs

    def take(self, indices: npt.ArrayLike) -> npt.NDArray[np.float32]:
        return self.rows.take(indices)

    def local(self) -> Store:
        return InMemory(self.rows.gather(), self.max_norm)


_BLOCK = 64 * 1024  # bytes of each sampled block of a mapped file
_BLOCKS = 32  # blocks sampled, spread evenly over the mapped rows


def file_fingerprint(filename: str, offset: int, nbytes: int) -> dict[str, Any]:
    """Size, modification time and a hash of sampled blocks of a mapped region.

    Cheap at any size (at most ``_BLOCKS`` x 64 KiB read), and it tells a file
    rewritten since (at the same size too) from the one a pickle was made over.
    """
    st = os.stat(filename)
    digest = hashlib.blake2b(digest_size=16)
    with open(filename, "rb") as f:
        step = max(_BLOCK, nbytes // _BLOCKS)
        starts = list(range(0, max(nbytes - _BLOCK, 0) + 1, step))
        starts.append(max(0, nbytes - _BLOCK))  # the last rows, always
        for start in starts:
            f.seek(offset + start)
            digest.update(f.read(min(_BLOCK, nbytes - start)))
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sample": digest.hexdigest(),
    }


class MappedRows:
    """Where a memory-mapped corpus lives: what a pickle stores instead of its rows,
    with a fingerprint of the file so that a rewritten file is never searched as
    if it were the one fitted."""

    def __init__(self, filename: str, offset: int, shape: tuple[int, ...]) -> None:
        self.filename, self.offset, self.shape = filename, offset, shape
        self.fingerprint = file_fingerprint(filename, offset, self.nbytes)

    @property
    def nbytes(self) -> int:
        return 4 * int(np.prod(self.shape))

    def open(self) -> np.memmap[Any, np.dtype[np.float32]]:
        expected = getattr(self, "fingerprint", None)
        try:
            found = file_fingerprint(self.filename, self.offset, self.nbytes)
        except OSError as exc:
            raise ValueError(
                f"The memory-mapped corpus {self.filename} of this pickled "
                f"estimator cannot be read ({exc.strerror}); put the file back, or "
                "fit again."
            ) from None
        if expected is not None and found != expected:
            words = {"size": "size", "mtime_ns": "time", "sample": "content"}
            what = ", ".join(v for k, v in words.items() if found[k] != expected[k])
            raise ValueError(
                f"The memory-mapped corpus {self.filename} changed since this "
                f"estimator was fitted and pickled (its {what} differ), so its "
                "results would silently change: fit again on the "
                "new file, or restore the original (a copy keeps its time with "
                "cp -p)."
            )
        return np.memmap(
            self.filename, dtype=np.float32, mode="r", offset=self.offset,
            shape=self.shape,
        )  # fmt: skip


def build_store(
    rows: Any,
    *,
    max_norm: float | None = None,
    storage: str = "float32",
    backend: str = "exact",
    faiss_index: str = "Flat",
    faiss_params: Mapping[str, float] | None = None,
    rescore_factor: int = 4,
    n_jobs: int | None = None,
) -> Store:
    """The one place that decides which storage answers.

    ``rows`` are validated vectors: a float32 ndarray (in memory or mapped from a
    file) or a :class:`ShardedCorpus`. ``storage="int8"`` and ``backend="faiss"``
    pick their kinds; a sharded corpus takes neither.
    """
    if isinstance(rows, ShardedCorpus):
        if backend != "exact" or storage != "float32":
            raise ValueError(
                "A dask array is sharded on the workers with backend='exact' and "
                f"storage='float32' only; got backend={backend!r}, "
                f"storage={storage!r}."
            )
        return Sharded(rows)
    if storage == "int8":
        return Int8(rows, max_norm, rescore_factor=rescore_factor)
    if backend == "faiss":
        return Indexed(
            rows, max_norm, description=faiss_index, params=faiss_params, n_jobs=n_jobs
        )
    return InMemory(rows, max_norm)
