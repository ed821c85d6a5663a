"""The heads of :class:`~embedtasks.NearestLabelClassifier`: how a class is scored
from labelled examples (and label embeddings acting as a prior).

Each head is a small class: built with what it needs to know about the classes
(:class:`Prior`), fitted on unit rows and class indices, then asked for class
scores (float64, ``-inf`` for a class it knows nothing of). ``out_of_fold`` gives
every row's held-out scores, which choose the head and calibrate it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from embedtasks._kernel import group_sum, l2_normalize, similarity, top_k

#: scikit-learn's hint that y may be continuous; few-shot y is not.
MANY_CLASSES = "The number of unique classes is greater than 50%"


@dataclass(frozen=True)
class Prior:
    """The classes, and the label embeddings that join them as examples.

    ``labels`` (unit rows, one per class) or None; each counts as ``weight``
    examples of its class, and stands alone for a class without examples.
    """

    n_classes: int
    labels: np.ndarray | None = None
    weight: float = 0.0

    def label_weights(self, counts: np.ndarray) -> np.ndarray:
        """Weight of each label embedding: ``weight``, or 1 for a class with no
        examples (its label is all there is)."""
        return np.where(counts > 0, self.weight, 1.0)


def _folds_of(folds: np.ndarray):
    """(held-out mask, training mask) of each fold that has training rows."""
    for f in np.unique(folds[folds >= 0]):
        test, train = folds == f, folds != f
        if train.any():
            yield test, train


class CentroidHead:
    """Cosine similarity to each class's mean direction (with its label)."""

    name = "centroid"

    def __init__(self, prior: Prior) -> None:
        self.prior = prior

    def fit(self, Xn: np.ndarray, y_idx: np.ndarray, init: Any = None):
        counts = np.bincount(y_idx, minlength=self.prior.n_classes)
        sums = group_sum(Xn, y_idx, self.prior.n_classes)
        known = counts > 0
        if self.prior.labels is not None:
            weight = self.prior.label_weights(counts)
            sums += weight[:, None] * self.prior.labels.astype(np.float64)
            known = known | (weight > 0)
        self.centroids = l2_normalize(sums)
        self.known = known
        return self

    def scores(self, Q: np.ndarray) -> np.ndarray:
        S = similarity(Q, self.centroids).astype(np.float64)
        S[:, ~self.known] = -np.inf
        return S

    def out_of_fold(self, Xn: np.ndarray, y_idx: np.ndarray, folds: np.ndarray):
        """Held-out scores of every row (``-inf`` rows are never held out)."""
        scores = np.full((y_idx.size, self.prior.n_classes), -np.inf)
        for test, train in _folds_of(folds):
            head = type(self)(self.prior).fit(Xn[train], y_idx[train])
            scores[test] = head.scores(Xn[test])
        return scores, None


class KnnHead:
    """Similarity-weighted vote of the ``n_neighbors`` nearest examples.

    Per class: the sum of its neighbours' similarities over ``n_neighbors``, plus
    the prior's weight times the label similarity as one more voter.
    """

    name = "knn"

    def __init__(self, prior: Prior, candidates: tuple[int, ...] = (3,)) -> None:
        self.prior = prior
        self.candidates = candidates
        self.n_neighbors = candidates[0]

    def fit(self, Xn: np.ndarray, y_idx: np.ndarray, init: Any = None):
        self.examples = np.ascontiguousarray(Xn)
        self.y = y_idx
        if init is not None:
            self.n_neighbors = int(init)
        return self

    def scores(self, Q: np.ndarray) -> np.ndarray:
        k = max(1, min(self.n_neighbors, self.examples.shape[0]))
        found = top_k(Q, self.examples, k, n_jobs=1)
        return self.vote(Q, found.indices, found.scores, self.y, self.n_neighbors)

    def vote(self, Q, indices, scores, y_E, n_neighbors: int) -> np.ndarray:
        n_q, n_classes = Q.shape[0], self.prior.n_classes
        indices, scores = indices[:, :n_neighbors], scores[:, :n_neighbors]
        hit = indices >= 0
        rows = np.nonzero(hit)[0]
        total = np.zeros((n_q, n_classes), dtype=np.float64)
        np.add.at(total, (rows, y_E[indices[hit]]), scores[hit].astype(np.float64))
        if self.prior.labels is None:
            return total / n_neighbors
        weight = self.prior.label_weights(np.bincount(y_E, minlength=n_classes))
        total += weight * similarity(Q, self.prior.labels).astype(np.float64)
        return total / (n_neighbors + weight)

    def out_of_fold(self, Xn: np.ndarray, y_idx: np.ndarray, folds: np.ndarray):
        """Held-out scores with the best neighbour count (tried in one search)."""
        n, n_classes = y_idx.size, self.prior.n_classes
        by_k = {k: np.full((n, n_classes), -np.inf) for k in self.candidates}
        for test, train in _folds_of(folds):
            E, y_E = np.ascontiguousarray(Xn[train]), y_idx[train]
            k_max = min(max(self.candidates), E.shape[0])
            found = top_k(Xn[test], E, k_max, n_jobs=1)
            for k in self.candidates:
                by_k[k][test] = self.vote(Xn[test], found.indices, found.scores, y_E, k)
        accuracy = {k: np.mean(v.argmax(axis=1) == y_idx) for k, v in by_k.items()}
        best = next(k for k in self.candidates if accuracy[k] == max(accuracy.values()))
        return by_k[best], best


class LinearHead:
    """Multinomial logistic regression (lbfgs, ``C``) on the rows, with each label
    embedding as a training row of weight ``prior.weight``."""

    name = "linear"

    def __init__(self, prior: Prior, C: float = 10.0) -> None:
        self.prior = prior
        self.C = C

    def fit(self, Xn: np.ndarray, y_idx: np.ndarray, init: Any = None):
        """Fit, starting from ``init`` (weights, intercepts) when given; keeps
        float32 weights and intercepts in the columns of the classes (absent
        classes: weight 0, intercept -inf)."""
        n_classes, d = self.prior.n_classes, Xn.shape[1]
        L, w = self.prior.labels, self.prior.weight
        X_fit, y_fit, sample_weight = Xn, y_idx, None
        if L is not None and w > 0:
            X_fit = np.vstack([Xn, L])
            y_fit = np.concatenate([y_idx, np.arange(n_classes)])
            sample_weight = np.concatenate([np.ones(y_idx.size), np.full(n_classes, w)])
        present = np.unique(y_fit)
        self.coef = np.zeros((n_classes, d), dtype=np.float32)
        self.intercept = np.full(n_classes, -np.inf)
        self.model: LogisticRegression | None = None
        if present.size < 2:  # one class: it always wins
            self.intercept[present] = 0.0
            return self
        linear = LogisticRegression(C=self.C, max_iter=1000, warm_start=True)
        if init is not None and present.size > 2:
            # Start from the held-out folds' solution: the final fit on Banking77
            # took 35 lbfgs iterations instead of 58.
            linear.coef_ = np.ascontiguousarray(init[0][present])
            linear.intercept_ = np.ascontiguousarray(init[1][present])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", MANY_CLASSES, UserWarning)
            linear.fit(X_fit, y_fit, sample_weight=sample_weight)
        weights = np.asarray(linear.coef_, dtype=np.float64)
        bias = np.asarray(linear.intercept_, dtype=np.float64)
        if present.size == 2:  # binary: one weight vector for the second class
            weights = np.vstack([-weights / 2, weights / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        self.coef[present] = weights
        self.intercept[present] = bias
        self.model = linear
        return self

    def scores(self, Q: np.ndarray) -> np.ndarray:
        return similarity(Q, self.coef).astype(np.float64) + self.intercept

    def out_of_fold(self, Xn: np.ndarray, y_idx: np.ndarray, folds: np.ndarray):
        """Held-out scores, and the folds' mean weights (the final fit's start)
        when every fold saw every class."""
        scores = np.full((y_idx.size, self.prior.n_classes), -np.inf)
        fitted = []
        for test, train in _folds_of(folds):
            head = type(self)(self.prior, self.C).fit(Xn[train], y_idx[train])
            scores[test] = head.scores(Xn[test])
            if np.isfinite(head.intercept).all():
                fitted.append(head)
        if not fitted or len(fitted) != np.unique(folds[folds >= 0]).size:
            return scores, None
        coef = np.mean([h.coef.astype(np.float64) for h in fitted], axis=0)
        return scores, (coef, np.mean([h.intercept for h in fitted], axis=0))


#: Heads ``method="auto"`` chooses among, simplest first (ties go to the simpler).
HEADS = ("centroid", "knn", "linear")


def make_head(
    name: str, prior: Prior, *, C: float, candidates: tuple[int, ...]
) -> CentroidHead | KnnHead | LinearHead:
    """A fresh, unfitted head by name."""
    if name == "centroid":
        return CentroidHead(prior)
    if name == "knn":
        return KnnHead(prior, candidates)
    return LinearHead(prior, C)
