"""Group embeddings by similarity: HDBSCAN after dimension reduction, or KMeans.

Density clustering straight on 384-d (or wider) embeddings leaves most points as
noise: distances concentrate, so no region looks dense. :class:`EmbeddingClusterer`
normalises the rows, reduces them to a few dimensions first (UMAP when the ``umap``
extra is installed, PCA otherwise), then runs ``hdbscan.HDBSCAN`` -- or KMeans when
you ask for a number of clusters. Each cluster gets a centre (in the original space),
representative members (close to the centre and not near-copies of each other) and,
from the texts, c-TF-IDF keywords.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import hdbscan
import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state

from embedtasks._optional import import_optional
from embedtasks._similarity import (
    group_sum,
    l2_normalize,
    mmr_rerank,
    place_by_similarity,
    similarity,
)
from embedtasks._validation import (
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_embeddings,
    check_is_fitted,
    check_texts,
)

__all__ = ["EmbeddingClusterer"]

#: Output width of the reduction when ``n_components=None`` (measured on Banking77).
_DEFAULT_COMPONENTS = {"umap": 5, "pca": 20}
#: Weight of novelty (vs closeness to the centre) when choosing representatives.
_MMR_DIVERSITY = 0.3


def _umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def _import_umap() -> Any:
    with warnings.catch_warnings():
        # umap-learn warns on import that TensorFlow (ParametricUMAP) is missing.
        warnings.simplefilter("ignore", category=ImportWarning)
        return import_optional(
            "umap", extra="umap", purpose="EmbeddingClusterer(reduction='umap')"
        )


class EmbeddingClusterer(ClusterMixin, BaseEstimator):
    """Cluster embeddings with HDBSCAN (noise = -1) or KMeans, after reduction.

    Rows are normalised to unit length, reduced to ``n_components`` dimensions and
    clustered. With ``n_clusters=None`` (the default) ``hdbscan.HDBSCAN`` finds the
    number of clusters itself and marks outliers as noise (label ``-1``); set
    ``assign_noise=True`` to give every noise point its most likely cluster (HDBSCAN
    soft membership). With ``n_clusters=k``, KMeans makes exactly ``k`` clusters.

    Parameters
    ----------
    n_clusters : int, default=None
        ``None``: HDBSCAN decides how many clusters there are. An int: KMeans with
        that many clusters (no noise).
    reduction : {"auto", "umap", "pca"} or None, default="auto"
        Dimension reduction before clustering. ``"auto"`` uses UMAP (umap-learn is a
        dependency of embedtasks) and falls back to PCA if it is missing. On
        Banking77 (MiniLM) UMAP + HDBSCAN reaches V-measure 81 with 6% noise, PCA +
        HDBSCAN 56 with 47% noise; with ``assign_noise`` 83 and 70
        (``benchmarks/bench_cluster.py``). UMAP is seeded from ``random_state``, so
        "auto" stays reproducible. ``None`` clusters the normalised embeddings
        themselves (slow and noisy when wide).
    n_components : int, default=None
        Width of the reduced space; ``None`` means 5 for UMAP and 20 for PCA.
        Inputs that are not wider than this are not reduced.
    n_neighbors : int, default=15
        UMAP's neighbourhood size (larger: more global structure). Also the number
        of fitted rows that place a new point in the UMAP space in :meth:`predict`.
    reduction_max_samples : int or None, default=20_000
        UMAP is fitted on a random sample of at most this many rows (it runs on
        one core when seeded, and its time grows faster than the row count); the
        other rows are placed in its space as :meth:`predict` places new points,
        and HDBSCAN/KMeans then cluster every row. ``None``: fit UMAP on all rows.
    min_cluster_size : int or "auto", default="auto"
        HDBSCAN: smallest group of points that counts as a cluster. ``"auto"``:
        ``max(15, n_samples // 200)``, so larger corpora are not shattered into
        hundreds of tiny clusters (Banking77 train, 10k rows, 77 intents: 268
        clusters and V-measure 75.7 at 15; 73 clusters and 77.2 at 50).
    min_samples : int, default=5
        HDBSCAN: neighbours a point needs to be a core point; higher marks more
        points as noise.
    cluster_selection_method : {"eom", "leaf"}, default="eom"
        HDBSCAN: ``"eom"`` picks the most persistent clusters, ``"leaf"`` the
        smallest, most homogeneous ones (and more noise).
    cluster_selection_epsilon : float, default=0.0
        HDBSCAN: clusters closer than this (in the reduced space) are merged.
    assign_noise : bool, default=False
        Give each point HDBSCAN marks as noise the cluster it most likely belongs
        to (soft membership), in :attr:`labels_` and in :meth:`predict`.
    n_representatives : int, default=5
        Members listed per cluster in :attr:`representatives_`: the closest to the
        cluster's centre, skipping near-copies of those already chosen (maximal
        marginal relevance).
    random_state : int, RandomState instance or None, default=None
        Seeds UMAP, PCA and KMeans. An int makes :meth:`fit` reproducible (UMAP then
        runs single-threaded, as umap-learn requires for reproducibility).

    Attributes
    ----------
    min_cluster_size_ : int
        The HDBSCAN ``min_cluster_size`` used (``"auto"`` resolved); not set when
        ``n_clusters`` selects KMeans.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training row, ``0 .. n_clusters_ - 1``; ``-1`` is noise.
    probabilities_ : ndarray of shape (n_samples,)
        Strength of each row's membership in its cluster, in [0, 1] (0 for noise;
        with ``assign_noise`` the soft-membership probability of the assigned
        cluster; 1 for KMeans).
    n_clusters_ : int
        Number of clusters found (noise not counted).
    cluster_centers_ : ndarray of shape (n_clusters_, n_features_in_)
        Unit-length mean direction of each cluster in the input space (members
        weighted by :attr:`probabilities_`).
    representatives_ : list of ndarray of int
        For each cluster, up to ``n_representatives`` training rows that stand for
        it, most central first.
    embedding_ : ndarray of shape (n_samples, n_reduced), dtype float32
        The training rows in the space that was clustered.
    reducer_ : PCA, UMAP or None
        The fitted dimension reduction (``None`` when no reduction ran).
    hdbscan_ : hdbscan.HDBSCAN or None
        The fitted HDBSCAN model (``None`` with ``n_clusters``).
    kmeans_ : KMeans or None
        The fitted KMeans model (``None`` without ``n_clusters``).
    n_features_in_ : int
        Width of the embeddings seen in :term:`fit`.

    See Also
    --------
    hdbscan.HDBSCAN : The density clusterer used here.
    sklearn.cluster.KMeans : The clusterer used when ``n_clusters`` is set.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import EmbeddingClusterer
    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(8)[:3]
    >>> X = np.repeat(centres, 20, axis=0) + 0.05 * rng.normal(size=(60, 8))
    >>> clusterer = EmbeddingClusterer(reduction="pca", n_components=3,
    ...                                min_cluster_size=5, random_state=0).fit(X)
    >>> clusterer.n_clusters_, clusterer.labels_[[0, 20, 40]].tolist()
    (3, [0, 1, 2])
    >>> clusterer.predict(centres).tolist()
    [0, 1, 2]
    >>> texts = ["red apple"] * 20 + ["blue sky"] * 20 + ["green grass"] * 20
    >>> clusterer.summary(texts)[["cluster", "size", "keywords"]]
       cluster  size        keywords
    0        0    20    [apple, red]
    1        1    20     [blue, sky]
    2        2    20  [grass, green]
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left"), None],
        "reduction": [StrOptions({"auto", "umap", "pca"}), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "n_neighbors": [Interval(Integral, 2, None, closed="left")],
        "reduction_max_samples": [Interval(Integral, 10, None, closed="left"), None],
        "min_cluster_size": [
            Interval(Integral, 2, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "min_samples": [Interval(Integral, 1, None, closed="left")],
        "cluster_selection_method": [StrOptions({"eom", "leaf"})],
        "cluster_selection_epsilon": [Interval(Real, 0, None, closed="left")],
        "assign_noise": ["boolean"],
        "n_representatives": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_clusters=None,
        *,
        reduction="auto",
        n_components=None,
        n_neighbors=15,
        reduction_max_samples=20_000,
        min_cluster_size="auto",
        min_samples=5,
        cluster_selection_method="eom",
        cluster_selection_epsilon=0.0,
        assign_noise=False,
        n_representatives=5,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.reduction = reduction
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.reduction_max_samples = reduction_max_samples
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.assign_noise = assign_noise
        self.n_representatives = n_representatives
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Reduce and cluster the embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, one row per item (normalised to unit length here).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : EmbeddingClusterer
            The fitted clusterer.
        """
        X = check_embeddings(self, X, reset=True, ensure_min_samples=2)
        if self.n_clusters is not None and self.n_clusters > X.shape[0]:
            raise ValueError(
                f"n_clusters={self.n_clusters} is larger than the number of samples "
                f"({X.shape[0]}). Lower n_clusters or pass more rows."
            )
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        X = l2_normalize(X)
        Z = self._fit_reduce(X, seed)
        if self.n_clusters is None:
            raw, probabilities = self._fit_hdbscan(Z)
            self.kmeans_ = None
            n_found = int(self.hdbscan_.labels_.max()) + 1
        else:
            raw, probabilities = self._fit_kmeans(Z, seed)
            self.hdbscan_ = None
            n_found = self.n_clusters
        # Number clusters by decreasing size (ties: first row), so label 0 is the
        # largest whatever the backend; -1 (noise) maps to itself.
        sizes = np.bincount(raw[raw >= 0], minlength=n_found)
        first = np.full(n_found, raw.size)
        np.minimum.at(first, raw[raw >= 0], np.flatnonzero(raw >= 0))
        new_id = np.empty(n_found, dtype=np.intp)
        new_id[np.lexsort((first, -sizes))] = np.arange(n_found)
        self._relabel = np.append(new_id, -1)
        labels = self._relabel[raw]
        self.embedding_ = Z
        self.labels_ = labels
        self.probabilities_ = probabilities
        self.n_clusters_ = n_found
        self.cluster_centers_ = self._centres(X, labels, probabilities, n_found)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_found + 1))
        self.representatives_ = [
            self._representatives(X, order[bounds[c] : bounds[c + 1]], centre)
            for c, centre in enumerate(self.cluster_centers_)
        ]
        return self

    def _reduction_kind(self) -> str | None:
        if self.reduction == "auto":
            return "umap" if _umap_available() else "pca"
        return self.reduction

    def _fit_reduce(self, X: np.ndarray, seed: int) -> np.ndarray:
        kind = self._reduction_kind()
        self.reducer_ = None
        if kind is None:
            return X
        n_components = self.n_components or _DEFAULT_COMPONENTS[kind]
        n_samples, n_features = X.shape
        # Nothing to gain below the target width; UMAP's spectral layout also needs
        # more samples than components.
        if n_features <= n_components or n_samples <= n_components + 2:
            return X
        if kind == "pca":
            self.reducer_ = PCA(n_components=n_components, random_state=seed)
            Z = self.reducer_.fit_transform(X)
        else:
            umap = _import_umap()
            sample = None
            limit = self.reduction_max_samples
            if limit is not None and n_samples > max(limit, n_components + 2):
                sample = check_random_state(seed).choice(n_samples, limit, False)
                sample.sort()
            X_ref = X if sample is None else X[sample]
            self.reducer_ = umap.UMAP(
                n_neighbors=min(self.n_neighbors, X_ref.shape[0] - 1),
                n_components=n_components,
                metric="cosine",
                min_dist=0.0,
                random_state=seed,
                n_jobs=1,  # reproducible; umap-learn forces this with a seed
                transform_seed=seed,
            )
            with warnings.catch_warnings():
                # umap-learn warns about numba/graph internals it recovers from.
                warnings.simplefilter("ignore", category=UserWarning)
                Z_ref = self.reducer_.fit_transform(X_ref)
            self._X_ref = X_ref
            self._Z_ref = np.ascontiguousarray(Z_ref, dtype=np.float32)
            if sample is None:
                return self._Z_ref
            Z = self._place(X)
            Z[sample] = self._Z_ref
        return np.ascontiguousarray(Z, dtype=np.float32)

    def _fit_hdbscan(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_samples = Z.shape[0]
        if self.min_cluster_size == "auto":
            self.min_cluster_size_ = max(15, n_samples // 200)
        else:
            self.min_cluster_size_ = self.min_cluster_size
        self.hdbscan_ = hdbscan.HDBSCAN(
            min_cluster_size=min(self.min_cluster_size_, n_samples),
            min_samples=min(self.min_samples, n_samples - 1),
            cluster_selection_epsilon=float(self.cluster_selection_epsilon),
            cluster_selection_method=self.cluster_selection_method,
            metric="euclidean",
            alpha=1.0,
            algorithm="best",
            leaf_size=40,
            approx_min_span_tree=True,
            gen_min_span_tree=False,
            core_dist_n_jobs=1,
            allow_single_cluster=False,
            prediction_data=True,
            match_reference_implementation=False,
        )
        self.hdbscan_.fit(Z.astype(np.float64))
        labels = self.hdbscan_.labels_.astype(np.intp)
        probabilities = self.hdbscan_.probabilities_.astype(np.float64)
        if self.assign_noise:
            labels, probabilities = self._assign_noise(
                Z, labels, probabilities, labels.max() + 1
            )
        return labels, probabilities

    def _assign_noise(self, Z, labels, probabilities, n_clusters):
        noise = labels < 0
        if n_clusters < 1 or not noise.any():
            return labels, probabilities
        with np.errstate(divide="ignore", invalid="ignore"):
            membership = hdbscan.membership_vector(
                self.hdbscan_, Z[noise].astype(np.float64)
            )
        membership = np.nan_to_num(np.atleast_2d(membership)).reshape(
            noise.sum(), n_clusters
        )
        labels, probabilities = labels.copy(), probabilities.copy()
        labels[noise] = membership.argmax(axis=1)
        probabilities[noise] = membership.max(axis=1)
        return labels, probabilities

    def _fit_kmeans(self, Z: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans

        self.kmeans_ = KMeans(n_clusters=self.n_clusters, n_init=3, random_state=seed)
        labels = self.kmeans_.fit_predict(Z).astype(np.intp)
        return labels, np.ones(labels.size)

    @staticmethod
    def _centres(X, labels, weights, n_clusters):
        member = np.flatnonzero(labels >= 0)
        w = np.where(weights[member] > 0, weights[member], 1e-6)
        sums = group_sum(X[member], labels[member], n_clusters, weights=w)
        return l2_normalize(sums)

    def _representatives(self, X, rows, centre):
        """Rows close to ``centre``, diversified by maximal marginal relevance."""
        if rows.size == 0:
            return rows.astype(np.intp)
        relevance = similarity(X[rows], centre[None, :])[:, 0]
        order = np.argsort(-relevance, kind="stable")
        pool = rows[order[: max(10 * self.n_representatives, 50)]]
        return mmr_rerank(
            centre, pool, X, self.n_representatives, diversity=_MMR_DIVERSITY
        ).astype(np.intp)

    # -------------------------------------------------------------- predict
    def fit_predict(self, X, y=None):
        """Fit and return the cluster of each row (``-1``: noise).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : None
            Ignored.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Same as :attr:`labels_`.
        """
        return self.fit(X).labels_

    def predict(self, X):
        """Assign new embeddings to the fitted clusters.

        HDBSCAN: ``hdbscan.approximate_predict`` in the reduced space (a new point
        is placed in the UMAP space at the similarity-weighted mean of its
        ``n_neighbors`` nearest training rows; PCA projects it exactly). Points
        that fall in no cluster get ``-1``, or with ``assign_noise`` their most
        likely cluster. KMeans: the nearest centroid.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings of the same width as in :term:`fit`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster of each row; ``-1`` for noise.
        """
        return self._predict(X)[0]

    def _predict(self, X):
        check_is_fitted(self)
        X = check_embeddings(self, X, reset=False)
        Z = self._transform(l2_normalize(X))
        if self.kmeans_ is not None:
            labels = self.kmeans_.predict(Z).astype(np.intp)
            return self._relabel[labels], np.ones(labels.size)
        if self.n_clusters_ == 0:
            return np.full(X.shape[0], -1, dtype=np.intp), np.zeros(X.shape[0])
        Z64 = Z.astype(np.float64)
        labels, strengths = hdbscan.approximate_predict(self.hdbscan_, Z64)
        labels = np.asarray(labels, dtype=np.intp)
        strengths = np.asarray(strengths, dtype=np.float64)
        if self.assign_noise:
            labels, strengths = self._assign_noise(
                Z, labels, strengths, self.n_clusters_
            )
        return self._relabel[labels], strengths

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.reducer_ is None:
            return X
        if isinstance(self.reducer_, PCA):
            return self.reducer_.transform(X).astype(np.float32)
        return self._place(X)

    def _place(self, X: np.ndarray) -> np.ndarray:
        """Put rows in the UMAP space at the weighted mean of their nearest rows.

        The neighbours are the rows UMAP was fitted on (how UMAP initialises its
        own transform); deterministic, and each row independent of the others.
        """
        return place_by_similarity(X, self._X_ref, self._Z_ref, self.n_neighbors)

    # -------------------------------------------------------------- summary
    def summary(self, texts=None, *, n_keywords=8, stop_words="english"):
        """One row per cluster: size, representative members and keywords.

        Parameters
        ----------
        texts : sequence of str, optional
            The texts of the training rows, in the order given to :meth:`fit`.
            Adds the representative texts and c-TF-IDF keywords (words frequent in
            the cluster and rare in the others).
        n_keywords : int, default=8
            Keywords per cluster.
        stop_words : "english", list of str or None, default="english"
            Words never used as keywords (as in
            :class:`~sklearn.feature_extraction.text.CountVectorizer`).

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster``, ``size``, ``share`` (of all training rows),
            ``mean_probability``, ``representatives`` (row indices) and, with
            ``texts``, ``representative_texts`` and ``keywords``. Noise (``-1``)
            has no row; its count is ``(labels_ == -1).sum()``.
        """
        import pandas as pd

        check_is_fitted(self)
        labels, n = self.labels_, self.labels_.size
        sizes = np.bincount(labels[labels >= 0], minlength=self.n_clusters_)
        prob_sums = np.bincount(
            labels[labels >= 0],
            weights=self.probabilities_[labels >= 0],
            minlength=self.n_clusters_,
        )
        frame = pd.DataFrame(
            {
                "cluster": np.arange(self.n_clusters_),
                "size": sizes,
                "share": sizes / n,
                "mean_probability": prob_sums / np.maximum(sizes, 1),
                "representatives": [r.tolist() for r in self.representatives_],
            }
        )
        if texts is None:
            return frame
        texts = check_texts(texts, estimator_name="EmbeddingClusterer.summary")
        if len(texts) != n:
            raise ValueError(
                f"EmbeddingClusterer.summary got {len(texts)} texts but was fitted on "
                f"{n} rows. Pass the texts of the training rows, in the order given "
                "to fit()."
            )
        frame["representative_texts"] = [
            [texts[i] for i in rows] for rows in self.representatives_
        ]
        frame["keywords"] = _ctfidf_keywords(
            texts, labels, self.n_clusters_, n_keywords, stop_words
        )
        return frame


def _ctfidf_keywords(
    texts: list[str],
    labels: np.ndarray,
    n_clusters: int,
    n_keywords: int,
    stop_words: Any,
) -> list[list[str]]:
    """Top c-TF-IDF words per cluster (BERTopic's class-based TF-IDF)."""
    from sklearn.feature_extraction.text import CountVectorizer

    member = np.flatnonzero(labels >= 0)
    empty: list[list[str]] = [[] for _ in range(n_clusters)]
    if member.size == 0:
        return empty
    vectorizer = CountVectorizer(stop_words=stop_words)
    try:
        counts = vectorizer.fit_transform([texts[i] for i in member])
    except ValueError:  # empty vocabulary: only stop words or punctuation
        return empty
    onehot = sparse.csr_matrix(
        (np.ones(member.size), (labels[member], np.arange(member.size))),
        shape=(n_clusters, member.size),
    )
    per_cluster = np.asarray((onehot @ counts).todense(), dtype=np.float64)
    words_per_cluster = per_cluster.sum(axis=1, keepdims=True)
    tf = per_cluster / np.maximum(words_per_cluster, 1)
    idf = np.log1p(words_per_cluster.mean() / np.maximum(per_cluster.sum(axis=0), 1))
    score = tf * idf
    vocab = vectorizer.get_feature_names_out()
    keywords = []
    for row in score:
        top = np.argsort(-row, kind="stable")[:n_keywords]
        keywords.append([str(vocab[j]) for j in top if row[j] > 0])
    return keywords
