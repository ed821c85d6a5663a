"""Held-out folds, temperatures and abstention for
:class:`~embedtasks.NearestLabelClassifier`.

With labelled examples the probabilities are fitted on held-out predictions: the
temperature minimises their log-loss. When every held-out prediction is right
(few, well-separated examples) the log-loss has no optimum: it keeps falling as
the temperature does, toward p = 1.0. Then Laplace's rule of succession sets the
limit: after ``n`` right answers out of ``n`` the chance that the next one is
right is ``(n + 1) / (n + 2)``, and the mean top probability on the held-out rows
is kept at or below that (nine out of nine: 0.91, not 1.0).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.special import logsumexp

from embedtasks._kernel import softmax

#: Temperature when nothing is there to fit one on (similarity scores).
DEFAULT_TEMPERATURE = 0.05
#: Cross-validation folds are held out until this many rows have been.
MIN_HELD_OUT = 2000


def hold_out_enough(folds: np.ndarray) -> np.ndarray:
    """Keep folds 0, 1, ... until ``MIN_HELD_OUT`` rows are held out; mark the
    rest -1 (training rows only). A large training set costs one fold, not all."""
    sizes = np.bincount(folds)
    enough = np.flatnonzero(np.cumsum(sizes) >= MIN_HELD_OUT)
    if enough.size:
        folds = np.where(folds > enough[0], -1, folds)
    return folds


def make_folds(y_idx: np.ndarray, cv: int, groups: Any) -> np.ndarray | None:
    """Fold of each row, or None when there is too little to hold out.

    Each class's rows are cut, in the order given, into ``cv`` contiguous blocks
    (as scikit-learn's ``StratifiedKFold`` without shuffling does), so
    neighbouring rows of one source, which are often near-copies, tend to share
    a fold. Folds are then held out in turn only until ``MIN_HELD_OUT`` rows have
    been; the rows of the folds left (fold ``-1``) always train. With ``groups``,
    each group goes whole to a fold (in a fixed shuffled order) and every fold is
    held out: the evidence then grows with the number of groups, not rows.
    """
    n = y_idx.size
    if groups is not None:
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
        k = min(cv, n_groups)
        fold_of_group = np.empty(n_groups, dtype=np.intp)
        permutation = np.random.default_rng(0).permutation(n_groups)
        fold_of_group[permutation] = np.arange(n_groups) % k
        return fold_of_group[group_idx.ravel()]
    if n < 2:
        return None
    k = min(cv, n)
    folds = np.empty(n, dtype=np.intp)
    order = np.argsort(y_idx, kind="stable")  # by class, in the user's order
    counts = np.bincount(y_idx)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - np.repeat(starts, counts)
    size = np.repeat(counts, counts)
    offset = np.repeat(np.arange(counts.size), counts)  # small classes rotate
    block = np.where(size >= k, rank * k // np.maximum(size, 1), rank)
    folds[order] = (block + offset) % k
    return hold_out_enough(folds)


def valid_rows(logits: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    """Held-out rows whose own class could be scored (a row held out from a
    class with no other example cannot)."""
    return np.isfinite(logits[np.arange(y_idx.size), y_idx])


def temperature_for_confidence(scores: np.ndarray, target: float) -> float:
    """The temperature at which the mean top probability of ``scores`` rows is
    ``target`` (it falls from ~1 toward ``1 / n_classes`` as the temperature
    grows). At chance, a temperature that makes the rows almost uniform."""
    finite = np.where(np.isfinite(scores), scores, np.nan)
    spread = float(np.nanmean(np.nanstd(finite, axis=1)))
    if not spread > 0:
        return 1.0
    low, high = np.log(spread * 1e-3), np.log(spread * 1e3)

    def excess(log_t: float) -> float:
        t = float(np.exp(log_t))
        return float(softmax(scores, t).max(axis=1).mean()) - target

    if excess(high) >= 0:  # the target is at chance: as flat as allowed
        return float(np.exp(high))
    if excess(low) <= 0:  # the target is above what the scores can reach
        return float(np.exp(low))
    return float(np.exp(brentq(excess, low, high, xtol=1e-6)))


def supported_confidence(n_correct: int, n: int) -> float:
    """Laplace's rule of succession: the chance the next prediction is right
    after ``n_correct`` right out of ``n``."""
    return (n_correct + 1) / (n + 2)


def fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float | None:
    """The temperature minimising the log-loss of held-out class scores, raised
    where needed so the mean top probability stays within what the held-out
    accuracy supports; None when no held-out row can be scored."""
    valid = valid_rows(logits, y_idx)
    S = logits[valid]
    if S.shape[0] == 0 or S.shape[1] < 2:
        return None
    own = logits[np.arange(y_idx.size), y_idx][valid]
    top = S.max(axis=1, keepdims=True)
    S, own = S - top, own - top[:, 0]  # finite: no overflow at small temperatures

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(logsumexp(S / t, axis=1) - own / t))

    best = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(100.0)), method="bounded")
    temperature = float(np.exp(best.x))
    n_correct = int(np.sum(S.argmax(axis=1) == y_idx[valid]))
    if n_correct < S.shape[0]:  # a held-out error: the log-loss has its optimum
        return temperature
    # Every held-out prediction right: the log-loss falls as the temperature does,
    # toward certainty. Hold the mean top probability to the rule of succession.
    cap = supported_confidence(n_correct, S.shape[0])
    if softmax(S, temperature).max(axis=1).mean() > cap:
        temperature = max(temperature, temperature_for_confidence(S, cap))
    return temperature


def lowest_supported_similarity(
    logits: np.ndarray, y_idx: np.ndarray, centroid_scores: np.ndarray
) -> float | None:
    """The lowest held-out similarity to the predicted class's centroid at which
    a held-out prediction was right (None if none was): below it a query is
    unlike anything the folds got right, so it is out of domain."""
    pred = logits.argmax(axis=1)
    own = centroid_scores[np.arange(pred.size), pred]
    right = (pred == y_idx) & np.isfinite(own)
    return float(own[right].min()) if right.any() else None


def threshold_for_precision(
    proba: np.ndarray, y_idx: np.ndarray, target_precision: float
) -> float:
    """Lowest held-out top probability at which precision reaches the target."""
    confidence = proba.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (proba.argmax(axis=1) == y_idx)[order]
    precision = np.cumsum(correct) / np.arange(1, correct.size + 1)
    reached = np.flatnonzero(precision >= target_precision)
    if reached.size == 0:
        warnings.warn(
            f"No probability threshold reaches target_precision="
            f"{target_precision} on the held-out folds (best precision "
            f"{precision.max():.3f}); predict will abstain on every row. Lower "
            "target_precision or give more examples.",
            UserWarning,
            stacklevel=5,  # the estimator's fit, _fit_context, the caller
        )
        return float(np.nextafter(1.0, 2.0))  # above every probability
    return float(confidence[order][reached[-1]])
