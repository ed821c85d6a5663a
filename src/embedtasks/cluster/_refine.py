"""The clusters' last word: centres and neighbours, both in the input space.

HDBSCAN finds the clusters in a 5-D layout of the neighbour graph. The layout
keeps who neighbours whom, but it loses the directions the input vectors share
more widely: on corpora whose groups are broad regions of the input space
(Debian package descriptions by section: a development-files package sits next
to its library and its documentation, three sections) KMeans on the raw
vectors, given the true number of groups, beat the layout's clusters, and on
corpora whose groups follow neighbourhoods (Brown's genres: paragraphs of one
text sit together) the layout's clusters beat KMeans by far.

:class:`Refinement` keeps HDBSCAN's clusters and lets both readings decide
each row: it moves to the cluster that maximises

    similarity to the cluster's centre + weight * share of its neighbours there

(iterated conditional modes: centres and shares are recomputed until at most
one row in a thousand moves). The weight is set from the data in front of it:
``WEIGHT_IN_MARGINS`` times the median margin between a row's most similar
and second most similar starting centre, so it means the same for any model's
similarity scale. A row HDBSCAN left as noise (after ``max_noise``) stays noise
unless at least ``NOISE_SHARE`` of its neighbours end in its cluster and it
is as similar to the cluster's centre as a row clustered from the start.

Medians of 3 seeds, V-measure (noise share), before -> after, against KMeans
given the true k (``benchmarks/bench_cluster.py --corpora debian
debian-natural brown banking77 brown-blocks-45 banking77-45-noisy``): Debian
descriptions, 49 sections, 7,735 rows: 0.519 (9.5%) -> 0.540 (4.9%), KMeans
0.520; the same, 7,000 rows in natural proportions: 0.432 (9.6%) -> 0.452
(4.0%), KMeans 0.438; Brown genres 0.300 (11%) -> 0.305 (2.8%), KMeans 0.250;
Brown blocks-45 0.391 -> 0.398 (0.347); Banking77 test 0.816 (3.7%) -> 0.825
(1.3%), KMeans 0.785; Banking77-45 with noise 0.807 -> 0.824 (0.788).

The weight, swept over 0.75, 1, 1.5 and 2.5 margins (3 seeds each): a lower
weight follows the centres more, which gained Debian at most 0.006 (0.546 at
0.75) and cost Brown genres 0.020-0.031 (0.285 at 1.5, below the 0.300 of
the layout's clusters) and Brown blocks 0.013-0.035; Banking77 moved within
0.002 and Debian packages labelled by purpose (debtags ``use::``, 30 classes,
4,028 rows) within 0.005 (0.487 at 2.5, KMeans 0.431).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import group_mean_direction, similarity

#: A neighbourhood wholly in a cluster is worth this many median margins of
#: centre similarity (see the module docstring for the sweep).
WEIGHT_IN_MARGINS = 2.5
#: A row left as noise joins its cluster when at least this share of its
#: neighbours are there (0.5 kept 1.5-2.5x more noise for lower V-measure).
NOISE_SHARE = 1.0 / 3.0
#: Stop when at most this share of the rows moved in one round.
_SETTLED = 1e-3
_MAX_ROUNDS = 30
#: Rows labelled at once by :meth:`Refinement.assign`.
_BLOCK = 8192
#: A row this close (1 - cosine) to a reference row takes its label (and, in
#: the estimator, its place in the layout).
SAME_ROW = 1e-6

Labels = npt.NDArray[np.intp]


class Refinement:
    """Re-decide the reference rows' clusters; keep what labels new rows.

    Parameters
    ----------
    X : ndarray of shape (n_reference, n_features)
        The unit reference rows (those the layout was computed on).
    start : ndarray of int of shape (n_reference,)
        Their clusters after HDBSCAN and ``max_noise`` (``-1``: noise).
    neighbours : ndarray of int of shape (n_reference, m)
        Each reference row's ``m`` most similar other reference rows.
    n_clusters : int
        HDBSCAN's clusters over all rows. A cluster with no reference row
        (rows placed in the layout can form one) takes no part: its rows
        keep it (:meth:`assign`).

    Attributes
    ----------
    labels : ndarray of int
        The reference rows' final clusters, ``-1`` for noise; a cluster left
        with no row is dropped (the others keep their order).
    compact : ndarray of int of shape (n_clusters,)
        The final id of each starting cluster (``-1``: it was dropped).
    assigned : ndarray of int
        Every reference row's cluster (starting ids) before noise is kept:
        what the neighbours of a new row vote with.
    centres : ndarray of shape (n_clusters, n_features)
        Unit mean direction of each cluster's assigned rows.
    open : ndarray of bool of shape (n_clusters,)
        The clusters a row can move to (those with a final reference row).
    absent : ndarray of bool of shape (n_clusters,)
        The clusters with no reference row: their rows keep them.
    bars : ndarray of shape (n_clusters,)
        The lowest centre similarity of a row that was clustered from the
        start: a noise row below it stays noise.
    weight : float
        The neighbour share's weight (similarity units).
    n_clusters : int
        Clusters after the refinement.
    """

    def __init__(
        self,
        X: npt.NDArray[np.float32],
        start: Labels,
        neighbours: npt.NDArray[np.integer],
        n_clusters: int,
    ) -> None:
        k = n_clusters
        self.neighbours_per_row = neighbours.shape[1]
        clustered = start >= 0
        self.open = np.bincount(start[clustered], minlength=k) > 0
        self.absent = ~self.open
        centres = group_mean_direction(X[clustered], start[clustered], k)
        P = self._similarity(X, centres)
        labels = start.copy()
        labels[~clustered] = P[~clustered].argmax(axis=1)
        self.weight = WEIGHT_IN_MARGINS * _median_margin(P[:, self.open])
        for _ in range(_MAX_ROUNDS):
            self.centres = group_mean_direction(X, labels, k)
            P = self._similarity(X, self.centres)
            moved = self._decide(P, _shares(labels[neighbours], k))
            changed = int((moved != labels).sum())
            labels = moved
            if changed <= _SETTLED * labels.size:
                break
        self.centres = group_mean_direction(X, labels, k)
        self.assigned = labels
        own = similarity(X, self.centres)[np.arange(labels.size), labels]
        self.bars = np.full(k, np.inf)  # no row joins a cluster without one
        np.minimum.at(self.bars, labels[clustered], own[clustered])
        final = self._keep_noise(start, labels, own, labels[neighbours])
        self.open = np.bincount(final[final >= 0], minlength=k) > 0
        kept = np.flatnonzero(self.open | self.absent)
        self.compact = np.full(k, -1, dtype=np.intp)
        self.compact[kept] = np.arange(kept.size)
        self.n_clusters = int(kept.size)
        self.labels = np.where(final >= 0, self.compact[np.maximum(final, 0)], -1)

    def _similarity(
        self, X: npt.NDArray[np.float32], centres: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Similarity to the centres; ``-inf`` for a cluster a row cannot join."""
        P = similarity(X, centres)
        P[:, ~self.open] = -np.inf
        return P

    def _decide(
        self, P: npt.NDArray[np.float32], shares: npt.NDArray[np.float64]
    ) -> Labels:
        return (P + self.weight * shares).argmax(axis=1).astype(np.intp)

    def _keep_noise(
        self, start: Labels, labels: Labels, own: npt.NDArray, around: Labels
    ) -> Labels:
        """Noise from the start stays noise unless both readings put it in.

        It joins when at least ``NOISE_SHARE`` of its neighbours are in the
        cluster *and* it is as similar to the centre as a row clustered from
        the start: a far row whose neighbours all sit in one cluster stays out.
        """
        share = (around == labels[:, None]).mean(axis=1)
        joins = (share >= NOISE_SHARE) & (own >= self.bars[labels])
        return np.where((start >= 0) | joins, labels, -1)

    def assign(
        self,
        X: npt.NDArray[np.float32],
        start: Labels,
        neighbours: npt.NDArray[np.integer],
        nearest: npt.NDArray[np.floating],
    ) -> Labels:
        """Label rows outside the reference set by the same rule (final ids).

        ``start``: their clusters after HDBSCAN and ``max_noise``: ``-1``
        (noise) and the clusters with no reference row matter; ``neighbours``:
        their ``m`` most similar reference rows; ``nearest``: the similarity
        of the first. A row equal to a reference row takes that row's label.
        Rows are labelled in blocks (memory: rows x clusters per block).
        """
        out = np.empty(start.size, dtype=np.intp)
        k = self.centres.shape[0]
        for r0 in range(0, start.size, _BLOCK):
            block = slice(r0, min(r0 + _BLOCK, start.size))
            near = neighbours[block, : self.neighbours_per_row]
            around = self.assigned[near]
            P = self._similarity(X[block], self.centres)
            labels = self._decide(P, _shares(around, k))
            own = P[np.arange(labels.size), labels]
            final = self._keep_noise(start[block], labels, own, around)
            placed_only = (start[block] >= 0) & self.absent[np.maximum(start[block], 0)]
            final[placed_only] = start[block][placed_only]  # no reference row
            final = np.where(final >= 0, self.compact[np.maximum(final, 0)], -1)
            same = np.asarray(nearest[block]) >= 1.0 - SAME_ROW
            final[same] = self.labels[near[same, 0]]  # a reference row's copy
            out[block] = final
        return out


def _shares(neighbour_labels: Labels, k: int) -> npt.NDArray[np.float64]:
    """Share of each row's neighbours in each of the ``k`` clusters."""
    n, m = neighbour_labels.shape
    counts = np.zeros((n, k))
    rows = np.arange(n)
    for j in range(m):  # one neighbour per row at a time: no repeated cell
        counts[rows, neighbour_labels[:, j]] += 1.0
    return counts / m


def _median_margin(P: npt.NDArray[np.float32]) -> float:
    """Median over rows of best minus second-best similarity (0 with 1 column)."""
    if P.shape[1] < 2:
        return 0.0
    top = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:].astype(np.float64)
    return float(np.median(top[:, 1] - top[:, 0]))
