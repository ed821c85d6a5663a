"""Zero-shot scoring for :class:`~embedtasks.NearestLabelClassifier`: label-hub
correction and a temperature read off the unlabelled inputs.

Without labelled rows nothing can be fitted on the truth, so the temperature comes
from how *self-consistent* the zero-shot labels are on the inputs given to ``fit``:

- ``agreement``: how often a row's predicted label is also the predicted label of
  each of its ``n_neighbors`` nearest inputs. Correct predictions agree with each
  other (neighbours mostly share a class), so this rises with accuracy; but errors
  that a whole neighbourhood shares also agree, so it is an upper estimate.
- ``chance_agreement``: the same agreement for *null* label sets, the label
  embeddings rotated at random (the same label-to-label similarities, no relation
  to the texts). It is what smooth geometry alone produces.
- The chance-corrected agreement ``(agreement - chance) / (1 - chance)`` (Cohen's
  kappa against the null labels) counts only the agreement the labels explain: a
  lower estimate, since the null labels also agree where the labels are right.

The expected accuracy is the midpoint of the two estimates (never below
``1 / n_classes``), and the temperature is the one at which the mean top
probability on the inputs equals it (``temperature_for_confidence``). No constant
is fitted to a corpus: with an unrelated label set the estimate falls to chance
and the probabilities to uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import l2_normalize, similarity, softmax, top_k
from embedtasks.classify._calibration import (
    DEFAULT_TEMPERATURE,
    temperature_for_confidence,
)

#: Neighbours whose predicted labels each input is compared with.
N_NEIGHBORS = 10
#: Random rotations of the label set that measure chance agreement.
NULL_DRAWS = 4
#: Fewer inputs than this (per class, and in all) cannot support an estimate.
MIN_ROWS_PER_CLASS = 2
MIN_ROWS = 50
_BALANCE_ITERATIONS = 50
#: Hub-correction temperature: this times the mean per-row spread of the label
#: scores (a scale for the balancing shifts only, not for the probabilities).
_BALANCE_SPREAD = 0.40


@dataclass(frozen=True)
class SelfConsistency:
    """What the inputs say about the zero-shot labels (see the module docstring)."""

    agreement: float
    chance_agreement: float
    expected_accuracy: float


def enough_rows(n_rows: int, n_classes: int) -> bool:
    """Whether ``n_rows`` inputs can support a self-consistency estimate."""
    return n_rows >= max(MIN_ROWS, MIN_ROWS_PER_CLASS * n_classes, N_NEIGHBORS + 1)


def _neighbour_agreement(pred: np.ndarray, neighbours: np.ndarray) -> float:
    valid = neighbours >= 0
    same = (pred[np.maximum(neighbours, 0)] == pred[:, None]) & valid
    return float(same.sum() / max(valid.sum(), 1))


def self_consistency(
    Xn: npt.NDArray[np.float32],
    labels: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float64],
) -> SelfConsistency:
    """Agreement of the zero-shot labels among neighbouring inputs, beside the
    agreement of random label sets with the same geometry (seeded: deterministic).

    ``Xn`` are unit inputs, ``labels`` the unit label embeddings and ``bias`` the
    per-label shift added to their similarities.
    """
    n_classes = labels.shape[0]
    k = int(np.clip(Xn.shape[0] // (3 * n_classes), 1, N_NEIGHBORS))
    neighbours = top_k(Xn, Xn, k, self_offset=0, n_jobs=1).indices
    scores = similarity(Xn, labels).astype(np.float64) + bias
    agreement = _neighbour_agreement(scores.argmax(axis=1), neighbours)
    # Rotations keep every label-to-label similarity: L = U s Vt -> U s W^T.
    U, s, _ = np.linalg.svd(labels.astype(np.float64), full_matrices=False)
    rng = np.random.default_rng(0)
    chance = []
    for _ in range(NULL_DRAWS):
        W, _ = np.linalg.qr(rng.standard_normal((labels.shape[1], s.size)))
        null = ((U * s) @ W.T).astype(np.float32)
        pred = similarity(Xn, null).argmax(axis=1)
        chance.append(_neighbour_agreement(pred, neighbours))
    g0 = float(np.mean(chance))
    kappa = (agreement - g0) / (1.0 - g0) if g0 < 1.0 else 0.0
    expected = max((agreement + kappa) / 2.0, 1.0 / n_classes)
    return SelfConsistency(agreement, g0, float(min(expected, 1.0)))


def spread_temperature(scores: np.ndarray) -> float:
    """Scale of the hub-correction shifts: ``_BALANCE_SPREAD`` times the mean
    per-row standard deviation of the label scores."""
    spread = float(np.mean(np.std(scores, axis=1)))
    return _BALANCE_SPREAD * spread if spread > 0 else 0.05


def balancing_bias(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Per-label shifts that make every label equally likely on average over the
    rows of ``scores`` (a label similar to everything gets a negative shift)."""
    bias = np.zeros(scores.shape[1], dtype=np.float64)
    for _ in range(_BALANCE_ITERATIONS):
        share = softmax(scores + bias, temperature).mean(axis=0) * scores.shape[1]
        bias -= temperature * np.log(np.maximum(share, 1e-300))
    return bias - bias.mean()


@dataclass(frozen=True)
class ZeroShotFit:
    """The zero-shot state :func:`fit_zero_shot` measures on the inputs."""

    bias: np.ndarray
    temperature: float
    calibrated: bool
    expected_accuracy: float | None
    n_rows: int


def fit_zero_shot(
    labels: npt.NDArray[np.float32],
    X: np.ndarray | None,
    *,
    hub_correction: float,
    temperature: float | str,
    max_rows: int,
) -> ZeroShotFit:
    """Hub correction and temperature of unit ``labels`` from the inputs ``X``
    (at most ``max_rows`` of them, evenly spaced); ``temperature`` is "auto" or
    a fixed value (then ``calibrated`` is False: the user chose it)."""
    n_classes = labels.shape[0]
    Xn = None
    if X is not None and X.shape[0] > 0:
        Xn = l2_normalize(X[:: max(1, -(-X.shape[0] // max_rows))])
    reference = None if Xn is None else similarity(Xn, labels).astype(np.float64)
    n_rows = 0 if Xn is None else Xn.shape[0]
    bias = np.zeros(n_classes, dtype=np.float64)
    if reference is not None and hub_correction > 0 and n_classes > 1:
        bias = hub_correction * balancing_bias(reference, spread_temperature(reference))
    if temperature != "auto":
        return ZeroShotFit(bias, float(temperature), False, None, n_rows)
    if reference is None:
        return ZeroShotFit(bias, DEFAULT_TEMPERATURE, False, None, 0)
    if n_classes < 2 or not enough_rows(n_rows, n_classes):
        t = spread_temperature(reference + bias)
        return ZeroShotFit(bias, t, False, None, n_rows)
    assert Xn is not None
    found = self_consistency(Xn, labels, bias)
    t = temperature_for_confidence(reference + bias, found.expected_accuracy)
    return ZeroShotFit(bias, t, True, found.expected_accuracy, n_rows)


def too_few_rows(n_rows: int, n_classes: int) -> str:
    """The warning when the inputs cannot support a zero-shot temperature."""
    need = max(MIN_ROWS, MIN_ROWS_PER_CLASS * n_classes)
    return (
        f"NearestLabelClassifier: predict_proba is not calibrated "
        f"(calibrated_=False): zero-shot, the temperature is read off the inputs "
        f"given to fit, and {n_rows} rows are too few for {n_classes} labels (at "
        f"least {need}). Pass the texts to classify to fit, or labelled examples."
    )
