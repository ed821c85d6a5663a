"""Placing new rows in a fitted layout by their most similar reference rows."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embedtasks._kernel._merge import TopK
from embedtasks._kernel._topk import top_k

#: Softmax temperature over cosine similarities used to weight the neighbours;
#: sentence-embedding similarities of related texts differ by a few hundredths,
#: so 0.05 lets the closest neighbours dominate without ignoring the rest.
DEFAULT_PLACEMENT_TEMPERATURE = 0.05


def place_by_similarity(
    X: npt.ArrayLike,
    reference: npt.ArrayLike,
    layout: npt.ArrayLike,
    k: int,
    *,
    temperature: float = DEFAULT_PLACEMENT_TEMPERATURE,
    corpus_max_norm: float | None = None,
) -> npt.NDArray[np.float32]:
    """Coordinates of new rows: the softmax-weighted mean of their ``k`` nearest.

    Each row of ``X`` is placed at the mean of the ``layout`` coordinates of its
    ``k`` most similar ``reference`` rows, weighted by ``exp((s - s_max) /
    temperature)`` (how UMAP initialises its own ``transform``). Each row is
    placed independently of the others, with canonical similarities and a fixed
    summation order, so the result does not depend on batching.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows to place.
    reference : array-like of shape (n_reference, n_features)
        Rows the layout was computed from.
    layout : array-like of shape (n_reference, n_components)
        Their coordinates.
    k : int
        Neighbours to average.
    temperature : float, default=0.05
        Softmax temperature over the similarities.
    corpus_max_norm : float, optional
        Largest row norm of ``reference``, if known (see :func:`top_k`).

    Returns
    -------
    ndarray of float32 of shape (n_samples, n_components)

    Examples
    --------
    >>> ref = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    >>> layout = [[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]]
    >>> place_by_similarity([[0.8, 0.6]], ref, layout, k=2, temperature=1.0)
    array([[2.6995745, 2.6995745]], dtype=float32)
    """
    R = np.asarray(reference)
    k = min(int(k), R.shape[0])
    nearest = top_k(X, R, k, corpus_max_norm=corpus_max_norm)
    return place_from_neighbours(nearest, layout, temperature=temperature)


def place_from_neighbours(
    nearest: TopK,
    layout: npt.ArrayLike,
    *,
    temperature: float = DEFAULT_PLACEMENT_TEMPERATURE,
) -> npt.NDArray[np.float32]:
    """:func:`place_by_similarity` from neighbours already found (``top_k``'s).

    >>> from embedtasks._kernel import top_k
    >>> nearest = top_k([[0.8, 0.6]], [[1.0, 0.0], [0.6, 0.8]], 2)
    >>> place_from_neighbours(nearest, [[0.0, 0.0], [5.0, 5.0]], temperature=1.0)
    array([[2.6995745, 2.6995745]], dtype=float32)
    """
    Z = np.asarray(layout, dtype=np.float64)
    s = nearest.scores.astype(np.float64)
    k = s.shape[1]
    weights = np.exp((s - s[:, :1]) / temperature)
    weights /= weights.sum(axis=1, keepdims=True)
    out = np.zeros((s.shape[0], Z.shape[1]), dtype=np.float64)
    for j in range(k):  # a fixed order of additions, row by row
        out += weights[:, j, None] * Z[nearest.indices[:, j]]
    return out.astype(np.float32)
