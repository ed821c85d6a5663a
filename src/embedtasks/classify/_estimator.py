"""Classify embeddings by their labels: zero-shot, few-shot or a full training set.

:class:`NearestLabelClassifier` picks the head that suits the labels a user has:

- **zero-shot** (label names or descriptions only): each input is scored by its
  similarity to each label embedding, corrected for *label hubs* (a label close to
  everything would otherwise win everything);
- **examples** (``fit(X, y)``): nearest centroid, per-class nearest neighbours or a
  linear head (multinomial logistic regression on the embeddings), chosen by
  cross-validated accuracy on the training data (``method="auto"``). Label
  embeddings, when given, join each class as a prior worth ``prior_weight``
  examples.

Probabilities are ``softmax(scores / temperature_)``. With examples the
temperature is fitted on the held-out folds of that cross-validation, which also
set ``abstain_threshold_`` from a target precision. All similarity math goes
through :mod:`embedtasks._kernel`, so a row gets the same scores (bit for bit)
whatever batch it comes in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from threadpoolctl import threadpool_limits

from embedtasks._kernel import (
    group_sum,
    l2_normalize,
    similarity,
    softmax,
    top_k,
)
from embedtasks._optional import import_optional
from embedtasks._validation import (
    HasMethods,
    Integral,
    Interval,
    Real,
    StrOptions,
    _fit_context,
    check_embeddings,
    check_is_fitted,
)

__all__ = ["NearestLabelClassifier"]

#: Zero-shot temperature when no inputs are given to fit one from.
DEFAULT_TEMPERATURE = 0.05
#: Zero-shot temperature = this times the mean per-row spread (standard deviation)
#: of the inputs' hub-corrected label scores. Fitted on Banking77's training
#: queries (zero-shot, expected calibration error 1.0%; 2.3% on its test queries);
#: see benchmarks/bench_classify.py.
ZERO_SHOT_SPREAD = 0.40
#: Heads ``method="auto"`` chooses among, simplest first (ties go to the simpler).
HEADS = ("centroid", "knn", "linear")
#: Neighbour counts the ``"knn"`` head tries when ``n_neighbors="auto"``.
_KNN_CANDIDATES = (3, 10, 30)
#: scikit-learn's hint that y may be continuous; few-shot y is not.
_MANY_CLASSES = "The number of unique classes is greater than 50%"
#: Cross-validation folds are held out until this many rows have been.
_MIN_HELD_OUT = 2000
#: At most this many inputs set the zero-shot hub correction and temperature.
_MAX_REFERENCE_ROWS = 10_000
_BALANCE_ITERATIONS = 50


class NearestLabelClassifier(ClassifierMixin, BaseEstimator):
    """Label each embedding with its class, by the best head for the labels given.

    Inputs are embeddings (rows are normalised to unit length), so the classifier
    goes after any embedder in one :class:`~sklearn.pipeline.Pipeline`. Classes come
    from labelled examples (``fit(X, y)``, few-shot or a full training set), from
    label names or descriptions embedded by ``embedder`` (zero-shot: ``fit(X)`` with
    no ``y``), or from both, where each label embedding acts as a prior worth
    ``prior_weight`` examples of its class.

    Parameters
    ----------
    method : {"auto", "centroid", "knn", "linear"}, default="auto"
        How a class is scored when there are examples. ``"centroid"``: cosine
        similarity to the class's normalised mean direction. ``"knn"``: the
        similarity-weighted vote of the ``n_neighbors`` most similar examples
        (each class scores the sum of its neighbours' similarities over
        ``n_neighbors``; follows classes that are not one blob).
        ``"linear"``: multinomial logistic regression (lbfgs, ``C``) on the
        embeddings. ``"auto"`` chooses among the three by ``cv``-fold
        cross-validated accuracy on the training data (``cv_scores_``). Without
        examples every method is zero-shot (``method_ == "zero-shot"``).
    n_neighbors : "auto" or int, default="auto"
        Neighbours that vote in the ``"knn"`` head. ``"auto"`` tries 3, 10 and 30
        in the same cross-validation and keeps the best (``n_neighbors_``; 3 when
        no cross-validation runs).
    C : float, default=10.0
        Inverse L2 regularisation strength of the ``"linear"`` head.
    cv : int, default=3
        Number of cross-validation folds used to choose the head, fit the
        temperature and set ``abstain_threshold_`` (classes are spread evenly over
        the folds; rows of one group stay in one fold, see :meth:`fit`). Folds are
        held out in turn until 2,000 rows have been: a large training set is
        judged on its first fold alone, which keeps the cost of ``"auto"`` near
        one extra logistic-regression fit.
    temperature : "auto" or float, default="auto"
        Softmax temperature of :meth:`predict_proba` (lower is sharper). ``"auto"``:
        with examples, the temperature that minimises the log-loss on the held-out
        folds; zero-shot, ``ZERO_SHOT_SPREAD`` (0.40) times the mean per-row
        standard deviation of the inputs' label scores (``DEFAULT_TEMPERATURE``,
        0.05, when ``fit`` gets no inputs).
    embedder : transformer, default=None
        Maps a list of str to embeddings of the same model as ``X`` (for example
        :class:`~embedtasks.LocalEmbedder`). Used only to embed the label texts; a
        fitted embedder is used as is, an unfitted one is cloned and fitted on them.
    labels : array-like of shape (n_classes,), default=None
        The classes, for zero-shot use: each is embedded through ``template``. When
        given, ``y`` may only hold these labels, and a label without examples is
        still predicted from its embedding.
    label_descriptions : dict or list of str, default=None
        Text to embed instead of the bare label name: a dict ``{label: text}`` (it
        may cover only some labels, and gives the labels when ``labels`` is None),
        or a list aligned with ``labels``.
    template : str, default="{label}"
        Format string turning a label (or its description) into the text that is
        embedded, e.g. ``"A question about {label}"``. Must contain ``{label}``.
    prior_weight : float, default=2.0
        How many examples a label embedding is worth when a class also has
        labelled examples (it joins the class's centroid, its neighbours' mean,
        and the linear head's training rows). ``0`` ignores label embeddings for
        such classes.
    hub_correction : float, default=0.5
        Zero-shot only: how far each label's score is shifted toward using every
        label equally often on the inputs given to :meth:`fit` (``0``: raw
        similarities; ``1``: fully balanced). A label that is similar to
        everything gets a negative shift (``label_bias_``).
    target_precision : float, default=None
        If set (with examples), ``abstain_threshold_`` becomes the lowest
        probability at which the held-out predictions reach this precision.
        Cannot be combined with ``abstain_threshold``.
    abstain_threshold : float, default=None
        If set, :meth:`predict` returns ``abstain_label`` where the highest class
        probability is below it.
    abstain_label : object, default=-1
        The prediction used when the classifier abstains.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (sorted).
    n_features_in_ : int
        Width of the embeddings seen in :term:`fit`.
    method_ : str
        The head in use: ``"centroid"``, ``"knn"``, ``"linear"`` or
        ``"zero-shot"``.
    cv_scores_ : dict
        Cross-validated accuracy of each head tried (empty when no
        cross-validation ran: zero-shot, fixed method and temperature, or fewer
        than two examples).
    temperature_ : float
        The softmax temperature used by :meth:`predict_proba`.
    n_neighbors_ : int
        Neighbours that vote in the ``"knn"`` head.
    abstain_threshold_ : float or None
        The probability below which :meth:`predict` abstains.
    centroids_ : ndarray of shape (n_classes, n_features)
        Unit-norm prototype of each class: mean direction of its examples plus
        ``prior_weight`` times its label embedding (the label embedding alone for
        a class without examples).
    label_embeddings_ : ndarray of shape (n_classes, n_features) or None
        Unit-norm embedding of each class's label text; None without labels.
    label_bias_ : ndarray of shape (n_classes,) or None
        Zero-shot hub correction added to each label's similarity; None with
        examples.
    linear_ : LogisticRegression or None
        The fitted linear head (``method_ == "linear"``), else None.
    class_counts_ : ndarray of shape (n_classes,)
        Number of labelled examples of each class.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : The linear head.
    sklearn.neighbors.NearestCentroid : Euclidean nearest centroid, without
        probabilities or label embeddings.

    Examples
    --------
    >>> from embedtasks import NearestLabelClassifier
    >>> X = [[1.0, 0.1], [0.9, 0.0], [0.8, 0.3], [0.0, 1.0], [0.1, 0.8], [0.2, 0.9]]
    >>> y = ["cat", "cat", "cat", "dog", "dog", "dog"]
    >>> clf = NearestLabelClassifier().fit(X, y)
    >>> clf.predict([[0.7, 0.2], [0.2, 0.9]])
    array(['cat', 'dog'], dtype='<U3')
    >>> clf.method_, clf.cv_scores_["centroid"]
    ('centroid', 1.0)

    Zero-shot, with any text-to-vector transformer as ``embedder``:

    >>> from sklearn.preprocessing import FunctionTransformer
    >>> vectors = {"cat": [1.0, 0.0], "dog": [0.0, 1.0]}
    >>> embed = FunctionTransformer(lambda texts: [vectors[t] for t in texts])
    >>> zero_shot = NearestLabelClassifier(embedder=embed, labels=["cat", "dog"])
    >>> zero_shot.fit(X).predict([[0.2, 0.9]])
    array(['dog'], dtype='<U3')
    """

    _parameter_constraints: dict = {
        "method": [StrOptions({"auto", *HEADS})],
        "n_neighbors": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "C": [Interval(Real, 0, None, closed="neither")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "labels": ["array-like", None],
        "label_descriptions": [dict, list, None],
        "template": [str],
        "prior_weight": [Interval(Real, 0, None, closed="left")],
        "hub_correction": [Interval(Real, 0, 1, closed="both")],
        "target_precision": [Interval(Real, 0, 1, closed="neither"), None],
        "abstain_threshold": [Interval(Real, 0, 1, closed="both"), None],
        "abstain_label": "no_validation",
    }

    def __init__(
        self,
        *,
        method="auto",
        n_neighbors="auto",
        C=10.0,
        cv=3,
        temperature="auto",
        embedder=None,
        labels=None,
        label_descriptions=None,
        template="{label}",
        prior_weight=2.0,
        hub_correction=0.5,
        target_precision=None,
        abstain_threshold=None,
        abstain_label=-1,
    ):
        self.method = method
        self.n_neighbors = n_neighbors
        self.C = C
        self.cv = cv
        self.temperature = temperature
        self.embedder = embedder
        self.labels = labels
        self.label_descriptions = label_descriptions
        self.template = template
        self.prior_weight = prior_weight
        self.hub_correction = hub_correction
        self.target_precision = target_precision
        self.abstain_threshold = abstain_threshold
        self.abstain_label = abstain_label

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, groups=None):
        """Choose and fit the head, the temperature and the abstain threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or None
            Embeddings. Zero-shot (``labels`` and no ``y``) they are the inputs
            the hub correction and temperature are measured on, and may be None.
        y : array-like of shape (n_samples,), default=None
            Class of each row. Optional when ``labels`` or ``label_descriptions``
            are given.
        groups : array-like of shape (n_samples,), default=None
            Group of each row (e.g. the document a chunk comes from): rows of one
            group are never split between the training and held-out parts of the
            cross-validation, so near-copies do not make a head look better than
            it is.

        Returns
        -------
        self : NearestLabelClassifier
            The fitted classifier.
        """
        if self.target_precision is not None and self.abstain_threshold is not None:
            raise ValueError(
                f"NearestLabelClassifier got both abstain_threshold="
                f"{self.abstain_threshold} and target_precision="
                f"{self.target_precision}; set one of them (target_precision "
                "fits the threshold on held-out folds)."
            )
        names = self._label_names()
        if y is None and names is not None:
            X = None if X is None else check_embeddings(self, X, reset=True)
            self.classes_ = np.unique(np.asarray(names))
            y_idx = np.empty(0, dtype=np.intp)
        else:
            X, y = check_embeddings(self, X, y=y, reset=True)
            X = np.ascontiguousarray(X, dtype=np.float32)
            with warnings.catch_warnings():  # one example per class is few-shot
                warnings.filterwarnings("ignore", _MANY_CLASSES, UserWarning)
                check_classification_targets(y)
            if names is None:
                self.classes_, y_idx = np.unique(y, return_inverse=True)
            else:
                self.classes_ = np.unique(np.asarray(names))
                y_idx = self._index_of(y, what="y")
            y_idx = y_idx.astype(np.intp, copy=False)

        self.label_embeddings_ = None
        if names is not None:
            self.label_embeddings_ = self._embed_labels()
            if X is None:
                self.n_features_in_ = self.label_embeddings_.shape[1]
            elif self.label_embeddings_.shape[1] != X.shape[1]:
                raise ValueError(
                    f"The embedder returned label embeddings of width "
                    f"{self.label_embeddings_.shape[1]}, but X has {X.shape[1]} "
                    "features. Use the same embedding model for the label texts "
                    "and for X."
                )
        n_classes = self.classes_.shape[0]
        self.class_counts_ = np.bincount(y_idx, minlength=n_classes)
        self.label_bias_ = None
        self.linear_ = None
        self.cv_scores_: dict[str, float] = {}
        if y_idx.size == 0:
            return self._fit_zero_shot(X)
        if self.target_precision is None:
            self.abstain_threshold_ = self.abstain_threshold
        else:
            self.abstain_threshold_ = None

        # One BLAS thread: lbfgs's many small products ran 6-10x faster so on
        # the shared 2-core machine (Banking77 train: 2.5 s against 16-25 s with
        # two threads; benchmarks/bench_classify.py measures both).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit_with_examples(X, y_idx, groups)

    def _fit_with_examples(self, X: np.ndarray, y_idx: np.ndarray, groups: Any):
        Xn = l2_normalize(X)
        self._fit_examples(Xn, y_idx)
        heads = HEADS if self.method == "auto" else (self.method,)
        folds = self._folds(y_idx, groups)
        need_cv = (
            len(heads) > 1
            or self.temperature == "auto"
            or self.target_precision is not None
        )
        oof: dict[str, np.ndarray] = {}
        init = None  # the linear head's starting point: its folds' mean weights
        self.n_neighbors_ = self._knn_candidates()[0]
        if need_cv and folds is not None:
            held = folds >= 0
            for head in heads:
                scores, extra = self._out_of_fold(head, Xn, y_idx, folds)
                if head == "knn":
                    self.n_neighbors_ = extra
                elif head == "linear":
                    init = extra
                oof[head] = scores[held]
                correct = oof[head].argmax(axis=1) == y_idx[held]
                self.cv_scores_[head] = float(np.mean(correct))
            best = max(self.cv_scores_.values())
            self.method_ = next(h for h in heads if self.cv_scores_[h] == best)
        else:
            self.method_ = "centroid" if self.method == "auto" else self.method
        if self.method_ == "linear":
            self.linear_, self._coef, self._intercept = self._fit_linear(
                Xn, y_idx, init
            )

        logits = oof.get(self.method_)
        if self.temperature != "auto":
            self.temperature_ = float(self.temperature)
        elif logits is None:
            self.temperature_ = DEFAULT_TEMPERATURE
        else:
            self.temperature_ = _fit_temperature(logits, y_idx[held])
        if self.target_precision is not None:
            if logits is None:
                raise ValueError(
                    "target_precision needs held-out predictions, but there are "
                    f"too few examples to cross-validate ({y_idx.size} rows, "
                    f"cv={self.cv}); give more examples or set abstain_threshold."
                )
            self.abstain_threshold_ = self._threshold_for_precision(logits, y_idx[held])
        return self

    def _fit_zero_shot(self, X: np.ndarray | None) -> NearestLabelClassifier:
        """Label embeddings only: hub correction and temperature from the inputs."""
        if self.target_precision is not None:
            raise ValueError(
                "target_precision needs labelled examples to measure precision on; "
                "zero-shot (no y) there are none. Set abstain_threshold instead, "
                "or fit on labelled examples."
            )
        self.method_ = "zero-shot"
        self.n_neighbors_ = self._knn_candidates()[0]
        self.abstain_threshold_ = self.abstain_threshold
        L = self.label_embeddings_
        assert L is not None
        self.centroids_ = L
        self._fit_examples(np.zeros((0, L.shape[1]), np.float32), np.empty(0, np.intp))
        bias = np.zeros(L.shape[0], dtype=np.float64)
        reference = None
        if X is not None and X.shape[0] > 0:
            step = max(1, -(-X.shape[0] // _MAX_REFERENCE_ROWS))
            reference = similarity(l2_normalize(X[::step]), L).astype(np.float64)
        if reference is not None and self.hub_correction > 0 and L.shape[0] > 1:
            bias = self.hub_correction * _balancing_bias(
                reference, _spread_temperature(reference)
            )
        self.label_bias_ = bias
        if self.temperature != "auto":
            self.temperature_ = float(self.temperature)
        elif reference is None or L.shape[0] < 2:
            self.temperature_ = DEFAULT_TEMPERATURE
        else:
            self.temperature_ = _spread_temperature(reference + bias)
        return self

    def _fit_examples(self, Xn: np.ndarray, y_idx: np.ndarray) -> None:
        """Keep the examples sorted by class, and the class centroids."""
        order = np.argsort(y_idx, kind="stable")
        self._order = order  # sorted position -> the user's row
        self._examples = np.ascontiguousarray(Xn[order])
        self._bounds = np.concatenate([[0], np.cumsum(self.class_counts_)])
        self._y_sorted = y_idx[order]
        if y_idx.size:
            self.centroids_, _ = self._centroids(Xn, y_idx)

    # --------------------------------------------------------- the heads
    def _prior(self) -> tuple[np.ndarray | None, float]:
        return self.label_embeddings_, float(self.prior_weight)

    def _centroids(self, Xn: np.ndarray, y_idx: np.ndarray):
        """Unit centroids of the classes, and which classes have any evidence."""
        n_classes = self.classes_.shape[0]
        counts = np.bincount(y_idx, minlength=n_classes)
        sums = group_sum(Xn, y_idx, n_classes)
        L, w = self._prior()
        known = counts > 0
        if L is not None:
            weight = np.where(known, w, 1.0)
            sums += weight[:, None] * L.astype(np.float64)
            known = known | (weight > 0)
        return l2_normalize(sums), known

    def _knn_scores(
        self, Q: np.ndarray, E: np.ndarray, y_E: np.ndarray, n_neighbors: int
    ) -> np.ndarray:
        """Similarity-weighted vote of the ``n_neighbors`` examples nearest to each
        row (``E``, of classes ``y_E``), blended with the label similarity."""
        found = top_k(Q, E, max(1, min(n_neighbors, E.shape[0])), n_jobs=1)
        return self._vote(Q, found.indices, found.scores, y_E, n_neighbors)

    def _vote(self, Q, indices, scores, y_E, n_neighbors: int) -> np.ndarray:
        """Per class: the sum of its neighbours' similarities over ``n_neighbors``
        (plus ``prior_weight`` times the label similarity, as one more voter)."""
        n_q, n_classes = Q.shape[0], self.classes_.shape[0]
        indices, scores = indices[:, :n_neighbors], scores[:, :n_neighbors]
        hit = indices >= 0
        rows = np.nonzero(hit)[0]
        total = np.zeros((n_q, n_classes), dtype=np.float64)
        np.add.at(total, (rows, y_E[indices[hit]]), scores[hit].astype(np.float64))
        L, w = self._prior()
        if L is None:
            return total / n_neighbors
        has_examples = np.bincount(y_E, minlength=n_classes) > 0
        weight = np.where(has_examples, w, 1.0)
        total += weight * similarity(Q, L).astype(np.float64)
        return total / (n_neighbors + weight)

    def _fit_linear(self, Xn: np.ndarray, y_idx: np.ndarray, init=None):
        """Logistic regression on the rows (and the label embeddings, weighted
        ``prior_weight``); returns it and its float32 weights and intercepts in
        the columns of ``classes_`` (absent classes: weight 0, intercept -inf)."""
        n_classes, d = self.classes_.shape[0], Xn.shape[1]
        L, w = self._prior()
        X_fit, y_fit = Xn, y_idx
        sample_weight = None
        if L is not None and w > 0:
            X_fit = np.vstack([Xn, L])
            y_fit = np.concatenate([y_idx, np.arange(n_classes)])
            sample_weight = np.concatenate([np.ones(y_idx.size), np.full(n_classes, w)])
        present = np.unique(y_fit)
        coef = np.zeros((n_classes, d), dtype=np.float32)
        intercept = np.full(n_classes, -np.inf)
        if present.size < 2:  # one class: it always wins
            intercept[present] = 0.0
            return None, coef, intercept
        linear = LogisticRegression(C=self.C, max_iter=1000, warm_start=True)
        if init is not None and present.size > 2:
            # Start from the held-out fold's solution: the final fit on Banking77
            # took 35 lbfgs iterations instead of 58. (Starting the folds from
            # scaled centroids saved none: 53 against 49.)
            linear.coef_ = np.ascontiguousarray(init[0][present])
            linear.intercept_ = np.ascontiguousarray(init[1][present])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", _MANY_CLASSES, UserWarning)
            linear.fit(X_fit, y_fit, sample_weight=sample_weight)
        weights = np.asarray(linear.coef_, dtype=np.float64)
        bias = np.asarray(linear.intercept_, dtype=np.float64)
        if present.size == 2:  # binary: one weight vector for the second class
            weights = np.vstack([-weights / 2, weights / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        coef[present] = weights
        intercept[present] = bias
        return linear, coef, intercept

    def _head_scores(self, head: str, Q: np.ndarray, state: Any) -> np.ndarray:
        """Class scores (float64) of unit rows ``Q`` by a fitted head's state."""
        if head == "centroid":
            centroids, known = state
            S = similarity(Q, centroids).astype(np.float64)
            S[:, ~known] = -np.inf
            return S
        if head == "knn":
            E, y_E, n_neighbors = state
            return self._knn_scores(Q, E, y_E, n_neighbors)
        coef, intercept = state
        return similarity(Q, coef).astype(np.float64) + intercept

    def _head_state(self, head: str, Xn: np.ndarray, y_idx: np.ndarray, init=None):
        if head == "centroid":
            return self._centroids(Xn, y_idx)
        if head == "knn":
            return np.ascontiguousarray(Xn), y_idx, self._knn_candidates()[0]
        _, coef, intercept = self._fit_linear(Xn, y_idx, init)
        return coef, intercept

    # ---------------------------------------------------- cross-validation
    def _folds(self, y_idx: np.ndarray, groups: Any) -> np.ndarray | None:
        """Fold of each row, or None when there is too little to hold out.

        Each class's rows are cut, in the order given, into ``cv`` contiguous
        blocks (as scikit-learn's ``StratifiedKFold`` without shuffling does), so
        neighbouring rows of one source, which are often near-copies, tend to
        share a fold. Folds are then held out in turn only until
        ``_MIN_HELD_OUT`` rows have been; the rows of the folds left (fold
        ``-1``) always train. With ``groups``, each group goes whole to a fold
        (in a fixed shuffled order) and every fold is held out: the evidence
        then grows with the number of groups, not rows.
        """
        n = y_idx.size
        if groups is not None:
            rng = np.random.default_rng(0)
            groups = np.asarray(groups)
            if groups.shape != (n,):
                raise ValueError(
                    f"groups must hold one group per row of X: got shape "
                    f"{groups.shape} for {n} rows."
                )
            _, group_idx = np.unique(groups, return_inverse=True)
            n_groups = int(group_idx.max()) + 1
            if n_groups < 2:
                raise ValueError(
                    "groups holds a single group, so no rows can be held out to "
                    "cross-validate; pass at least two groups (or groups=None)."
                )
            k = min(self.cv, n_groups)
            fold_of_group = np.empty(n_groups, dtype=np.intp)
            fold_of_group[rng.permutation(n_groups)] = np.arange(n_groups) % k
            return fold_of_group[group_idx.ravel()]
        if n < 2:
            return None
        k = min(self.cv, n)
        folds = np.empty(n, dtype=np.intp)
        order = np.argsort(y_idx, kind="stable")  # by class, in the user's order
        counts = np.bincount(y_idx)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n) - np.repeat(starts, counts)
        size = np.repeat(counts, counts)
        offset = np.repeat(np.arange(counts.size), counts)  # small classes rotate
        block = np.where(size >= k, rank * k // np.maximum(size, 1), rank)
        folds[order] = (block + offset) % k
        return _hold_out_enough(folds)

    def _knn_candidates(self) -> tuple[int, ...]:
        if self.n_neighbors == "auto":
            return _KNN_CANDIDATES
        return (int(self.n_neighbors),)

    def _out_of_fold(self, head: str, Xn: np.ndarray, y_idx: np.ndarray, folds):
        """Held-out class scores of every row by ``head``, and what the final fit
        takes from the folds: the linear head's mean fold weights (a starting
        point), the number of neighbours that did best."""
        n, n_classes = y_idx.size, self.classes_.shape[0]
        if head == "knn":
            candidates = self._knn_candidates()
            by_k = {k: np.full((n, n_classes), -np.inf) for k in candidates}
            for f in np.unique(folds[folds >= 0]):
                test, train = folds == f, folds != f
                if not train.any():
                    continue
                E, y_E = np.ascontiguousarray(Xn[train]), y_idx[train]
                found = top_k(Xn[test], E, min(max(candidates), E.shape[0]), n_jobs=1)
                for k in candidates:
                    by_k[k][test] = self._vote(
                        Xn[test], found.indices, found.scores, y_E, k
                    )
            accuracy = {k: np.mean(v.argmax(axis=1) == y_idx) for k, v in by_k.items()}
            best = next(k for k in candidates if accuracy[k] == max(accuracy.values()))
            return by_k[best], best
        scores = np.full((n, n_classes), -np.inf)
        coefs = []
        for f in np.unique(folds[folds >= 0]):
            test, train = folds == f, folds != f
            if not train.any():
                continue
            state = self._head_state(head, Xn[train], y_idx[train])
            scores[test] = self._head_scores(head, Xn[test], state)
            if head == "linear" and np.isfinite(state[1]).all():
                coefs.append(state)
        if head != "linear" or len(coefs) != np.unique(folds[folds >= 0]).size:
            return scores, None
        coef = np.mean([c.astype(np.float64) for c, _ in coefs], axis=0)
        return scores, (coef, np.mean([b for _, b in coefs], axis=0))

    def _threshold_for_precision(self, logits: np.ndarray, y_idx: np.ndarray):
        """Lowest held-out top probability at which precision reaches the target."""
        proba = softmax(logits, self.temperature_)
        confidence = proba.max(axis=1)
        order = np.argsort(-confidence, kind="stable")
        correct = (proba.argmax(axis=1) == y_idx)[order]
        precision = np.cumsum(correct) / np.arange(1, correct.size + 1)
        reached = np.flatnonzero(precision >= self.target_precision)
        if reached.size == 0:
            warnings.warn(
                f"No probability threshold reaches target_precision="
                f"{self.target_precision} on the held-out folds (best precision "
                f"{precision.max():.3f}); predict will abstain on every row. Lower "
                "target_precision or give more examples.",
                UserWarning,
                stacklevel=3,
            )
            return float(np.nextafter(1.0, 2.0))  # above every probability
        return float(confidence[order][reached[-1]])

    # ------------------------------------------------------------- labels
    def _label_names(self) -> list[Any] | None:
        """The labels given for zero-shot use, or None."""
        if self.labels is not None:
            names = list(np.asarray(self.labels, dtype=object).ravel())
            if not names:
                raise ValueError("labels is empty; pass at least one class label.")
            return names
        if isinstance(self.label_descriptions, Mapping):
            return list(self.label_descriptions)
        if self.label_descriptions is not None:
            raise ValueError(
                "label_descriptions is a list, so it needs labels= to say which "
                "label each description belongs to (or pass a dict {label: text})."
            )
        return None

    def _index_of(self, values: Any, *, what: str) -> np.ndarray:
        """Positions of ``values`` in ``classes_``; unknown values raise."""
        values = np.asarray(values, dtype=self.classes_.dtype)
        idx = np.searchsorted(self.classes_, values)
        idx = np.minimum(idx, self.classes_.shape[0] - 1)
        unknown = self.classes_[idx] != values
        if unknown.any():
            missing = np.unique(values[unknown])[:5].tolist()
            raise ValueError(
                f"{what} holds labels that are not in labels: {missing}. Add them "
                f"to labels= (known: {self.classes_[:5].tolist()}"
                f"{'...' if self.classes_.shape[0] > 5 else ''})."
            )
        return idx

    def _label_texts(self) -> list[str]:
        if "{label}" not in self.template:
            raise ValueError(
                f"template must contain '{{label}}', got {self.template!r}. For "
                "example: 'A question about {label}'."
            )
        descriptions = self.label_descriptions
        if descriptions is not None and not isinstance(descriptions, Mapping):
            if len(descriptions) != len(self.labels):
                raise ValueError(
                    f"label_descriptions has {len(descriptions)} texts but labels "
                    f"has {len(self.labels)} entries; give one description per "
                    "label, or a dict {label: text}."
                )
            descriptions = dict(
                zip(self._label_names() or [], descriptions, strict=True)
            )
        texts = []
        if descriptions is not None:
            self._index_of(list(descriptions), what="label_descriptions")
            descriptions = {
                np.asarray(k, dtype=self.classes_.dtype).item(): v
                for k, v in descriptions.items()
            }
        for label in self.classes_:
            key = label.item() if isinstance(label, np.generic) else label
            text = str(key) if descriptions is None else descriptions.get(key, key)
            texts.append(self.template.format(label=text))
        return texts

    def _embed_labels(self) -> np.ndarray:
        if self.embedder is None:
            raise ValueError(
                "NearestLabelClassifier got labels or label_descriptions but no "
                "embedder to embed them. Pass embedder= (the transformer that "
                "embedded X, e.g. LocalEmbedder()), or drop labels= and fit on "
                "labelled examples."
            )
        texts = self._label_texts()
        try:
            check_is_fitted(self.embedder)
            embedder = self.embedder
        except NotFittedError:
            embedder = clone(self.embedder).fit(texts)
        Z = np.asarray(embedder.transform(texts), dtype=np.float32)
        if Z.ndim != 2 or Z.shape[0] != len(texts) or not np.isfinite(Z).all():
            raise ValueError(
                f"The embedder must map {len(texts)} label texts to a finite "
                f"(n_texts, n_features) array; got shape {Z.shape}."
            )
        return l2_normalize(Z)

    # ------------------------------------------------------------ scoring
    def _scores(self, X) -> np.ndarray:
        """Class scores (float64) of the rows of ``X``: the logits before the
        temperature. Each row's scores depend on that row alone."""
        check_is_fitted(self)
        Q = l2_normalize(check_embeddings(self, X, reset=False))
        if self.method_ == "zero-shot":
            S = similarity(Q, self.label_embeddings_).astype(np.float64)
            return S + self.label_bias_
        if self.method_ == "centroid":
            return self._head_scores("centroid", Q, self._centroids_state())
        if self.method_ == "knn":
            with threadpool_limits(limits=1, user_api="blas"):
                return self._knn_scores(
                    Q, self._examples, self._y_sorted, self.n_neighbors_
                )
        return self._head_scores("linear", Q, (self._coef, self._intercept))

    def _centroids_state(self) -> tuple[np.ndarray, np.ndarray]:
        known = self.class_counts_ > 0
        if self.label_embeddings_ is not None:
            known = np.ones_like(known)
        return self.centroids_, known

    def decision_function(self, X):
        """Score of each row for each class (the logits of :meth:`predict_proba`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or (n_samples,)
            Class scores, columns in the order of ``classes_``: similarities
            (centroid, knn, zero-shot with ``label_bias_``) or the linear head's
            logits. With two classes, the score of ``classes_[1]`` minus that of
            ``classes_[0]``.
        """
        S = self._scores(X)
        if S.shape[1] == 2:
            return S[:, 1] - S[:, 0]
        return S

    def predict_proba(self, X):
        """Class probabilities: ``softmax(decision scores / temperature_)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        return softmax(self._scores(X), self.temperature_)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        logits = self._scores(X) / self.temperature_
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def predict(self, X):
        """The best class of each row (or ``abstain_label``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples,)
            Members of ``classes_``; ``abstain_label`` where ``abstain_threshold_``
            is set and the highest probability is below it.
        """
        S = self._scores(X)
        pred = self.classes_[S.argmax(axis=1)]
        if self.abstain_threshold_ is None:
            return pred
        abstain = softmax(S, self.temperature_).max(axis=1) < self.abstain_threshold_
        label = np.asarray(self.abstain_label)
        textual = pred.dtype.kind in "US", label.dtype.kind in "US"
        numeric = pred.dtype.kind in "biuf", label.dtype.kind in "biuf"
        if all(textual) or all(numeric):  # e.g. str classes with a str label
            dtype = np.result_type(pred, label)
        else:  # no common type: keep each value as it is
            dtype = np.dtype(object)
        out = pred.astype(dtype)
        out[abstain] = self.abstain_label
        return out

    def explain(self, X, n_examples=3):
        """The evidence behind each prediction, as a table.

        With examples: the ``n_examples`` training rows of the predicted class most
        similar to the input (``kind="example"``, ``example`` is the row's position
        in the ``X`` given to :meth:`fit`) and, when labels are given, the
        similarity to the predicted label (``kind="label"``). Zero-shot: the
        ``n_examples`` best labels with their similarity and hub-corrected score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        n_examples : int, default=3
            Examples (or labels, zero-shot) listed per row.

        Returns
        -------
        pandas.DataFrame
            Columns ``row`` (position in ``X``), ``prediction``, ``probability``,
            ``kind``, ``label``, ``example`` (-1 for label rows), ``similarity``
            and ``score`` (the class score used, see :meth:`decision_function`).
        """
        pd = import_optional(
            "pandas", extra="pandas", purpose="NearestLabelClassifier.explain"
        )
        if not isinstance(n_examples, Integral) or n_examples < 1:
            raise ValueError(
                f"n_examples must be a positive int, got {n_examples!r}; for "
                "example explain(X, n_examples=3)."
            )
        S = self._scores(X)  # checks the fit and X before anything is read
        Q = l2_normalize(check_embeddings(self, X, reset=False))
        proba = softmax(S, self.temperature_)
        best = S.argmax(axis=1)
        parts = []
        if self.method_ == "zero-shot":
            k = min(n_examples, S.shape[1])
            order = np.argsort(-S, axis=1, kind="stable")[:, :k]
            raw = similarity(Q, self.label_embeddings_)
            rows = np.repeat(np.arange(S.shape[0]), k)
            cls = order.ravel()
            parts.append(
                dict(
                    row=rows,
                    kind="label",
                    label=self.classes_[cls],
                    example=np.full(rows.size, -1),
                    similarity=raw[rows, cls],
                    score=S[rows, cls],
                )
            )
        else:
            for c in np.unique(best):
                queries = np.flatnonzero(best == c)
                lo, hi = self._bounds[c], self._bounds[c + 1]
                if hi > lo:
                    found = top_k(
                        Q[queries], self._examples[lo:hi], n_examples, n_jobs=1
                    )
                    hit = found.indices >= 0
                    rows = np.repeat(queries, hit.sum(axis=1))
                    parts.append(
                        dict(
                            row=rows,
                            kind="example",
                            label=self.classes_[np.full(rows.size, c)],
                            example=self._order[lo + found.indices[hit]],
                            similarity=found.scores[hit],
                            score=S[rows, c],
                        )
                    )
                if self.label_embeddings_ is not None:
                    sim = similarity(Q[queries], self.label_embeddings_[c : c + 1])
                    parts.append(
                        dict(
                            row=queries,
                            kind="label",
                            label=self.classes_[np.full(queries.size, c)],
                            example=np.full(queries.size, -1),
                            similarity=sim[:, 0],
                            score=S[queries, c],
                        )
                    )
        columns = ["row", "kind", "label", "example", "similarity", "score"]
        frame = pd.concat(
            [pd.DataFrame(part, columns=columns) for part in parts]
            or [pd.DataFrame(columns=columns)],
            ignore_index=True,
        )
        rows = frame["row"].to_numpy(dtype=np.intp)
        frame.insert(1, "prediction", self.classes_[best[rows]])
        frame.insert(2, "probability", proba[rows, best[rows]])
        frame["example"] = frame["example"].astype(np.int64)
        frame["similarity"] = frame["similarity"].astype(np.float32)
        kind_order = frame["kind"].map({"label": 1, "example": 0})
        frame = frame.assign(_k=kind_order.to_numpy())
        frame = frame.sort_values(
            ["row", "_k", "similarity"], ascending=[True, True, False], kind="stable"
        )
        return frame.drop(columns="_k").reset_index(drop=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


def _hold_out_enough(folds: np.ndarray) -> np.ndarray:
    """Keep folds 0, 1, ... until ``_MIN_HELD_OUT`` rows are held out; mark the
    rest -1 (training rows only). A large training set costs one fold, not all."""
    sizes = np.bincount(folds)
    enough = np.flatnonzero(np.cumsum(sizes) >= _MIN_HELD_OUT)
    if enough.size:
        folds = np.where(folds > enough[0], -1, folds)
    return folds


def _fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float:
    """The temperature minimising the log-loss of held-out class scores."""
    own = logits[np.arange(y_idx.size), y_idx]
    valid = np.isfinite(own)
    S = logits[valid]
    if S.shape[0] == 0 or S.shape[1] < 2:
        return DEFAULT_TEMPERATURE
    own = own[valid]
    top = S.max(axis=1, keepdims=True)
    S, own = S - top, own - top[:, 0]  # finite: no overflow at small temperatures

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(logsumexp(S / t, axis=1) - own / t))

    best = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(100.0)), method="bounded")
    return float(np.exp(best.x))


def _spread_temperature(scores: np.ndarray) -> float:
    """Zero-shot temperature: ``ZERO_SHOT_SPREAD`` times the mean per-row standard
    deviation of the label scores (the scale on which labels differ)."""
    spread = float(np.mean(np.std(scores, axis=1)))
    return ZERO_SHOT_SPREAD * spread if spread > 0 else DEFAULT_TEMPERATURE


def _balancing_bias(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Per-label shifts that make every label equally likely on average over the
    rows of ``scores`` (a label similar to everything gets a negative shift)."""
    bias = np.zeros(scores.shape[1], dtype=np.float64)
    for _ in range(_BALANCE_ITERATIONS):
        share = softmax(scores + bias, temperature).mean(axis=0) * scores.shape[1]
        bias -= temperature * np.log(np.maximum(share, 1e-300))
    return bias - bias.mean()
