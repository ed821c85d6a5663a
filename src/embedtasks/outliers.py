"""Score how unrelated each embedding is to the rest: anomaly and novelty detection.

:class:`OutlierScorer` follows scikit-learn's outlier API (as
:class:`~sklearn.neighbors.LocalOutlierFactor` does): ``score_samples`` is higher
for more normal items, ``decision_function = score_samples - offset_`` is negative
for outliers, ``predict`` returns -1 (outlier) or +1 (inlier), and ``novelty``
chooses between flagging the training items themselves (``fit_predict``) and
scoring new ones (``predict``).

The default score is the mean dot-product distance ``1 - similarity`` to the ``k``
nearest neighbours (an item never counts as its own neighbour), computed by the
shared exact top-k kernel, so scoring a whole corpus costs one all-vs-all top-k pass.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import LedoitWolf
from sklearn.utils.metaestimators import available_if

from embedtasks._kernel import (
    approximate_top_k,
    build_store,
    is_dask_array,
    l2_normalize,
    quadratic_form,
    similarity,
    use_approximate,
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
)

__all__ = ["OutlierExplanation", "OutlierScorer"]


class OutlierExplanation(NamedTuple):
    """Why items score as they do: their nearest training items.

    All arrays have one row per explained item; ``indices`` and ``similarities``
    have one column per neighbour, most similar first.
    """

    scores: np.ndarray
    indices: np.ndarray
    similarities: np.ndarray


def _novelty_is(value: bool, method: str):
    """``available_if`` check: the method exists only for one ``novelty`` setting."""

    def check(self) -> bool:
        if self.novelty != value:
            if value:
                hint = (
                    f"{method} is not available when novelty=False: use "
                    "fit_predict (or training_scores_) for the training items, or "
                    "set novelty=True to score new, unseen items."
                )
            else:
                hint = (
                    "fit_predict is not available when novelty=True: use "
                    "fit(X).predict(X_new) for new items, or set novelty=False to "
                    "flag the training items themselves."
                )
            raise AttributeError(hint)
        return True

    return check


class OutlierScorer(LocalCopyMixin, OutlierMixin, BaseEstimator):
    """Flag items that are little related to the rest, by embedding similarity.

    Rows are normalised to unit length, so similarity is the dot product (cosine).

    Parameters
    ----------
    method : {"knn", "centroid", "mahalanobis", "lof"}, default="knn"
        ``"knn"``: mean distance ``1 - similarity`` to the ``n_neighbors`` most
        similar training items (itself excluded). ``"centroid"``: distance to the
        mean direction. ``"mahalanobis"``: squared Mahalanobis distance under a
        Ledoit-Wolf shrinkage covariance. ``"lof"``: local outlier factor (local
        density relative to the neighbours') on the same neighbours.
    n_neighbors : int, default=10
        Neighbours per item for ``"knn"`` and ``"lof"`` (and the default number
        :meth:`explain` returns); lowered to ``n_samples - 1`` on small data.
    contamination : "auto" or float, default="auto"
        Share of outliers. ``"auto"`` puts ``offset_`` at the lower Tukey fence of
        the training scores (first quartile minus 1.5 interquartile ranges); a
        float in (0, 0.5] puts it at that quantile of the training scores.
    novelty : bool, default=False
        False: :meth:`fit_predict` flags the training items (outlier detection).
        True: :meth:`predict`, :meth:`decision_function` and :meth:`score_samples`
        score new items against the training set (novelty detection); do not
        call them on the training items themselves, which would find themselves.
    neighbors : {"auto", "exact", "approximate"}, default="auto"
        How ``knn``/``lof`` find the training items' neighbours in :meth:`fit`:
        ``"exact"`` compares every pair; ``"approximate"`` only rows sharing one
        of their 2 nearest k-means lists (see
        :class:`~embedtasks.DiversityReport`); ``"auto"``: exact up to 200,000
        rows. New items are always scored exactly.
    n_jobs : int, default=None
        Threads of the similarity kernel: ``None`` or ``-1`` every core, ``-2``
        every core but one; on a Dask cluster, threads per worker task (``None``:
        one, the workers already run in parallel).

    Attributes
    ----------
    training_scores_ : ndarray of shape (n_samples,)
        ``score_samples`` of each training item, itself excluded (higher = more
        normal), as LocalOutlierFactor's ``negative_outlier_factor_``.
    offset_ : float
        Threshold on the scores: ``decision_function = score_samples - offset_``.
    n_neighbors_ : int
        The number of neighbours actually used.
    center_ : ndarray of shape (n_features,)
        Mean of the unit training rows (``"centroid"`` and ``"mahalanobis"``).
    precision_ : ndarray of shape (n_features, n_features)
        Inverse shrinkage covariance (``"mahalanobis"`` only).
    n_features_in_ : int
        Width of the embeddings seen in :term:`fit`.

    See Also
    --------
    sklearn.neighbors.LocalOutlierFactor : Euclidean local outlier factor.
    sklearn.ensemble.IsolationForest : Tree-based anomaly scores.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import OutlierScorer
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([[1.0, 0.0, 0.0] + 0.05 * rng.normal(size=(20, 3)),
    ...                [[0.0, 0.0, 1.0]]])  # the last item points elsewhere
    >>> scorer = OutlierScorer(n_neighbors=5)
    >>> scorer.fit_predict(X)[-3:]
    array([ 1,  1, -1])
    >>> scorer.explain().indices[-1, :2]  # its nearest training items
    array([15, 13])
    """

    _parameter_constraints: dict = {
        "method": [StrOptions({"knn", "centroid", "mahalanobis", "lof"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "contamination": [
            StrOptions({"auto"}),
            Interval(Real, 0, 0.5, closed="right"),
        ],
        "novelty": ["boolean"],
        "neighbors": [StrOptions({"auto", "exact", "approximate"})],
        "n_jobs": [*N_JOBS, None],
    }

    def __init__(
        self,
        *,
        method="knn",
        n_neighbors=10,
        contamination="auto",
        novelty=False,
        neighbors="auto",
        n_jobs=None,
    ):
        self.method = method
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.novelty = novelty
        self.neighbors = neighbors
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the training set and the outlier threshold.

        Parameters
        ----------
        X : array-like or dask.array of shape (n_samples, n_features)
            Embeddings (at least 2 rows). A dask array (``"knn"``/``"lof"``
            only) stays sharded on the Dask workers; the scores equal the
            in-memory ones bit for bit.
        y : None
            Ignored.

        Returns
        -------
        self : OutlierScorer
            The fitted scorer.
        """
        if is_dask_array(X) and self.method not in ("knn", "lof"):
            raise ValueError(
                f"OutlierScorer(method={self.method!r}) does not shard a dask "
                "array; use method='knn' or 'lof', or fit on X.compute()."
            )
        X = self._fit_corpus(X)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"OutlierScorer needs at least 2 samples to fit, got {n} sample: an "
                "item can only be unusual relative to others."
            )
        self._store = build_store(X)
        self.n_neighbors_ = min(self.n_neighbors, n - 1)
        self._train_nn = None
        if self.method in ("knn", "lof"):
            if isinstance(X, np.ndarray) and use_approximate(self.neighbors, n):
                nn = approximate_top_k(X, self.n_neighbors_, n_jobs=self.n_jobs)
            else:
                nn = self._neighbours(X, self.n_neighbors_, self_offset=0)
            self._train_nn = nn
            if self.method == "lof":
                dist = np.maximum(0.0, 1.0 - nn.scores)
                self._k_distance = dist[:, -1]
                self._lrd = self._local_density(nn.indices, dist)
            scores = self._scores_from_neighbors(nn.indices, nn.scores)
        else:
            self.center_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
            if self.method == "mahalanobis":
                cov = LedoitWolf(assume_centered=False).fit(X)
                self.precision_ = cov.precision_.astype(np.float32)
            scores = self._global_scores(X)
        self.training_scores_ = scores
        if self.contamination == "auto":
            q1, q3 = np.percentile(scores, [25.0, 75.0])
            self.offset_ = float(q1 - 1.5 * (q3 - q1))
        else:
            self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        return self

    # ----------------------------------------------------------- scoring
    def _neighbours(self, Q, k, *, self_offset=None):
        """The ``k`` nearest training rows of each query, from the store."""
        return self._store.top_k(Q, k, self_offset=self_offset, n_jobs=self.n_jobs)

    def _local_density(self, indices: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Local reachability density from neighbour indices and distances."""
        reach = np.maximum(self._k_distance[indices], dist)
        return 1.0 / (reach.mean(axis=1, dtype=np.float64) + 1e-10)

    def _scores_from_neighbors(
        self, indices: np.ndarray, similarities: np.ndarray
    ) -> np.ndarray:
        if self.method == "knn":
            return similarities.mean(axis=1, dtype=np.float64) - 1.0
        dist = np.maximum(0.0, 1.0 - similarities)
        lrd = self._local_density(indices, dist)
        return -(self._lrd[indices].mean(axis=1) / lrd)

    def _global_scores(self, X: np.ndarray) -> np.ndarray:
        """Centroid or Mahalanobis scores (canonical: batch-independent)."""
        if self.method == "centroid":
            direction = l2_normalize(self.center_)[None, :]
            return similarity(X, direction)[:, 0].astype(np.float64) - 1.0
        D = X - self.center_
        return -quadratic_form(D, self.precision_).astype(np.float64)

    def _score(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = l2_normalize(check_embeddings(self, X, reset=False))
        if self.method in ("knn", "lof"):
            nn = self._neighbours(X, self.n_neighbors_)
            return self._scores_from_neighbors(nn.indices, nn.scores)
        return self._global_scores(X)

    @available_if(_novelty_is(True, "score_samples"))
    def score_samples(self, X):
        """How normal each new item is (higher = more normal).

        Only with ``novelty=True``; for the training items read
        ``training_scores_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to score against the training set.

        Returns
        -------
        ndarray of shape (n_samples,)
            For ``"knn"``: minus the mean distance ``1 - similarity`` to the
            nearest training items; ``"centroid"``: minus the distance to the
            mean direction; ``"mahalanobis"``: minus the squared Mahalanobis
            distance; ``"lof"``: minus the local outlier factor.
        """
        return self._score(X)

    @available_if(_novelty_is(True, "decision_function"))
    def decision_function(self, X):
        """Shifted scores: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to score against the training set.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``.
        """
        return self._score(X) - self.offset_

    @available_if(_novelty_is(True, "predict"))
    def predict(self, X):
        """Label new items: -1 for outliers, +1 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to score against the training set.

        Returns
        -------
        ndarray of shape (n_samples,)
            -1 where ``decision_function(X) < 0``, else +1.
        """
        return np.where(self._score(X) - self.offset_ < 0, -1, 1)

    @available_if(_novelty_is(False, "fit_predict"))
    def fit_predict(self, X, y=None):
        """Fit, then label the training items: -1 for outliers, +1 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : None
            Ignored.

        Returns
        -------
        ndarray of shape (n_samples,)
            -1 where ``training_scores_ < offset_``, else +1.
        """
        self.fit(X)
        return np.where(self.training_scores_ < self.offset_, -1, 1)

    def to_frame(self):
        """The training rows as a table: how unusual each is and its nearest row.

        The one table of outliers: the command line and the HTML report show it
        (renaming columns at most), so a score means the same everywhere.

        Returns
        -------
        pandas.DataFrame
            One row per training item, in input order: ``outlier_score`` (higher
            is more unusual: ``-training_scores_``), ``is_outlier``
            (``training_scores_ < offset_``), ``nearest`` (the most similar other
            training row) and ``nearest_similarity``.

        Examples
        --------
        >>> import numpy as np
        >>> from embedtasks import OutlierScorer
        >>> X = [[1.0, 0.0], [0.99, 0.1], [0.98, -0.1], [0.0, 1.0]]
        >>> OutlierScorer(n_neighbors=1).fit(X).to_frame().round(3)
           outlier_score  is_outlier  nearest  nearest_similarity
        0          0.005       False        1               0.995
        1          0.005       False        0               0.995
        2          0.005       False        0               0.995
        3          0.900        True        1               0.100
        """
        import pandas as pd

        check_is_fitted(self)
        why = self.explain(n_neighbors=1)
        return pd.DataFrame(
            {
                "outlier_score": -np.asarray(self.training_scores_, dtype=np.float64),
                "is_outlier": self.training_scores_ < self.offset_,
                "nearest": why.indices[:, 0],
                "nearest_similarity": why.similarities[:, 0],
            }
        )

    def explain(self, X=None, *, n_neighbors=None):
        """Show why items score as they do: their most similar training items.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Items to explain. None explains the training items, each with itself
            excluded from its neighbours.
        n_neighbors : int, default=None
            Neighbours to return; defaults to ``n_neighbors_``.

        Returns
        -------
        OutlierExplanation
            ``scores`` (as ``score_samples``, or ``training_scores_``),
            ``indices`` of the nearest training items and their ``similarities``,
            most similar first.
        """
        check_is_fitted(self)
        if n_neighbors is not None:
            check_argument(
                "n_neighbors", n_neighbors, self._parameter_constraints["n_neighbors"]
            )
        k = self.n_neighbors_ if n_neighbors is None else int(n_neighbors)
        if X is None:
            nn = self._train_nn
            if nn is None or k > nn.indices.shape[1]:
                nn = self._neighbours(self._store.rows, k, self_offset=0)
            return OutlierExplanation(
                self.training_scores_, nn.indices[:, :k], nn.scores[:, :k]
            )
        scores = self._score(X)
        X = l2_normalize(check_embeddings(self, X, reset=False))
        nn = self._neighbours(X, k)
        return OutlierExplanation(scores, nn.indices, nn.scores)
