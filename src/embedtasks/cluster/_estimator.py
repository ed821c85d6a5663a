"""Group embeddings by similarity: HDBSCAN after dimension reduction, or KMeans.

Density clustering straight on 384-d (or wider) embeddings leaves most points as
noise: distances concentrate, so no region looks dense. :class:`EmbeddingClusterer`
normalises the rows, reduces them to a few dimensions first (UMAP when the ``umap``
extra is installed, PCA otherwise), then runs ``hdbscan.HDBSCAN`` -- or KMeans when
you ask for a number of clusters -- and lets centres and neighbours in the input
space settle each row's cluster (:mod:`embedtasks.cluster._settle`). Each cluster
gets a centre (in the original space), representative members (close to the centre
and not near-copies of each other) and, from the texts, c-TF-IDF keywords.
"""

from __future__ import annotations

import os
import warnings

import hdbscan
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state

from embedtasks._cachedir import resolve_cache_dir
from embedtasks._kernel import l2_normalize, place_by_similarity, top_k
from embedtasks._keywords import ctfidf_keywords, topic_names
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
from embedtasks.cluster._density import (
    assign_by_membership,
    auto_min_cluster_size,
    fit_hdbscan,
    poor_result_advice,
)
from embedtasks.cluster._names import (
    ClusterComparison,
    cluster_centres,
    compare_labels,
    plot_map,
    representatives,
    summary_frame,
)
from embedtasks.cluster._reduce import (
    ReductionCache,
    fit_layouts,
    neighbour_lists,
    pca_map,
)
from embedtasks.cluster._refine import SAME_ROW
from embedtasks.cluster._settle import InputSpaceRules
from embedtasks.cluster._topics import TopicsMixin

__all__ = ["ClusterComparison", "EmbeddingClusterer"]

#: Output width of the reduction when ``n_components=None`` (measured on Banking77).
_DEFAULT_COMPONENTS = {"umap": 5, "pca": 20}
#: UMAP epochs for the clustered space (umap-learn: 500 below 10,000 rows, else
#: 200). Banking77 test, seeds 0-2: V-measure 0.795-0.810 and 7.7-10.6% noise at
#: 200, 0.806-0.817 and 6.5-7.1% at 300, 0.809-0.819 at 400 (then 1.3x the time).
_UMAP_EPOCHS = 300
#: Epochs of the 2-D map, which starts from the clustered layout's main plane.
_MAP_EPOCHS = 100
#: Below this many rows a neighbour graph says little: PCA reduces and maps.
_MIN_LAYOUT_SAMPLES = 20
#: No warning about noise or few clusters below this many rows.
_WARN_MIN_SAMPLES = 200


class EmbeddingClusterer(TopicsMixin, ClusterMixin, BaseEstimator):
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
        Dimension reduction before clustering. ``"umap"``: UMAP's layout
        (cosine, ``min_dist=0``) of the *exact* neighbour graph of the rows (the
        similarity kernel's top-k self-join), run by embedtasks' own seeded,
        compiled layout (numba; installed with embedtasks). ``"auto"`` uses it,
        and PCA if numba is missing. On Banking77 test (MiniLM) UMAP + HDBSCAN
        reaches V-measure 0.825 with 1% noise; PCA + HDBSCAN about half the rows
        as noise (``benchmarks/bench_cluster.py``). ``None`` clusters the
        normalised embeddings themselves (slow and noisy when wide). A choice
        that leaves more than half the rows as noise, or fewer than 3 clusters,
        warns.
    n_components : int, default=None
        Width of the reduced space; ``None`` means 5 for UMAP and 20 for PCA.
        Inputs that are not wider than this are not reduced.
    n_neighbors : int, default=15
        Size of each row's neighbourhood in the graph UMAP lays out (larger: more
        global structure). Also the number of fitted rows that place a new point
        in the UMAP space in :meth:`predict`.
    reduction_max_samples : int or None, default=20_000
        The layouts (UMAP and :attr:`map_`) are computed on a random sample of at
        most this many rows (they run on one core, to stay reproducible); the
        other rows are placed in them as :meth:`predict` places new points, and
        HDBSCAN/KMeans then cluster every row. ``None``: lay out all rows.
    min_cluster_size : int or "auto", default="auto"
        HDBSCAN: smallest group of points that counts as a cluster. ``"auto"``
        follows the number of rows: 1 row in 40 (at least 5) below 600 rows, so
        a few hundred rows can hold a few dozen clusters; 15 up to 3,000 rows;
        then 1 row in 200, so larger corpora are not shattered into hundreds of
        tiny clusters (Banking77 train, 10k rows, 77 intents: 268 clusters and
        V-measure 75.7 at 15; 73 clusters and 77.2 at 50).
    min_samples : int, default=5
        HDBSCAN: neighbours a point needs to be a core point; higher marks more
        points as noise.
    cluster_selection_method : {"auto", "eom", "leaf"}, default="auto"
        HDBSCAN: ``"eom"`` picks the most persistent clusters, ``"leaf"`` the
        smallest, most homogeneous ones (and more noise). ``"auto"``: ``"eom"``,
        and below 600 rows ``"leaf"`` when ``"eom"`` keeps a cluster of more
        than twice the mean cluster's size (a parent of several groups: 300
        rows of 40 classes gave 3-9 clusters, one with up to half the rows).
        When ``"eom"`` keeps one
        cluster holding more than half the rows, the clusters are chosen again
        with none above a fifth of the rows, and the choice HDBSCAN's validity
        estimate (DBCV, ``relative_validity_``) rates higher is kept (on Brown
        genres: 42 clusters and V-measure 0.27 instead of 9 clusters, one of them
        85% of the rows, and 0.13).
    cluster_selection_epsilon : float, default=0.0
        HDBSCAN: clusters closer than this (in the reduced space) are merged.
    assign_noise : bool, default=False
        Give each point HDBSCAN marks as noise the cluster it most likely belongs
        to (soft membership), in :attr:`labels_` and in :meth:`predict`.
    max_noise : float in [0, 1] or None, default=0.15
        Target share of noise. When HDBSCAN leaves more, the noise rows closest
        to a cluster (a similarity-weighted vote of their ``n_neighbors`` most
        similar clustered rows) join it, strongest first, until at most this share
        of the rows is noise; they get probability 0. ``0.0`` assigns every row;
        ``None`` keeps all of HDBSCAN's noise (on paragraphs, a third of the rows).
        Then (unless ``None``) a noise row joins a cluster (probability 0)
        when, in the input space, it is at least as similar to the cluster's
        centre as one of the cluster's HDBSCAN members and its neighbours'
        vote names that cluster too: the layout can leave out rows that the
        input vectors put inside a cluster, so the noise share often ends
        below ``max_noise``.
        Last (unless ``None``), the input space has the final word on every
        row: it moves to the cluster that maximises its similarity to the
        cluster's centre plus a weight times the share of its ``n_neighbors``
        most similar rows in that cluster, centres and shares recomputed
        until the rows settle. The weight is 2.5 times the median margin
        between a row's best and second-best centre, so it follows the data's
        similarity scale. A row left as noise above stays noise unless a third
        of its neighbours end in its cluster and it is as similar to the
        centre as one of the cluster's rows clustered before (moved rows get
        probability 0). The layout keeps neighbourhoods but can lose the
        broader directions the vectors share: on Debian package descriptions
        by section the layout's clusters only matched KMeans given the true
        k (V-measure 0.519 against 0.520); settled, 0.540 with 5% noise
        instead of 10%. Skipped below 600 rows (small clusters, uncertain
        centres).
        :meth:`predict` applies the same rules in the same order (a point
        equal to a training row takes its label).
    n_representatives : int, default=5
        Members listed per cluster in :attr:`representatives_`: the closest to the
        cluster's centre, skipping near-copies of those already chosen (maximal
        marginal relevance).
    random_state : int, RandomState instance or None, default=None
        Seeds UMAP, PCA and KMeans. An int makes :meth:`fit` reproducible (UMAP then
        runs single-threaded, as umap-learn requires for reproducibility).
    cache_dir : "default", str, path or None, default="default"
        Where the UMAP layouts (clustered space and map) are kept, keyed by the
        rows' content and every layout parameter, so that refitting the same rows
        with other HDBSCAN settings (``min_cluster_size``, ``max_noise``, ...)
        skips the reduction, in this process and the next. ``"default"``: the
        ``cluster/`` folder of the embedtasks cache directory
        (``$EMBEDTASKS_CACHE_DIR``, else ``~/.cache/embedtasks``), where
        umap-learn's compiled code is kept too (``numba/``); ``None``: this
        process only. A damaged file is detected (checksum) and recomputed.

    Attributes
    ----------
    min_cluster_size_ : int
        The HDBSCAN ``min_cluster_size`` used (``"auto"`` resolved); not set when
        ``n_clusters`` selects KMeans.
    cluster_selection_method_ : {"eom", "leaf"}
        The HDBSCAN selection method used (``"auto"`` resolved); not set when
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
    map_ : ndarray of shape (n_samples, 2), dtype float32
        A 2-D layout of the training rows for plots (:meth:`plot_map`): UMAP in
        two dimensions on the same neighbour graph (2-D PCA below 20 rows).
    reduction_ : {"umap", "pca"} or None
        The reduction that produced :attr:`embedding_` (``None``: none ran).
    reducer_ : PCA or None
        The fitted PCA when ``reduction_ == "pca"``, else ``None`` (UMAP's
        layout is computed on the exact neighbour graph and cached; new rows
        are placed by similarity, see :meth:`predict`).
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
    ...                                min_cluster_size=5, random_state=0,
    ...                                cache_dir=None).fit(X)
    >>> clusterer.n_clusters_, clusterer.labels_[[0, 20, 40]].tolist()
    (3, [0, 1, 2])
    >>> clusterer.predict(centres).tolist()
    [0, 1, 2]
    >>> clusterer.map_.shape, clusterer.map_.dtype
    ((60, 2), dtype('float32'))
    >>> texts = ["red apple"] * 20 + ["blue sky"] * 20 + ["green grass"] * 20
    >>> clusterer.summary(texts)[["cluster", "name", "size", "keywords"]]
       cluster         name  size       keywords
    0        0    red apple    20    [red apple]
    1        1     blue sky    20     [blue sky]
    2        2  green grass    20  [green grass]
    >>> clusterer.compare(np.repeat(["fruit", "sky", "grass"], 20)).purity
    1.0
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
        "cluster_selection_method": [StrOptions({"auto", "eom", "leaf"})],
        "cluster_selection_epsilon": [Interval(Real, 0, None, closed="left")],
        "assign_noise": ["boolean"],
        "max_noise": [Interval(Real, 0, 1, closed="both"), None],
        "n_representatives": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "cache_dir": [str, os.PathLike, None],
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
        cluster_selection_method="auto",
        cluster_selection_epsilon=0.0,
        assign_noise=False,
        max_noise=0.15,
        n_representatives=5,
        random_state=None,
        cache_dir="default",
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
        self.max_noise = max_noise
        self.n_representatives = n_representatives
        self.random_state = random_state
        self.cache_dir = cache_dir

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
        self._rules = None
        if self.n_clusters is None:
            raw, probabilities = self._fit_hdbscan(Z)
            self.kmeans_ = None
            n_found = int(self.hdbscan_.labels_.max()) + 1
            if self.max_noise is not None:
                self._rules = InputSpaceRules(
                    self.max_noise, self.n_neighbors, self.min_cluster_size_
                )
                members = self.hdbscan_.labels_ >= 0
                raw, probabilities, n_found = self._rules.fit(
                    X, raw, probabilities, members, self
                )
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
        self.cluster_centers_ = cluster_centres(X, labels, probabilities, n_found)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_found + 1))
        self.representatives_ = [
            representatives(
                X, order[bounds[c] : bounds[c + 1]], centre, self.n_representatives
            )
            for c, centre in enumerate(self.cluster_centers_)
        ]
        return self

    def _reduction_kind(self) -> str | None:
        if self.reduction == "auto":
            return "umap"
        return self.reduction

    def _fit_reduce(self, X: np.ndarray, seed: int) -> np.ndarray:
        """The space HDBSCAN/KMeans cluster; also sets :attr:`map_`."""
        kind = self._reduction_kind()
        self.reducer_ = None
        self.reduction_ = None
        n_samples, n_features = X.shape
        sample = None
        limit = self.reduction_max_samples
        if limit is not None and n_samples > limit:
            sample = np.sort(check_random_state(seed).choice(n_samples, limit, False))
        self._sample = sample
        self._X_ref = X if sample is None else X[sample]
        small = self._X_ref.shape[0] < _MIN_LAYOUT_SAMPLES
        n_components = self.n_components or _DEFAULT_COMPONENTS.get(kind or "", 0)
        reduce = (
            kind is not None
            and n_features > n_components  # nothing to gain below the target width
            and n_samples > n_components + 2  # the spectral start needs more rows
        )
        Z = X
        if reduce and (kind == "pca" or small):
            # PCA, also for too few rows for a useful graph (it does as well)
            self.reduction_ = "pca"
            self.reducer_ = PCA(n_components=n_components, random_state=seed)
            Z = np.ascontiguousarray(self.reducer_.fit_transform(X), np.float32)
        if small:
            self.map_ = pca_map(X, seed)
            lists = neighbour_lists(X, sample, self.n_neighbors)
            self._neighbours, self._nearest = lists
            return Z
        umap = reduce and self.reduction_ is None
        layouts = fit_layouts(
            X,
            sample,
            n_components=n_components if umap else None,
            n_neighbors=self.n_neighbors,
            epochs=(_UMAP_EPOCHS, _MAP_EPOCHS),
            seed=seed,
            cache=ReductionCache(resolve_cache_dir(self.cache_dir)),
        )
        self.map_ = layouts.map
        self._neighbours, self._nearest = layouts.neighbours, layouts.nearest
        if umap and layouts.Z is not None:
            self.reduction_ = "umap"
            Z = layouts.Z
            self._Z_ref = Z if sample is None else Z[sample]
        return Z

    def _fit_hdbscan(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_samples = Z.shape[0]
        if self.min_cluster_size == "auto":
            self.min_cluster_size_ = auto_min_cluster_size(n_samples)
        else:
            self.min_cluster_size_ = self.min_cluster_size
        self.hdbscan_, self.cluster_selection_method_ = fit_hdbscan(
            Z,
            min_cluster_size=self.min_cluster_size_,
            min_samples=self.min_samples,
            epsilon=self.cluster_selection_epsilon,
            method=self.cluster_selection_method,
        )
        labels = self.hdbscan_.labels_.astype(np.intp)
        probabilities = self.hdbscan_.probabilities_.astype(np.float64)
        if n_samples >= _WARN_MIN_SAMPLES and not self.assign_noise:
            advice = poor_result_advice(
                labels,
                space=self.reduction_ or "the raw embeddings (no reduction)",
                min_cluster_size=self.min_cluster_size_,
                method=self.cluster_selection_method_,
                max_noise=self.max_noise,
            )
            if advice:
                warnings.warn(advice, UserWarning, stacklevel=4)
        if self.assign_noise:
            labels, probabilities = assign_by_membership(
                self.hdbscan_, Z, labels, probabilities, labels.max() + 1
            )
        return labels, probabilities

    def _fit_kmeans(self, Z: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import KMeans

        self.kmeans_ = KMeans(n_clusters=self.n_clusters, n_init=3, random_state=seed)
        labels = self.kmeans_.fit_predict(Z).astype(np.intp)
        return labels, np.ones(labels.size)

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
        ``n_neighbors`` nearest training rows, a training row at its own place;
        PCA projects it exactly). A point that falls in no cluster joins one as
        ``max_noise`` moved training rows (the same neighbour vote, at least as
        strong, then the same closeness to a cluster's centre), else gets
        ``-1``, or with ``assign_noise`` its most likely cluster. On the
        training rows this reproduces :attr:`labels_`.
        KMeans: the nearest centroid.

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
        X = l2_normalize(X)
        Z = self._transform(X)
        if self.kmeans_ is not None:
            labels = self.kmeans_.predict(Z).astype(np.intp)
            return self._relabel[labels], np.ones(labels.size)
        if self.n_clusters_ == 0:
            return np.full(X.shape[0], -1, dtype=np.intp), np.zeros(X.shape[0])
        if self.embedding_.shape[0] < 2 * self.hdbscan_.min_samples:
            # too few fitted rows for hdbscan's neighbour query: the nearest
            # fitted row's cluster (all rows are reference rows at this size)
            nearest = top_k(X, self._X_ref, 1).indices[:, 0]
            labels = self.hdbscan_.labels_[nearest]
            strengths = self.hdbscan_.probabilities_[nearest]
        else:
            Z64 = Z.astype(np.float64)
            labels, strengths = hdbscan.approximate_predict(self.hdbscan_, Z64)
        labels = np.asarray(labels, dtype=np.intp)
        strengths = np.asarray(strengths, dtype=np.float64)
        if self._rules is not None:
            labels, strengths = self._rules.join_noise(X, labels, strengths)
        if self.assign_noise:
            n_found = int(self.hdbscan_.labels_.max()) + 1
            labels, strengths = assign_by_membership(
                self.hdbscan_, Z, labels, strengths, n_found
            )
        if self._rules is not None:
            labels, strengths = self._rules.settle(X, labels, strengths, self._X_ref)
        return self._relabel[labels], strengths

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.reduction_ is None:
            return X
        if self.reducer_ is not None:
            return self.reducer_.transform(X).astype(np.float32)
        return self._place(X)

    def _place(self, X: np.ndarray) -> np.ndarray:
        """Put rows in the UMAP space at the weighted mean of their nearest rows.

        The neighbours are the rows UMAP was fitted on (how UMAP initialises its
        own transform); deterministic, and each row independent of the others.
        """
        Z = place_by_similarity(X, self._X_ref, self._Z_ref, self.n_neighbors)
        nearest = top_k(X, self._X_ref, 1)
        same = nearest.scores[:, 0] >= 1.0 - SAME_ROW
        Z[same] = self._Z_ref[nearest.indices[same, 0]]
        return Z

    # -------------------------------------------------------------- summary
    def summary(
        self, texts=None, *, n_keywords=8, stop_words="english", namer=None,
        n_topics=None,
    ):  # fmt: skip
        """One row per cluster, plus a noise row: size, members, keywords, name.

        Parameters
        ----------
        texts : sequence of str, optional
            The texts of the training rows, in the order given to :meth:`fit`.
            Adds the representative texts and c-TF-IDF keywords (terms frequent in
            the cluster and rare in the others; address fragments such as "www"
            and terms found in most clusters are left out; two-word phrases when
            they beat their words), and names clusters by their keywords.
        n_keywords : int, default=8
            Keywords per cluster.
        stop_words : "english", list of str or None, default="english"
            Words never used as keywords (as in
            :class:`~sklearn.feature_extraction.text.CountVectorizer`).
        namer : object with a ``name(clusters)`` method, optional
            Names the clusters instead of their keywords, e.g.
            :class:`~embedtasks.ChatNamer` (a chat model, budgeted and cached).
            It gets one dict per cluster, largest first: ``name`` (the keyword
            name), ``keywords``, ``texts`` (the representative texts) and
            ``size``, and returns a name each. Needs ``texts``; the keyword
            name is then kept in a column ``keyword_name``.
        n_topics : int, "auto" or None, default=None
            Adds a column ``topic``: the topic of each cluster, as
            :meth:`topics` merges them (noise: ``-1``).

        Returns
        -------
        pandas.DataFrame
            Columns ``cluster``, ``name`` (``"rust cargo crate"``: two to four
            words from the keywords with ``texts``, ``"cluster 3"`` without;
            see :func:`topic_names`), ``size``,
            ``share`` (of all training rows), ``mean_probability``,
            ``representatives`` (row indices) and, with ``texts``,
            ``representative_texts`` and ``keywords``. Clusters come by
            decreasing size; when there is noise, a last row ``cluster == -1``
            named ``"noise"`` counts it (its representatives are the first
            noise rows, its keywords empty).
        """
        check_is_fitted(self)
        texts = self._check_texts(texts, "summary", namer)
        frame = summary_frame(
            self.labels_,
            self.probabilities_,
            self.representatives_,
            texts,
            n_keywords=n_keywords,
            stop_words=stop_words,
            n_noise_examples=self.n_representatives,
            namer=namer,
        )
        return self._with_topics(frame, n_topics)

    def _check_texts(self, texts, method, namer=None):
        """The training rows' texts, checked (None stays None without a namer)."""
        if texts is None:
            if namer is not None:
                raise ValueError(
                    f"EmbeddingClusterer.{method}: a namer needs the texts; pass "
                    f"{method}(texts, namer=...)."
                )
            return None
        texts = check_texts(texts, estimator_name=f"EmbeddingClusterer.{method}")
        if len(texts) != self.labels_.size:
            raise ValueError(
                f"EmbeddingClusterer.{method} got {len(texts)} texts but was fitted "
                f"on {self.labels_.size} rows. Pass the texts of the training rows, "
                "in the order given to fit()."
            )
        return texts

    def _names(self, texts):
        if texts is None:
            return topic_names(self.n_clusters_, None)
        texts = self._check_texts(texts, "names")
        # the same keywords as summary()'s defaults, so the names match it
        keywords = ctfidf_keywords(texts, self.labels_, self.n_clusters_, 8, "english")
        return topic_names(self.n_clusters_, keywords)

    def plot_map(self, texts=None, *, ax=None, n_labels=60, point_size=None):
        """Draw :attr:`map_`: clusters coloured and named, noise in grey.

        Parameters
        ----------
        texts : sequence of str, optional
            The texts of the training rows: clusters are then named by their
            keywords (``"rust cargo crate"``), else ``"cluster 3"``.
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new 10 x 8 inch figure by default.
        n_labels : int, default=60
            Name at most this many clusters (the largest), at their median point.
        point_size : float, optional
            Marker size; by default it shrinks as the rows grow.

        Returns
        -------
        matplotlib.axes.Axes
            The axes drawn on.
        """
        check_is_fitted(self)
        return plot_map(
            self.map_,
            self.labels_,
            self._names(texts),
            ax=ax,
            n_labels=n_labels,
            point_size=point_size,
        )

    def compare(self, y, texts=None):
        """Compare the clusters with an existing label column.

        Parameters
        ----------
        y : array-like of shape (n_samples,)
            A label per training row (in the order given to :meth:`fit`).
        texts : sequence of str, optional
            The training texts, to name the clusters by their keywords.

        Returns
        -------
        ClusterComparison
            ``purity`` (share of clustered rows carrying their cluster's most
            common label), ``v_measure``, ``homogeneity``, ``completeness`` and
            ``adjusted_rand`` (noise counted as one more cluster), ``noise_share``
            and ``table``: a DataFrame with one row per cluster (noise ``-1``
            last) and one column per label (row counts), after ``name``,
            ``size``, ``top_label`` and ``top_share``.
        """
        check_is_fitted(self)
        return compare_labels(self.labels_, y, self._names(texts))
