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
set ``abstain_threshold_`` from a target precision; zero-shot it is read off the
inputs' self-consistency. The pieces live beside this module: the heads in
``_heads``, folds and temperatures in ``_calibration``, zero-shot in
``_zero_shot``. All similarity math goes
through :mod:`embedtasks._kernel`, so a row gets the same scores (bit for bit)
whatever batch it comes in.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from threadpoolctl import threadpool_limits

from embedtasks._kernel import l2_normalize, similarity, softmax
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
from embedtasks.classify._calibration import (
    DEFAULT_TEMPERATURE,
    fit_temperature,
    lowest_supported_similarity,
    make_folds,
    threshold_for_precision,
)
from embedtasks.classify._explain import (
    Examples,
    evidence_table,
    example_evidence,
    label_evidence,
)
from embedtasks.classify._heads import (
    HEADS,
    MANY_CLASSES,
    CentroidHead,
    KnnHead,
    LinearHead,
    Prior,
    make_head,
)
from embedtasks.classify._labels import (
    embed_labels,
    index_of,
    label_names,
    label_texts,
)
from embedtasks.classify._zero_shot import fit_zero_shot, too_few_rows

__all__ = ["NearestLabelClassifier"]

#: Neighbour counts the ``"knn"`` head tries when ``n_neighbors="auto"``.
_KNN_CANDIDATES = (3, 10, 30)
#: At most this many inputs set the zero-shot hub correction and temperature.
_MAX_REFERENCE_ROWS = 10_000


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
        folds; when every held-out prediction is right (where the log-loss would
        fall toward certainty) the held-out mean top probability is held to the
        rule of succession, ``(n + 1) / (n + 2)``: nine out of nine, 0.91.
        Zero-shot, the temperature at which the mean top probability on the
        inputs given to :meth:`fit` equals the
        accuracy their self-consistency implies (``expected_accuracy_``: how
        often neighbouring inputs get the same label, against label sets rotated
        at random). When nothing supports a probability (too few inputs or
        examples), ``calibrated_`` is False and :meth:`fit` warns.
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
        probability at which the held-out predictions reach this precision, and
        rows unlike any held-out row that was predicted right are rejected
        (``abstain_similarity_``).
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
    calibrated_ : bool
        Whether ``temperature_`` was fitted on evidence (held-out folds, or
        zero-shot enough inputs): then a probability of 0.8 is meant to be
        right about 80% of the time. False for a fixed ``temperature`` and
        where :meth:`fit` warned that nothing supports one.
    expected_accuracy_ : float or None
        The accuracy the probabilities are fitted to: the chosen head's
        cross-validated accuracy, or zero-shot the self-consistency estimate;
        None when ``calibrated_`` is False.
    n_neighbors_ : int
        Neighbours that vote in the ``"knn"`` head.
    abstain_threshold_ : float or None
        The probability below which :meth:`predict` abstains.
    abstain_similarity_ : float or None
        With ``target_precision``: the lowest similarity to the predicted
        class's centroid at which a held-out prediction was right; a row less
        similar than that is out of domain and :meth:`predict` abstains on it.
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
    >>> import warnings
    >>> with warnings.catch_warnings():  # 6 rows: too few to calibrate, it says so
    ...     warnings.simplefilter("ignore", UserWarning)
    ...     zero_shot = zero_shot.fit(X)
    >>> zero_shot.predict([[0.2, 0.9]]), zero_shot.calibrated_
    (array(['dog'], dtype='<U3'), False)
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
                warnings.filterwarnings("ignore", MANY_CLASSES, UserWarning)
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
        self.expected_accuracy_ = None
        self.abstain_similarity_ = None
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

    def _new_head(self, name: str) -> CentroidHead | KnnHead | LinearHead:
        prior = Prior(
            self.classes_.shape[0], self.label_embeddings_, float(self.prior_weight)
        )
        candidates = (
            _KNN_CANDIDATES if self.n_neighbors == "auto" else (int(self.n_neighbors),)
        )
        return make_head(name, prior, C=self.C, candidates=candidates)

    def _neighbour_count(self, head: Any) -> int:
        """Neighbours the knn head votes with (its first candidate if unused)."""
        if isinstance(head, KnnHead):
            return head.n_neighbors
        return _KNN_CANDIDATES[0] if self.n_neighbors == "auto" else self.n_neighbors

    def _fit_with_examples(self, X: np.ndarray, y_idx: np.ndarray, groups: Any):
        Xn = l2_normalize(X)
        self._fit_examples(Xn, y_idx)
        names = HEADS if self.method == "auto" else (self.method,)
        folds = make_folds(y_idx, self.cv, groups)
        need_cv = (
            len(names) > 1
            or self.temperature == "auto"
            or self.target_precision is not None
        )
        oof: dict[str, np.ndarray] = {}
        start: dict[str, Any] = {}
        held = np.zeros(y_idx.size, dtype=bool)
        if need_cv and folds is not None:
            held = folds >= 0
            for name in names:
                scores, start[name] = self._new_head(name).out_of_fold(Xn, y_idx, folds)
                oof[name] = scores[held]
                correct = oof[name].argmax(axis=1) == y_idx[held]
                self.cv_scores_[name] = float(np.mean(correct))
            best = max(self.cv_scores_.values())
            self.method_ = next(h for h in names if self.cv_scores_[h] == best)
        else:
            self.method_ = "centroid" if self.method == "auto" else self.method
        head = self._new_head(self.method_)
        if self.method_ == "knn":  # sorted by class, as explain reads them
            head.fit(self._examples, self._y_sorted, start.get("knn"))
        else:
            head.fit(Xn, y_idx, start.get(self.method_))
        self._head = head
        self.n_neighbors_ = self._neighbour_count(head)
        self.linear_ = head.model if isinstance(head, LinearHead) else None

        logits = oof.get(self.method_)
        y_held = y_idx[held]
        fitted = None if logits is None else fit_temperature(logits, y_held)
        self.calibrated_ = fitted is not None and self.temperature == "auto"
        if self.temperature != "auto":
            self.temperature_ = float(self.temperature)
        elif self.classes_.shape[0] < 2:  # one class: probability 1, and right
            self.temperature_, self.calibrated_ = DEFAULT_TEMPERATURE, True
        elif fitted is not None:
            self.temperature_ = fitted
            self.expected_accuracy_ = self.cv_scores_[self.method_]
        else:
            self.temperature_ = self._temperature_without_evidence(y_idx)
        if self.target_precision is not None:
            if fitted is None or logits is None:
                raise ValueError(
                    "target_precision needs held-out predictions, but there are "
                    f"too few examples to cross-validate ({y_idx.size} rows, "
                    f"{np.count_nonzero(self.class_counts_ > 1)} classes with two "
                    f"or more, cv={self.cv}); give more examples or set "
                    "abstain_threshold."
                )
            proba = softmax(logits, self.temperature_)
            self.abstain_threshold_ = threshold_for_precision(
                proba, y_held, self.target_precision
            )
            self.abstain_similarity_ = self._lowest_supported_similarity(
                Xn[held], y_held, logits, oof.get("centroid")
            )
        return self

    def _temperature_without_evidence(self, y_idx: np.ndarray) -> float:
        """No held-out row could be scored (e.g. one example per class): the
        default temperature, and a warning that it is not calibrated."""
        warnings.warn(
            f"NearestLabelClassifier: predict_proba is not calibrated "
            f"(calibrated_=False): no held-out prediction could be made from "
            f"{y_idx.size} examples with cv={self.cv} (a class needs two "
            "examples, or label embeddings). Give more examples per class, or "
            "labels= with an embedder.",
            UserWarning,
            stacklevel=5,  # _fit_with_examples, fit, _fit_context, the caller
        )
        return DEFAULT_TEMPERATURE

    def _lowest_supported_similarity(self, X_held, y_held, logits, centroid_oof):
        """Abstain below the lowest similarity to the predicted class's centroid
        (from the held-out folds) at which a held-out prediction was right: a
        query unlike anything the folds got right is out of domain."""
        if centroid_oof is None:  # the same folds: only held-out rows are here
            folds = make_folds(y_held, self.cv, None)
            if folds is None:
                return None
            centroid_oof, _ = self._new_head("centroid").out_of_fold(
                X_held, y_held, folds
            )
        return lowest_supported_similarity(logits, y_held, centroid_oof)

    def _fit_zero_shot(self, X: np.ndarray | None) -> NearestLabelClassifier:
        """Label embeddings only: hub correction and temperature from the inputs."""
        if self.target_precision is not None:
            raise ValueError(
                "target_precision needs labelled examples to measure precision on; "
                "zero-shot (no y) there are none. Set abstain_threshold instead, "
                "or fit on labelled examples."
            )
        self.method_ = "zero-shot"
        self.n_neighbors_ = self._neighbour_count(None)
        self.abstain_threshold_ = self.abstain_threshold
        L = self.label_embeddings_
        assert L is not None
        self.centroids_ = L
        self._fit_examples(np.zeros((0, L.shape[1]), np.float32), np.empty(0, np.intp))
        found = fit_zero_shot(
            L,
            X,
            hub_correction=self.hub_correction,
            temperature=self.temperature,
            max_rows=_MAX_REFERENCE_ROWS,
        )
        self.label_bias_ = found.bias
        self.temperature_ = found.temperature
        self.calibrated_ = found.calibrated
        self.expected_accuracy_ = found.expected_accuracy
        if not found.calibrated and self.temperature == "auto" and L.shape[0] > 1:
            warnings.warn(too_few_rows(found.n_rows, L.shape[0]), stacklevel=4)
        return self

    def _fit_examples(self, Xn: np.ndarray, y_idx: np.ndarray) -> None:
        """Keep the examples sorted by class, and the class centroids."""
        order = np.argsort(y_idx, kind="stable")
        self._order = order  # sorted position -> the user's row
        self._examples = np.ascontiguousarray(Xn[order])
        self._bounds = np.concatenate([[0], np.cumsum(self.class_counts_)])
        self._y_sorted = y_idx[order]
        if y_idx.size:
            self.centroids_ = self._new_head("centroid").fit(Xn, y_idx).centroids

    # ------------------------------------------------------------- labels
    def _label_names(self) -> list[Any] | None:
        """The labels given for zero-shot use, or None."""
        return label_names(self.labels, self.label_descriptions)

    def _index_of(self, values: Any, *, what: str) -> np.ndarray:
        """Positions of ``values`` in ``classes_``; unknown values raise."""
        return index_of(self.classes_, values, what=what)

    def _embed_labels(self) -> np.ndarray:
        texts = label_texts(
            self.classes_, self.labels, self.label_descriptions, self.template
        )
        return embed_labels(self.embedder, texts)

    # ------------------------------------------------------------ scoring
    def _scores(self, X) -> np.ndarray:
        """Class scores (float64) of the rows of ``X``: the logits before the
        temperature. Each row's scores depend on that row alone."""
        check_is_fitted(self)
        Q = l2_normalize(check_embeddings(self, X, reset=False))
        if self.method_ == "zero-shot":
            S = similarity(Q, self.label_embeddings_).astype(np.float64)
            return S + self.label_bias_
        if self.method_ == "knn":
            with threadpool_limits(limits=1, user_api="blas"):
                return self._head.scores(Q)
        return self._head.scores(Q)

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
            is set and the highest probability is below it, or where the row is
            less similar to its class's centroid than ``abstain_similarity_``.
        """
        S = self._scores(X)
        best = S.argmax(axis=1)
        pred = self.classes_[best]
        if self.abstain_threshold_ is None:
            return pred
        abstain = softmax(S, self.temperature_).max(axis=1) < self.abstain_threshold_
        if self.abstain_similarity_ is not None:
            Q = l2_normalize(check_embeddings(self, X, reset=False))
            own = np.einsum("ij,ij->i", Q, self.centroids_[best], dtype=np.float64)
            abstain |= own < self.abstain_similarity_
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
        if self.method_ == "zero-shot":
            parts = label_evidence(
                Q, S, self.label_embeddings_, self.classes_, n_examples
            )
        else:
            parts = example_evidence(
                Q,
                S,
                Examples(self._examples, self._bounds, self._order),
                self.label_embeddings_,
                self.classes_,
                n_examples,
            )
        return evidence_table(
            pd, parts, S, softmax(S, self.temperature_), self.classes_
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
