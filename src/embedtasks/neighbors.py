"""Exact nearest neighbours by dot product: search and recommendations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin

from embedtasks._kernel import (
    DEFAULT_MEMORY_BUDGET,
    Dense,
    build_store,
    group_sum,
    is_mapped,
    l2_normalize,
    mmr_rerank,
    similarity,
    stream_norms,
)
from embedtasks._validation import (
    N_JOBS,
    Integral,
    Interval,
    LocalCopyMixin,
    Real,
    StrOptions,
    _fit_context,
    check_argument,
    check_embeddings,
    check_is_fitted,
    validate_params,
)

__all__ = ["DotProductNeighbors", "search_pipeline"]


class DotProductNeighbors(LocalCopyMixin, TransformerMixin, BaseEstimator):
    """Exact nearest neighbours of embeddings by dot product (cosine on unit vectors).

    The search, recommendation and "more like this" estimator. It stores the fitted
    embeddings as float32 (unit rows unless ``normalize=False``) and ranks them with
    the shared tiled kernel: exact results, ties broken by the lower index, bounded
    extra memory, whatever the corpus size. Methods follow
    :class:`sklearn.neighbors.NearestNeighbors` (``kneighbors(X=None)`` excludes each
    point itself), with similarities available beside distances.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours returned when a method is not told otherwise.
    radius : float, default=0.5
        Similarity threshold of :meth:`radius_neighbors`: every fitted point with a
        similarity at least this high is returned.
    normalize : bool, default=True
        Scale fitted and query vectors to unit length, so the dot product is the
        cosine similarity. ``False`` ranks by the raw dot product (maximum inner
        product search).
    memory_budget : int, default=8388608
        Bytes of scores one tile of the kernel may hold (per thread).
    n_jobs : int, default=None
        Threads of the similarity kernel: ``None`` or ``-1`` every core, ``-2``
        every core but one; on a Dask cluster, threads per worker task (``None``:
        one, the workers already run in parallel).
    backend : {"exact", "faiss"}, default="exact"
        ``"exact"`` ranks with embedtasks' own tiled kernel (exact, no copy of
        the corpus). ``"faiss"`` hands :meth:`search`, :meth:`kneighbors`,
        :meth:`kneighbors_graph` and :meth:`recommend` to a faiss index built in
        :meth:`fit` (needs the ``[faiss]`` extra): exact with ``"Flat"``,
        approximate and much faster on millions of rows with ``"IVF..."`` or
        ``"HNSW..."``. :meth:`radius_neighbors` always uses the exact kernel.
    faiss_index : str, default="Flat"
        faiss ``index_factory`` description used when ``backend="faiss"``:
        ``"Flat"`` (exact inner product), ``"IVF4096,Flat"`` (inverted lists),
        ``"HNSW32"`` (graph), ``"IVF4096,PQ48"`` (compressed), ... Ignored by the
        exact backend.
    faiss_params : dict, default=None
        Search-time parameters of the faiss index, set through
        ``faiss.ParameterSpace``: ``{"nprobe": 64}`` for IVF (lists visited per
        query), ``{"efSearch": 128}`` for HNSW. Higher is slower and recalls more.

    Attributes
    ----------
    embeddings_ : ndarray of shape (n_samples_fit, n_features), dtype float32
        The fitted vectors (unit rows when ``normalize=True``); a
        ``ShardedCorpus`` (shards held on the Dask workers) when fitted on a dask
        array.
    ids_ : ndarray of shape (n_samples_fit,) or None
        The ``y`` given to :meth:`fit` (ids, titles or texts of the fitted rows),
        used to label results; None when ``fit`` got no ``y``.
    n_samples_fit_ : int
        Number of fitted vectors.
    n_features_in_ : int
        Number of features seen during :term:`fit`.
    index_ : faiss.Index or None
        The faiss index searched when ``backend="faiss"``; None otherwise. It is
        stored as bytes when the estimator is pickled and rebuilt on load.

    See Also
    --------
    search_pipeline : Query a fitted ``Pipeline(embedder, DotProductNeighbors)``
        with raw texts.

    Notes
    -----
    Distances are ``1 - similarity`` (the cosine distance on unit vectors), so they
    sort like scikit-learn's and rank exactly as cosine and Euclidean distance do.

    With ``backend="faiss"`` faiss keeps its own copy of the vectors (``"Flat"``,
    ``"IVF...,Flat"``, ``"HNSW..."``) beside :attr:`embeddings_`, which
    :meth:`recommend` and :meth:`radius_neighbors` still read: plan for twice the
    corpus in memory, or use a compressed index (``"IVF...,PQ..."``).

    Examples
    --------
    >>> from embedtasks import DotProductNeighbors
    >>> X = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]
    >>> nn = DotProductNeighbors(n_neighbors=2).fit(X, ["east", "ne", "north", "west"])
    >>> scores, indices = nn.search([[0.6, 0.8]])
    >>> indices, scores.round(3)
    (array([[1, 2]]), array([[0.96, 0.8 ]], dtype=float32))
    >>> nn.search([[0.6, 0.8]], as_frame=True)
       query  rank  index     id  score
    0      0     0      1     ne   0.96
    1      0     1      2  north   0.80
    >>> nn.recommend(0, n_neighbors=2)  # more like item 0, itself excluded
    (array([0.8, 0. ], dtype=float32), array([1, 2]))
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, None, None, closed="neither")],
        "normalize": ["boolean"],
        "memory_budget": [Interval(Integral, 1024, None, closed="left")],
        "n_jobs": [*N_JOBS, None],
        "backend": [StrOptions({"exact", "faiss"})],
        "faiss_index": [str],
        "faiss_params": [dict, None],
        "storage": [StrOptions({"float32", "int8"})],
        "rescore_factor": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_neighbors=5,
        *,
        radius=0.5,
        normalize=True,
        memory_budget=DEFAULT_MEMORY_BUDGET,
        n_jobs=None,
        backend="exact",
        faiss_index="Flat",
        faiss_params=None,
        storage="float32",
        rescore_factor=4,
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.normalize = normalize
        self.memory_budget = memory_budget
        self.n_jobs = n_jobs
        self.backend = backend
        self.faiss_index = faiss_index
        self.faiss_params = faiss_params
        self.storage = storage
        self.rescore_factor = rescore_factor

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Store the embeddings to search.

        Parameters
        ----------
        X : array-like or dask.array of shape (n_samples, n_features)
            Embeddings of the corpus. A dask array (chunked by rows) stays sharded
            on the Dask workers; every method then gives the in-memory results
            bit for bit (see the scale-out guide).
        y : array-like of shape (n_samples,), default=None
            Ids, titles or texts of the rows; they label :meth:`search` and
            :meth:`recommend` results. In a ``Pipeline`` pass the texts as ``y``:
            ``pipe.fit(texts, texts)``.

        Returns
        -------
        self : DotProductNeighbors
            The fitted estimator.
        """
        X, max_norm = self._fit_rows(X)
        if y is not None:
            ids = np.asarray(y)
            if ids.ndim != 1 or ids.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y must hold one id per row of X: got shape {ids.shape} for "
                    f"{X.shape[0]} rows."
                )
            self.ids_ = ids
        else:
            self.ids_ = None
        self._store = build_store(
            X,
            max_norm=max_norm,
            storage=self.storage,
            backend=self.backend,
            faiss_index=self.faiss_index,
            faiss_params=self.faiss_params,
            rescore_factor=self.rescore_factor,
            n_jobs=self.n_jobs,
        )
        self.n_samples_fit_ = X.shape[0]
        self._expose_store()
        return self

    def _fit_rows(self, X):
        """The rows to store and their largest norm (None: the store measures it):
        a dask array stays sharded, a float32 file is searched in place, anything
        else is validated and copied."""
        if is_mapped(X):  # searched in place: _check_mapped proves the rows
            X = self._check_mapped(X)
            return X, float(self._norms.max())
        X = self._fit_corpus(X, normalize=self.normalize)
        return X, getattr(X, "max_norm", None)

    def _expose_store(self):
        """The public views of the store: ``embeddings_``, ``codes_``, ``index_``."""
        store = self._store
        self.embeddings_ = store.rows
        self.codes_ = getattr(store, "codes", None)
        self.index_ = getattr(store, "index", None)

    def _check_mapped(self, X):
        """Validate a memory-mapped corpus in one streaming pass, without a copy."""
        name = type(self).__name__
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(
                f"{name} needs at least 1 row and 1 column, got shape {X.shape}."
            )
        norms = stream_norms(Dense(X))
        bad = np.flatnonzero(~np.isfinite(norms))
        if bad.size:
            raise ValueError(
                f"Row {bad[0]} of the memory-mapped corpus holds NaN or infinity "
                f"({bad.size} such rows). Fix those rows in the file."
            )
        if self.normalize:
            off = np.flatnonzero((np.abs(norms - 1.0) > 1e-3) & (norms > 0))
            if off.size:
                raise ValueError(
                    f"Row {off[0]} of the memory-mapped corpus has norm "
                    f"{norms[off[0]]:.4g}, not 1 ({off.size} such rows). A mapped "
                    "corpus is searched in place, so it is not normalised: write "
                    "unit rows to the file (embedtasks._kernel.l2_normalize, "
                    "chunk by chunk) or pass normalize=False."
                )
        self.n_features_in_ = X.shape[1]
        self._norms = norms
        return X

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never touch self.__dict__
        state.pop("_norms", None)
        for name in ("embeddings_", "codes_", "index_"):  # views of the store
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_store" in state:
            self._expose_store()

    def _rank(self, Q, k, *, exclude=None, self_offset=None):
        """Top-k of the fitted vectors for each query, from whichever store."""
        return self._store.top_k(
            Q,
            k,
            exclude=exclude,
            self_offset=self_offset,
            memory_budget=self.memory_budget,
            n_jobs=self.n_jobs,
        )

    # -- queries -------------------------------------------------------------------

    def _queries(self, X):
        """Validated float32 queries, normalised like the fitted vectors."""
        X = check_embeddings(self, X, reset=False)
        return l2_normalize(X) if self.normalize else X

    def _n_neighbors(self, n_neighbors):
        """A method's ``n_neighbors`` (the constructor's if None), checked as the
        constructor's is."""
        if n_neighbors is None:
            return self.n_neighbors
        check_argument(
            "n_neighbors", n_neighbors, self._parameter_constraints["n_neighbors"]
        )
        return int(n_neighbors)

    def _check_k(self, n_neighbors, *, query_is_fit):
        k = self._n_neighbors(n_neighbors)
        available = self.n_samples_fit_ - (1 if query_is_fit else 0)
        if k > available:
            raise ValueError(
                f"Expected n_neighbors <= {available} (the number of fitted points"
                f"{' other than the query' if query_is_fit else ''}), but "
                f"n_neighbors = {k}. Lower n_neighbors or fit on more data."
            )
        return int(k)

    def _top_k(self, X, n_neighbors, exclude=None):
        check_is_fitted(self)
        query_is_fit = X is None
        Q = self.embeddings_ if query_is_fit else self._queries(X)
        k = self._check_k(n_neighbors, query_is_fit=query_is_fit)
        return self._rank(
            Q, k, exclude=exclude, self_offset=0 if query_is_fit else None
        )

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Find the nearest fitted points of each query (scikit-learn semantics).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query embeddings. ``None`` queries every fitted point against the
            others, excluding itself.
        n_neighbors : int, default=None
            Neighbours per query; defaults to the constructor's ``n_neighbors``.
        return_distance : bool, default=True
            Also return the distances (``1 - similarity``).

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors), dtype float32
            Distances, ascending. Only present if ``return_distance=True``.
        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the nearest fitted points; ties go to the lower index.
        """
        result = self._top_k(X, n_neighbors)
        if return_distance:
            return 1.0 - result.scores, result.indices
        return result.indices

    def search(self, X=None, n_neighbors=None, *, exclude=None, as_frame=False):
        """Rank the fitted points for each query by similarity, best first.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query embeddings; ``None`` searches with each fitted point, itself
            excluded.
        n_neighbors : int, default=None
            Results per query; defaults to the constructor's ``n_neighbors``.
        exclude : sequence of array-like of int, default=None
            ``exclude[i]`` lists fitted rows query ``i`` must not return (items a
            user has already seen). Rows with too few eligible points are padded
            with index ``-1`` and score ``-inf`` (dropped from the DataFrame).
        as_frame : bool, default=False
            Return a long pandas DataFrame with columns ``query``, ``rank``,
            ``index``, ``id`` (when ``fit`` got ids) and ``score``.

        Returns
        -------
        scores : ndarray of shape (n_queries, n_neighbors), dtype float32
            Similarities, descending.
        indices : ndarray of shape (n_queries, n_neighbors)
            Fitted rows matching ``scores``.
        frame : pandas.DataFrame
            Instead of the two arrays when ``as_frame=True``.
        """
        result = self._top_k(X, n_neighbors, exclude=exclude)
        if as_frame:
            return self._frame(result.scores, result.indices)
        return result.scores, result.indices

    def recommend(
        self, items, n_neighbors=None, *, exclude=None, diversity=0.0, as_frame=False
    ):
        """Recommend fitted items like ``items``, never ``items`` themselves.

        Parameters
        ----------
        items : int or array-like of int
            Fitted row(s) the user likes. Several items are combined into one
            query: the normalised mean of their vectors.
        n_neighbors : int, default=None
            Number of recommendations; defaults to the constructor's value.
        exclude : array-like of int, default=None
            Further fitted rows to leave out (already seen, out of stock, ...).
        diversity : float, default=0.0
            Maximal-marginal-relevance trade-off in [0, 1]: 0 ranks by similarity
            alone; higher values prefer items unlike those already recommended.
        as_frame : bool, default=False
            Return a DataFrame with columns ``rank``, ``index``, ``id`` (when
            ``fit`` got ids) and ``score``.

        Returns
        -------
        scores : ndarray of shape (n_recommendations,), dtype float32
            Similarity of each recommendation to the (combined) query.
        indices : ndarray of shape (n_recommendations,)
            Recommended fitted rows. Fewer than ``n_neighbors`` when too few
            items remain after the exclusions.
        frame : pandas.DataFrame
            Instead of the two arrays when ``as_frame=True``.
        """
        check_is_fitted(self)
        liked = self._check_items(items, "items")
        excluded = np.union1d(liked, self._check_items(exclude, "exclude"))
        check_argument("diversity", diversity, [Interval(Real, 0, 1, closed="both")])
        k = self._n_neighbors(n_neighbors)
        liked_sum = group_sum(self.embeddings_[liked], np.zeros(liked.size, int), 1)
        query = l2_normalize(liked_sum[0])
        # MMR re-ranks a wider pool of the most relevant candidates.
        pool = min(self.n_samples_fit_, k if diversity == 0 else max(4 * k, 50))
        result = self._rank(query[None, :], pool, exclude=[excluded])
        keep = result.indices[0] >= 0
        indices, scores = result.indices[0][keep], result.scores[0][keep]
        if diversity > 0 and indices.size:
            candidates = self.embeddings_[indices]  # rows only (a sharded corpus)
            pool_order = np.arange(indices.size)
            indices = indices[mmr_rerank(query, pool_order, candidates, k, diversity)]
            scores = similarity(self.embeddings_[indices], query[None, :])[:, 0]
        indices, scores = indices[:k], scores[:k]
        if as_frame:
            return self._frame(scores[None, :], indices[None, :]).drop(columns="query")
        return scores, indices

    def _check_items(self, items, name):
        if items is None:
            return np.empty(0, dtype=np.intp)
        array = np.atleast_1d(np.asarray(items))
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise TypeError(
                f"{name} must be fitted row indices (int or a 1-D array of int), got "
                f"{items!r}."
            )
        if array.size and (
            array.min() < -self.n_samples_fit_ or array.max() >= self.n_samples_fit_
        ):
            bad = array[(array < -self.n_samples_fit_) | (array >= self.n_samples_fit_)]
            raise IndexError(
                f"{name} holds row(s) {bad[:5].tolist()} outside the "
                f"{self.n_samples_fit_} fitted rows."
            )
        if name == "items" and not array.size:
            raise ValueError(
                "items is empty: give at least one fitted row to start from."
            )
        return np.where(array < 0, array + self.n_samples_fit_, array).astype(np.intp)

    def _frame(self, scores, indices):
        queries, ranks = np.nonzero(indices >= 0)
        index = indices[queries, ranks]
        columns = {"query": queries, "rank": ranks, "index": index}
        if self.ids_ is not None:
            columns["id"] = self.ids_[index]
        columns["score"] = scores[queries, ranks]
        return pd.DataFrame(columns)

    def radius_neighbors(
        self, X=None, radius=None, return_distance=True, sort_results=True
    ):
        """Find every fitted point at least ``radius`` similar to each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query embeddings; ``None`` uses the fitted points, each excluding
            itself.
        radius : float, default=None
            Similarity threshold; defaults to the constructor's ``radius``.
        return_distance : bool, default=True
            Also return the distances (``1 - similarity``).
        sort_results : bool, default=True
            Results are always sorted, nearest first; kept for scikit-learn
            compatibility.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,), dtype object
            Arrays of distances, ascending. Only present if
            ``return_distance=True``.
        neigh_ind : ndarray of shape (n_queries,), dtype object
            Arrays of fitted indices.
        """
        check_is_fitted(self)
        query_is_fit = X is None
        Q = self.embeddings_ if query_is_fit else self._queries(X)
        threshold = self.radius if radius is None else radius
        check_argument("radius", threshold, self._parameter_constraints["radius"])
        found = self._store.above_threshold(
            Q,
            float(threshold),
            self_offset=0 if query_is_fit else None,
            memory_budget=self.memory_budget,
        )
        ind = np.empty(len(found), dtype=object)
        dist = np.empty(len(found), dtype=object)
        for i, (indices, scores) in enumerate(found):
            ind[i], dist[i] = indices, 1.0 - scores
        return (dist, ind) if return_distance else ind

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of each query's nearest fitted points.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query embeddings; ``None`` uses the fitted points, each excluding
            itself.
        n_neighbors : int, default=None
            Neighbours per query; defaults to the constructor's ``n_neighbors``.
        mode : {"connectivity", "distance", "similarity"}, default="connectivity"
            Edge values: 1, ``1 - similarity``, or the similarity.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit)
            One row per query with ``n_neighbors`` stored entries.
        """
        modes = {"connectivity", "distance", "similarity"}
        check_argument("mode", mode, [StrOptions(modes)])
        result = self._top_k(X, n_neighbors)
        n_queries, k = result.indices.shape
        if mode == "connectivity":
            data = np.ones(n_queries * k, dtype=np.float32)
        elif mode == "distance":
            data = (1.0 - result.scores).ravel()
        else:
            data = result.scores.ravel()
        return sparse.csr_matrix(
            (data, result.indices.ravel(), np.arange(0, n_queries * k + 1, k)),
            shape=(n_queries, self.n_samples_fit_),
        )

    def transform(self, X):
        """Distance graph of each query's neighbours, for use inside a Pipeline.

        Like :class:`sklearn.neighbors.KNeighborsTransformer`: a sparse matrix of
        ``1 - similarity`` to the ``n_neighbors`` nearest fitted points, which
        estimators with ``metric="precomputed"`` accept.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query embeddings.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit)
            Distance graph.
        """
        check_is_fitted(self)
        return self.kneighbors_graph(X, mode="distance")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


@validate_params(
    {
        "model": "no_validation",  # the type check below names what it needs
        "queries": ["array-like", "sparse matrix"],
        "n_neighbors": [
            *DotProductNeighbors._parameter_constraints["n_neighbors"],
            None,
        ],
        "as_frame": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def search_pipeline(model, queries, n_neighbors=None, *, as_frame=True):
    """Search a fitted ``Pipeline(embedder, DotProductNeighbors)`` with raw queries.

    Runs every step but the last on ``queries`` (embedding the texts), then
    :meth:`DotProductNeighbors.search` on the result, so results are labelled with
    the ids given to ``fit`` (``pipe.fit(texts, texts)`` labels them with the texts).

    Parameters
    ----------
    model : Pipeline or DotProductNeighbors
        A fitted pipeline whose last step is a :class:`DotProductNeighbors`, or
        the estimator itself (then ``queries`` are embeddings).
    queries : sequence of str or array-like
        Queries in the pipeline's input format.
    n_neighbors : int, default=None
        Results per query; defaults to the estimator's ``n_neighbors``.
    as_frame : bool, default=True
        Return a DataFrame (``query``, ``rank``, ``index``, ``id``, ``score``);
        otherwise the ``(scores, indices)`` arrays.

    Returns
    -------
    pandas.DataFrame or tuple of ndarray
        See :meth:`DotProductNeighbors.search`.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> import numpy as np
    >>> toy = FunctionTransformer(lambda t: np.array([[len(s), 1.0] for s in t]))
    >>> pipe = make_pipeline(toy, DotProductNeighbors(n_neighbors=1))
    >>> pipe = pipe.fit(["a", "abcdefgh"], ["short", "long"])
    >>> search_pipeline(pipe, ["abcdefghij"])
       query  rank  index    id     score
    0      0     0      1  long  0.999695
    """
    steps = getattr(model, "steps", None)
    if steps is None:
        head, estimator = None, model
    else:
        head, estimator = model[:-1], model[-1]
    if not isinstance(estimator, DotProductNeighbors):
        raise TypeError(
            "search_pipeline needs a DotProductNeighbors or a Pipeline ending in one, "
            f"got {type(estimator).__name__}."
        )
    X = queries if head is None else head.transform(queries)
    return estimator.search(X, n_neighbors, as_frame=as_frame)
