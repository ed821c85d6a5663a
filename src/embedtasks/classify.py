"""Classify embeddings by their most similar label: few-shot, zero-shot or both.

:class:`NearestLabelClassifier` scores each class by a similarity between the query
and the class, then turns the scores into calibrated probabilities with
``softmax(similarity / temperature)``, the temperature fitted on the training data
(leave-one-out, so a training example never votes for itself).

A class is known from labelled examples (its normalised centroid, or its nearest
examples), from its name or description embedded by the same ``embedder`` that made
the inputs (zero-shot), or from both: the label embedding then counts as
``prior_weight`` extra examples of its class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.multiclass import check_classification_targets

from embedtasks._similarity import DEFAULT_MEMORY_BUDGET, l2_normalize
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

#: Temperature used when there is no labelled data to fit one on (zero-shot).
DEFAULT_TEMPERATURE = 0.05
#: At most this many training rows are used to fit the temperature.
_MAX_CALIBRATION_ROWS = 5000


class NearestLabelClassifier(ClassifierMixin, BaseEstimator):
    """Label each embedding with its most similar class, with calibrated probabilities.

    Inputs are embeddings (rows are normalised to unit length), so the classifier
    goes after any embedder in one :class:`~sklearn.pipeline.Pipeline`. Classes come
    from labelled examples (``fit(X, y)``, few-shot or full), from label names or
    descriptions embedded by ``embedder`` (zero-shot: ``fit(X)`` with no ``y``), or
    from both, where each label embedding acts as a prior worth ``prior_weight``
    examples of its class.

    Parameters
    ----------
    method : {"centroid", "knn"}, default="centroid"
        How a class is scored. ``"centroid"``: cosine similarity to the class's
        normalised mean direction (nearest centroid). ``"knn"``: mean similarity
        to the class's ``n_neighbors`` most similar training examples (per-class
        nearest-neighbour voting; better with many examples per class, as it
        follows classes that are not one blob).
    n_neighbors : int, default=3
        Examples averaged per class by ``method="knn"``; ignored otherwise.
    temperature : "auto" or float, default="auto"
        Softmax temperature of :meth:`predict_proba` (lower is sharper). ``"auto"``
        fits it by minimising the leave-one-out log-loss on the training data; with
        no labelled data it is ``DEFAULT_TEMPERATURE`` (0.05).
    embedder : transformer, default=None
        Maps a list of str to embeddings of the same model as ``X`` (for example
        :class:`~embedtasks.OpenAIEmbedder`). Used only to embed the label texts; a
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
    prior_weight : float, default=1.0
        How many examples a label embedding is worth when a class also has
        labelled examples. ``0`` ignores label embeddings for such classes.
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
    temperature_ : float
        The softmax temperature used by :meth:`predict_proba`.
    centroids_ : ndarray of shape (n_classes, n_features)
        Unit-norm prototype of each class (``method="centroid"`` only): mean
        direction of its examples plus ``prior_weight`` times its label embedding.
    label_embeddings_ : ndarray of shape (n_classes, n_features) or None
        Unit-norm embedding of each class's label text; None without labels.
    class_counts_ : ndarray of shape (n_classes,)
        Number of labelled examples of each class.

    See Also
    --------
    sklearn.neighbors.NearestCentroid : Euclidean nearest centroid, without
        probabilities or label embeddings.

    Examples
    --------
    >>> from embedtasks import NearestLabelClassifier
    >>> X = [[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]]
    >>> y = ["cat", "cat", "dog", "dog"]
    >>> clf = NearestLabelClassifier().fit(X, y)
    >>> clf.predict([[0.7, 0.2], [0.2, 0.9]])
    array(['cat', 'dog'], dtype='<U3')
    >>> clf.predict_proba([[0.7, 0.2]]).round(3)
    array([[1., 0.]])

    Zero-shot, with any text-to-vector transformer as ``embedder``:

    >>> from sklearn.preprocessing import FunctionTransformer
    >>> vectors = {"cat": [1.0, 0.0], "dog": [0.0, 1.0]}
    >>> embed = FunctionTransformer(lambda texts: [vectors[t] for t in texts])
    >>> zero_shot = NearestLabelClassifier(embedder=embed, labels=["cat", "dog"])
    >>> zero_shot.fit(X).predict([[0.2, 0.9]])
    array(['dog'], dtype='<U3')
    """

    _parameter_constraints: dict = {
        "method": [StrOptions({"centroid", "knn"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "labels": ["array-like", None],
        "label_descriptions": [dict, list, None],
        "template": [str],
        "prior_weight": [Interval(Real, 0, None, closed="left")],
        "abstain_threshold": [Interval(Real, 0, 1, closed="both"), None],
        "abstain_label": "no_validation",
    }

    def __init__(
        self,
        *,
        method="centroid",
        n_neighbors=3,
        temperature="auto",
        embedder=None,
        labels=None,
        label_descriptions=None,
        template="{label}",
        prior_weight=1.0,
        abstain_threshold=None,
        abstain_label=-1,
    ):
        self.method = method
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.embedder = embedder
        self.labels = labels
        self.label_descriptions = label_descriptions
        self.template = template
        self.prior_weight = prior_weight
        self.abstain_threshold = abstain_threshold
        self.abstain_label = abstain_label

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the class prototypes and fit the softmax temperature.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or None
            Embeddings. With ``labels`` (zero-shot) and no ``y`` they only fix the
            expected width, and may be None.
        y : array-like of shape (n_samples,), default=None
            Class of each row. Optional when ``labels`` or ``label_descriptions``
            are given.

        Returns
        -------
        self : NearestLabelClassifier
            The fitted classifier.
        """
        names = self._label_names()
        if y is None and names is not None:
            X = None if X is None else check_embeddings(self, X, reset=True)
            self.classes_ = np.unique(np.asarray(names))
            y_idx = np.empty(0, dtype=np.intp)
        else:
            X, y = check_embeddings(self, X, y=y, reset=True)
            X = np.ascontiguousarray(X, dtype=np.float32)
            check_classification_targets(y)
            if names is None:
                self.classes_, y_idx = np.unique(y, return_inverse=True)
            else:
                self.classes_ = np.unique(np.asarray(names))
                y_idx = self._index_of(y, what="y")

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
        d = self.n_features_in_
        self.class_counts_ = np.bincount(y_idx, minlength=n_classes)
        Xn = l2_normalize(X) if y_idx.size else np.zeros((0, d), dtype=np.float32)
        order = np.argsort(y_idx, kind="stable")
        self._examples = Xn[order]
        self._bounds = np.concatenate([[0], np.cumsum(self.class_counts_)])

        if self.method == "centroid":
            sums = np.zeros((n_classes, d), dtype=np.float32)
            np.add.at(sums, y_idx, Xn)
            if self.label_embeddings_ is not None:
                has_examples = self.class_counts_ > 0
                weight = np.where(has_examples, self.prior_weight, 1.0)
                sums += weight[:, None].astype(np.float32) * self.label_embeddings_
            self._sums = sums
            self.centroids_ = l2_normalize(sums)

        self.temperature_ = self._fit_temperature(y_idx[order])
        return self

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

    # --------------------------------------------------------- calibration
    def _fit_temperature(self, y_sorted: np.ndarray) -> float:
        if self.temperature != "auto":
            return float(self.temperature)
        n = y_sorted.shape[0]
        if n == 0:
            return DEFAULT_TEMPERATURE
        rows = np.unique(
            np.linspace(0, n - 1, min(n, _MAX_CALIBRATION_ROWS)).astype(np.intp)
        )
        scores = self._loo_similarity(rows)
        own = scores[np.arange(rows.size), y_sorted[rows]]
        valid = np.isfinite(own) & np.isfinite(scores).all(axis=1)
        if not valid.any() or self.classes_.shape[0] < 2:
            return DEFAULT_TEMPERATURE
        scores, own = scores[valid].astype(np.float64), own[valid]

        def nll(log_t: float) -> float:
            t = np.exp(log_t)
            return float(np.mean(logsumexp(scores / t, axis=1) - own / t))

        best = minimize_scalar(
            nll, bounds=(np.log(1e-3), np.log(10.0)), method="bounded"
        )
        return float(np.exp(best.x))

    def _loo_similarity(self, rows: np.ndarray) -> np.ndarray:
        """Class similarities of the training rows ``rows`` (class-sorted order),
        each row left out of its own class."""
        Q = self._examples[rows]
        y = np.searchsorted(self._bounds, rows, side="right") - 1
        if self.method == "centroid":
            S = Q.astype(np.float64) @ self.centroids_.T.astype(np.float64)
            U = self._sums[y]
            dot = np.einsum("ij,ij->i", U, Q, dtype=np.float64)
            qq = np.einsum("ij,ij->i", Q, Q, dtype=np.float64)
            uu = np.einsum("ij,ij->i", U, U, dtype=np.float64)
            norm2 = uu - 2 * dot + qq
            with np.errstate(invalid="ignore", divide="ignore"):
                own = np.where(norm2 > 1e-12, (dot - qq) / np.sqrt(norm2), np.nan)
            S[np.arange(rows.size), y] = own
            return S
        return self._knn_similarity(Q, self_rows=rows)

    # ------------------------------------------------------------ scoring
    def _knn_similarity(
        self, Q: np.ndarray, self_rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Per class: mean similarity of the ``n_neighbors`` most similar examples,
        blended with the label similarity; ``self_rows`` are left out."""
        n_q, n_classes = Q.shape[0], self.classes_.shape[0]
        # float64 scores: a row's result must not depend on the batch it came in.
        E, bounds, m = self._examples.astype(np.float64), self._bounds, self.n_neighbors
        Q = Q.astype(np.float64)
        total = np.zeros((n_q, n_classes), dtype=np.float64)
        count = np.zeros((n_q, n_classes), dtype=np.float64)
        block = max(1, DEFAULT_MEMORY_BUDGET // (8 * max(1, E.shape[0])))
        for q0 in range(0, n_q, block):
            q1 = min(n_q, q0 + block)
            S = Q[q0:q1] @ E.T
            if self_rows is not None:
                S[np.arange(q1 - q0), self_rows[q0:q1]] = -np.inf
            for c in range(n_classes):
                seg = S[:, bounds[c] : bounds[c + 1]]
                kk = min(m, seg.shape[1])
                if kk == 0:
                    continue
                top = np.partition(seg, seg.shape[1] - kk, axis=1)[:, -kk:]
                finite = np.isfinite(top)
                total[q0:q1, c] = np.where(finite, top, 0.0).sum(axis=1)
                count[q0:q1, c] = finite.sum(axis=1)
        if self.label_embeddings_ is not None:
            weight = np.where(self.class_counts_ > 0, self.prior_weight, 1.0)
            total += weight * (Q @ self.label_embeddings_.T)
            count += weight
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count

    def _similarity(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = l2_normalize(check_embeddings(self, X, reset=False))
        if self.method == "centroid":  # float64: batch-size independent results
            return X.astype(np.float64) @ self.centroids_.T.astype(np.float64)
        if self.class_counts_.sum() == 0:  # zero-shot: the labels are the examples
            return X.astype(np.float64) @ self.label_embeddings_.T.astype(np.float64)
        return self._knn_similarity(X)

    def decision_function(self, X):
        """Similarity of each row to each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or (n_samples,)
            Class similarities, columns in the order of ``classes_``; with two
            classes, the similarity to ``classes_[1]`` minus that to ``classes_[0]``.
        """
        S = self._similarity(X)
        if S.shape[1] == 2:
            return S[:, 1] - S[:, 0]
        return S

    def predict_proba(self, X):
        """Class probabilities: ``softmax(similarity / temperature_)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        S = self._similarity(X).astype(np.float64)
        return softmax(S / self.temperature_, axis=1)

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
        logits = self._similarity(X).astype(np.float64) / self.temperature_
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def predict(self, X):
        """The most similar class of each row (or ``abstain_label``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        ndarray of shape (n_samples,)
            Members of ``classes_``; ``abstain_label`` where ``abstain_threshold``
            is set and the highest probability is below it.
        """
        S = self._similarity(X)
        pred = self.classes_[S.argmax(axis=1)]
        if self.abstain_threshold is None:
            return pred
        logits = S.astype(np.float64) / self.temperature_
        top = np.exp(logits.max(axis=1) - logsumexp(logits, axis=1))
        abstain = top < self.abstain_threshold
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
