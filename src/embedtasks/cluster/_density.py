"""HDBSCAN behind :class:`~embedtasks.EmbeddingClusterer`: settings from n, noise.

- :func:`auto_min_cluster_size`: HDBSCAN's smallest cluster from the number
  of rows, so that a few hundred rows give a useful number of clusters and a
  large corpus is not shattered;
- :func:`fit_hdbscan`: the clusterer, with one retry when ``"eom"`` keeps a
  cluster of more than half the rows;
- :func:`poor_result_advice`: a warning that names the settings that help;
- :class:`NoiseVote`: the similarity vote that moves noise rows into clusters
  (``max_noise``), kept so that :meth:`predict` applies the same rule;
- :class:`CentreRescue`: a noise row as close to a cluster's centre (in the
  input space) as that cluster's own members, and voted into it by its
  neighbours, is not an outlier: it joins;
- :func:`assign_by_membership`: HDBSCAN's soft membership (``assign_noise``).
"""

from __future__ import annotations

from typing import Any

import hdbscan
import numpy as np
import numpy.typing as npt

from embedtasks._kernel import group_mean_direction, pair_dots, top_k

#: Below this many rows a cluster may be as small as 1 row in 40 (at least
#: ``_SMALLEST_CLUSTER``) and HDBSCAN may pick the leaves of its tree: with
#: ``min_cluster_size=15`` and "eom", 300 rows of 40 classes gave 3-9 clusters,
#: one of them up to half the rows.
SMALL_CORPUS = 600
_SMALLEST_CLUSTER = 5
#: Rows per cluster of the smallest size below SMALL_CORPUS rows.
_ROWS_PER_SMALLEST = 40
#: A noise row joins a cluster when it is at least as similar to the cluster's
#: centre (input space) as this share of the cluster's HDBSCAN members and its
#: neighbours vote for that cluster (:class:`CentreRescue`). Medians of 3 seeds,
#: V-measure (noise share), no rescue / 10% quantile alone / 0 with the vote /
#: 5% with the vote (``bench_cluster.py`` section 3): 45 Banking77 intents with
#: N(0, 0.04) added 0.788 (10.7%) / 0.797 / 0.807 (4.6%) / 0.803, KMeans with
#: the true k 0.788; Brown blocks-45 0.390 (15%) / 0.392 / 0.391 (10.8%) / 0.391;
#: Brown genres 0.3008 (15%) / 0.2993 / 0.3002 (11.1%) / 0.3004; Banking77 test
#: 0.806 (6.6%) / 0.814 / 0.816 (3.7%) / 0.814.
RESCUE_QUANTILE = 0.0
#: Above 3,000 rows the smallest cluster is 1 row in 200.
_LARGE_SHARE = 200
_FLOOR = 15


def auto_min_cluster_size(n_samples: int) -> int:
    """``min_cluster_size="auto"``: n // 40 (at least 5) up to 15, then n // 200.

    >>> [auto_min_cluster_size(n) for n in (100, 300, 1_000, 10_000)]
    [5, 7, 15, 50]
    """
    small = max(_SMALLEST_CLUSTER, n_samples // _ROWS_PER_SMALLEST)
    return max(min(_FLOOR, small), n_samples // _LARGE_SHARE)


def fit_hdbscan(
    Z: npt.NDArray[np.float32],
    *,
    min_cluster_size: int,
    min_samples: int,
    epsilon: float,
    method: str,
) -> tuple[Any, str]:
    """HDBSCAN on the reduced rows ``Z``, with prediction data; the method used.

    ``method="auto"``: ``"eom"``, then below 600 rows ``"leaf"`` when the
    largest cluster holds more than twice the mean cluster's rows (``"eom"``
    kept a parent of several groups: 300 rows of 40 classes gave 3-9 clusters,
    one with up to half the rows; evenly sized groups keep ``"eom"``). When
    ``"eom"`` keeps one cluster holding more than half the rows, the clusters
    are chosen again with none above a fifth of the rows, and the choice
    HDBSCAN's validity estimate (DBCV) rates higher is kept.
    """
    n_samples = Z.shape[0]
    Z64 = Z.astype(np.float64)

    def make(**extra: Any) -> Any:
        return hdbscan.HDBSCAN(
            min_cluster_size=min(min_cluster_size, n_samples),
            min_samples=min(min_samples, n_samples - 1),
            cluster_selection_epsilon=float(epsilon),
            cluster_selection_method=method,
            metric="euclidean",
            alpha=1.0,
            algorithm="best",
            leaf_size=40,
            approx_min_span_tree=True,
            core_dist_n_jobs=1,
            allow_single_cluster=False,
            prediction_data=True,
            match_reference_implementation=False,
            **extra,
        )

    auto = method == "auto"
    method = "eom" if auto else method
    model = make().fit(Z64)
    labels = model.labels_
    sizes = np.bincount(labels[labels >= 0], minlength=1)
    clustered = sizes.sum()
    if auto and n_samples < SMALL_CORPUS and sizes.max() > 2 * clustered / sizes.size:
        method = "leaf"
        model = make().fit(Z64)
    elif method == "eom" and sizes.max() > n_samples / 2:
        # "eom" can keep one parent cluster that swallows most rows (Brown
        # genres: 9 clusters, the largest 85%, V-measure 0.13). Try again with
        # no cluster above a fifth of the rows; keep whichever is the more
        # valid clustering (hdbscan's DBCV estimate: 0.07 vs 0.21 there).
        whole = make(gen_min_span_tree=True).fit(Z64)
        capped = make(gen_min_span_tree=True, max_cluster_size=n_samples // 5)
        capped.fit(Z64)
        if capped.relative_validity_ > whole.relative_validity_:
            model = capped
    return model, method


def poor_result_advice(
    labels: npt.NDArray[np.intp],
    *,
    space: str,
    min_cluster_size: int,
    method: str,
    max_noise: float | None,
) -> str | None:
    """A warning when most rows are noise, one cluster holds most rows, or < 3.

    It names what changes the result: the leaves of HDBSCAN's tree
    (``cluster_selection_method="leaf"``) with a smaller ``min_cluster_size``
    (half the one used), ``n_clusters=k``, or a capped noise share.
    """
    n = labels.size
    noise = float((labels < 0).mean())
    found = int(labels.max()) + 1
    largest = np.bincount(labels[labels >= 0]).max() / n if found else 0.0
    if noise <= 0.5 and found >= 3 and largest <= 0.5:
        return None
    smaller = max(2, min_cluster_size // 2)
    steps = []
    if space != "umap":
        steps.append("reduction='umap' (the default; keeps neighbours together)")
    if method != "leaf" or smaller < min_cluster_size:
        steps.append(
            f"cluster_selection_method='leaf' with min_cluster_size={smaller} "
            f"(CLI: --cluster-selection-method leaf --min-cluster-size {smaller})"
        )
    if max_noise is None and noise > 0.5:
        steps.append("max_noise=0.15")
    steps.append("n_clusters=k for exactly k clusters (KMeans)")
    what = f"{100 * noise:.0f}% of the {n:,} rows as noise, {found} cluster"
    what += "s" * (found != 1)
    if found:
        what += f", the largest {100 * largest:.0f}% of the rows"
    return (
        f"HDBSCAN on {space} (min_cluster_size={min_cluster_size}, "
        f"cluster_selection_method='{method}') left {what}. For more, smaller "
        f"clusters try {'; or '.join(steps)}."
    )


class NoiseVote:
    """The vote of the clustered training rows for a noise row's cluster.

    A noise row's ``k`` most similar clustered rows (kernel top-k in the input
    space) vote with their similarity; the strength of the winner is the mean
    similarity mass behind it. :meth:`cap` moves the strongest noise rows of
    the training set until at most ``max_noise`` of them is noise and keeps the
    weakest strength that moved a row: :meth:`join` moves a new noise point
    when its vote is at least as strong, so the training rows are predicted as
    they were labelled.
    """

    def __init__(
        self,
        X: npt.NDArray[np.float32],
        labels: npt.NDArray[np.intp],
        k: int,
    ) -> None:
        self.X = X
        self.labels = labels
        self.n_clusters = int(labels.max()) + 1
        self.k = min(k, labels.size)
        self.threshold = np.inf

    def vote(
        self, X: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """The winning cluster of each row of ``X`` and its strength."""
        nn = top_k(X, self.X, self.k)
        neighbour_labels = self.labels[nn.indices]
        weights = np.maximum(nn.scores.astype(np.float64), 0.0)
        votes = np.zeros((X.shape[0], self.n_clusters))
        rows = np.repeat(np.arange(X.shape[0]), self.k)
        np.add.at(votes, (rows, neighbour_labels.ravel()), weights.ravel())
        return votes.argmax(axis=1).astype(np.intp), votes.max(axis=1) / self.k

    def cap(
        self,
        X_noise: npt.NDArray[np.float32],
        excess: int,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Which of the noise rows move (positions) and to which cluster."""
        best, strength = self.vote(X_noise)
        move = np.argsort(-strength, kind="stable")[:excess]
        self.threshold = float(strength[move[-1]])
        return move, best[move]

    def join(
        self, X_noise: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
        """Which new noise rows join a cluster (mask), and which cluster."""
        best, strength = self.vote(X_noise)
        return strength >= self.threshold, best


class CentreRescue:
    """Noise rows that sit inside a cluster, judged in the input space.

    HDBSCAN judges density in the reduced layout, where a row between two
    groups, or one the layout placed badly, is left as noise although the
    input vectors put it inside a cluster. Each cluster gets its centre (the
    unit mean direction of its HDBSCAN members) and a bar: the ``quantile`` of
    its members' similarity to that centre (0: the least similar member). A
    noise row joins the cluster whose centre is most similar to it when it
    reaches that cluster's bar *and* the vote of its ``k`` most similar
    clustered rows (:class:`NoiseVote`) names the same cluster: two readings
    of the input space agree. The centres, bars and voters are kept, so
    :meth:`join` applies the same rule to new rows (and to the training rows
    in ``predict``).
    """

    def __init__(
        self,
        X: npt.NDArray[np.float32],
        labels: npt.NDArray[np.intp],
        members: npt.NDArray[np.bool_],
        k: int,
        quantile: float = RESCUE_QUANTILE,
    ) -> None:
        n_clusters = int(labels.max()) + 1
        rows = np.flatnonzero(members & (labels >= 0))
        self.centres = group_mean_direction(X[rows], labels[rows], n_clusters)
        own = pair_dots(X[rows], self.centres[labels[rows]]).astype(np.float64)
        self.bars = np.full(n_clusters, np.inf)
        order = np.argsort(labels[rows], kind="stable")
        bounds = np.searchsorted(labels[rows][order], np.arange(n_clusters + 1))
        for c in range(n_clusters):
            sims = own[order[bounds[c] : bounds[c + 1]]]
            if sims.size:
                self.bars[c] = np.quantile(sims, quantile, method="lower")
        clustered = np.flatnonzero(labels >= 0)
        self.vote = NoiseVote(X[clustered], labels[clustered], k)

    def join(
        self, X_noise: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
        """Which rows join a cluster (mask), and which cluster (the nearest)."""
        nearest = top_k(X_noise, self.centres, 1)
        best = nearest.indices[:, 0].astype(np.intp)
        close = nearest.scores[:, 0] >= self.bars[best]
        voted, _ = self.vote.vote(X_noise)
        return close & (voted == best), best


def assign_by_membership(
    model: Any,
    Z: npt.NDArray[np.float32],
    labels: npt.NDArray[np.intp],
    probabilities: npt.NDArray[np.float64],
    n_clusters: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Each noise row to its most likely cluster (HDBSCAN soft membership)."""
    noise = labels < 0
    if n_clusters < 1 or not noise.any():
        return labels, probabilities
    with np.errstate(divide="ignore", invalid="ignore"):
        membership = hdbscan.membership_vector(model, Z[noise].astype(np.float64))
    membership = np.nan_to_num(np.atleast_2d(membership)).reshape(
        noise.sum(), n_clusters
    )
    labels, probabilities = labels.copy(), probabilities.copy()
    labels[noise] = membership.argmax(axis=1)
    probabilities[noise] = membership.max(axis=1)
    return labels, probabilities
