"""Two levels: coarse topics made by merging the fine clusters.

The clusters of :class:`~embedtasks.EmbeddingClusterer` are merged bottom-up by
Ward's rule on their centres, each centre weighted by its cluster's rows: the
next merge is the pair of topics whose union adds the least to the rows'
squared distance from their topic's mean direction, ``W_a W_b / (W_a + W_b)
|m_a - m_b|^2``. Every term comes from one matrix of centre similarities (the
kernel's :func:`~embedtasks._kernel.similarity`), summed as topics merge. Ward
keeps topics of comparable weight (average linkage on the same centres, cut at
the same number, grew one topic of 78% of the Banking77 rows and 62% of Brown's)
and its topics match the true classes better than KMeans with as many clusters
on both corpora (``benchmarks/bench_topics.py``).

The number of topics, unless given, is read from the merge costs: a balanced
two-level tree of ``k`` clusters has about ``sqrt(k)`` topics, so the cut is
looked for between ``sqrt(k) / 2`` and ``2 sqrt(k)`` topics (at least 2, at most
``k - 1``), where the next merge costs the most relative to the one before it
(the merge that would join two topics that stand apart).

Topics are named as clusters are: c-TF-IDF keywords over the rows of each topic
(:func:`~embedtasks._keywords.ctfidf_keywords`), two to four words
(:func:`~embedtasks._keywords.topic_names`), or by a namer such as
:class:`~embedtasks.ChatNamer`.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import similarity
from embedtasks._keywords import ctfidf_keywords, topic_names
from embedtasks._validation import InvalidParameterError, check_is_fitted
from embedtasks.cluster._names import names_from

__all__ = ["MergeTree", "TopicsMixin", "auto_n_topics", "cut_tree", "merge_tree"]

Idx = npt.NDArray[np.intp]


class MergeTree(NamedTuple):
    """The merges of :func:`merge_tree`, cheapest first.

    ``merges[m] = (a, b)``: step ``m`` joins the topic holding cluster ``b``
    into the one holding cluster ``a``; ``costs[m]``: what it adds to the rows'
    squared distance from their topic's mean direction (non-decreasing);
    ``sizes``: the rows of each cluster.
    """

    merges: npt.NDArray[np.intp]
    costs: npt.NDArray[np.float64]
    sizes: npt.NDArray[np.int64]


def merge_tree(centres: npt.ArrayLike, sizes: npt.ArrayLike) -> MergeTree:
    """Ward's merges of the clusters, centres weighted by their rows.

    Parameters
    ----------
    centres : array-like of shape (n_clusters, n_features)
        Unit mean direction of each cluster.
    sizes : array-like of int of shape (n_clusters,)
        Rows of each cluster (a cluster with none counts as one row).

    Returns
    -------
    MergeTree

    Examples
    --------
    >>> tree = merge_tree([[1, 0], [0.96, 0.28], [0, 1]], [10, 10, 10])
    >>> tree.merges.tolist(), tree.costs.round(2).tolist()
    ([[0, 1], [0, 2]], [0.4, 11.33])
    """
    S = similarity(centres, centres).astype(np.float64)
    w = np.maximum(np.asarray(sizes, dtype=np.float64), 1.0)
    k = S.shape[0]
    # G[a, b]: sum over clusters i of a and j of b of w_i w_j s_ij; W: rows.
    G = S * w[:, None] * w[None, :]
    W = w.copy()
    cost = _ward(G, W, np.arange(k))
    np.fill_diagonal(cost, np.inf)
    nearest = np.argmin(cost, axis=1) if k else np.empty(0, np.intp)
    best = cost[np.arange(k), nearest] if k else np.empty(0)
    merges = np.empty((max(k - 1, 0), 2), dtype=np.intp)
    costs = np.empty(max(k - 1, 0))
    for m in range(k - 1):
        a = int(np.argmin(best))  # the cheapest pair; ties: lower rows
        b = int(nearest[a])
        a, b = min(a, b), max(a, b)
        merges[m], costs[m] = (a, b), max(cost[a, b], 0.0)
        G[a] += G[b]
        G[:, a] += G[:, b]
        W[a] += W[b]
        cost[b], cost[:, b], best[b] = np.inf, np.inf, np.inf
        live = np.flatnonzero(np.isfinite(best))
        row = _ward(G, W, live, a)
        row[live == a] = np.inf
        cost[a, live], cost[live, a] = row, row
        # rows whose nearest topic changed or was merged look again; the
        # others only compare with the new topic (ties: the lower topic)
        stale = live[(nearest[live] == a) | (nearest[live] == b) | (live == a)]
        if stale.size:
            nearest[stale] = np.argmin(cost[stale], axis=1)
            best[stale] = cost[stale, nearest[stale]]
        closer = (cost[live, a] < best[live]) | (
            (cost[live, a] == best[live]) & (a < nearest[live])
        )
        nearest[live[closer]] = a
        best[live[closer]] = cost[live[closer], a]
    return MergeTree(
        merges, np.maximum.accumulate(costs), np.asarray(sizes, dtype=np.int64)
    )


def _ward(
    G: npt.NDArray[np.float64],
    W: npt.NDArray[np.float64],
    rows: Idx,
    col: int | None = None,
) -> npt.NDArray[np.float64]:
    """Ward's cost of joining topics: ``rows`` x ``rows``, or ``rows`` x ``col``."""
    cols = rows if col is None else np.array([col])
    cross = G[np.ix_(rows, cols)] / np.outer(W[rows], W[cols])
    spread = np.diag(G) / W**2  # |m_a|^2 of each topic's weighted mean
    gap = spread[rows][:, None] + spread[cols][None, :] - 2 * cross
    weight = np.outer(W[rows], W[cols]) / (W[rows][:, None] + W[cols][None, :])
    out = np.maximum(weight * gap, 0.0)
    return out if col is None else out[:, 0]


def auto_n_topics(costs: npt.ArrayLike, n_clusters: int) -> int:
    """The number of topics read from the merge costs (module docstring).

    Examples
    --------
    >>> auto_n_topics([0.1, 0.1, 0.2, 0.2, 5.0], 6)  # two groups of three
    2
    """
    k = int(n_clusters)
    if k <= 2:
        return k
    costs = np.asarray(costs, dtype=np.float64)
    low = max(2, math.ceil(math.sqrt(k) / 2))
    high = min(k - 1, max(low, math.floor(2 * math.sqrt(k))))
    floor = 1e-12 * max(float(costs.max()), 1e-300)
    best_t, best_jump = low, -1.0
    for t in range(low, high + 1):
        # t topics: k - t merges done; the next one costs costs[k - t]
        jump = costs[k - t] / max(costs[k - t - 1], floor)
        if jump > best_jump:
            best_t, best_jump = t, jump
    return best_t


def cut_tree(tree: MergeTree, n_topics: int) -> Idx:
    """Each cluster's topic after merging down to ``n_topics``.

    Topics are numbered by decreasing rows (ties: the lower first cluster), so
    topic 0 is the largest, as clusters are.

    Examples
    --------
    >>> tree = merge_tree([[1, 0], [0, 1], [0.96, 0.28]], [5, 10, 5])
    >>> cut_tree(tree, 2).tolist()
    [0, 1, 0]
    """
    k = tree.sizes.size
    owner = np.arange(k)
    for a, b in tree.merges[: k - n_topics]:
        owner[owner == owner[b]] = owner[a]
    roots, group = np.unique(owner, return_inverse=True)
    rows = np.bincount(group, weights=tree.sizes, minlength=roots.size)
    first = np.full(roots.size, k)
    np.minimum.at(first, group, np.arange(k))
    rank = np.empty(roots.size, dtype=np.intp)
    rank[np.lexsort((first, -rows))] = np.arange(roots.size)
    return rank[group.ravel()]


def _check_n_topics(n_topics: Any, n_clusters: int, method: str) -> int:
    """``n_topics`` resolved against the fitted clusters, or a clear error."""
    where = f"EmbeddingClusterer.{method}"
    if isinstance(n_topics, str) and n_topics == "auto":
        return -1
    if not isinstance(n_topics, Integral) or isinstance(n_topics, bool | np.bool_):
        raise InvalidParameterError(
            f"{where}: n_topics must be 'auto' or an int, got {n_topics!r} "
            f"({type(n_topics).__name__}). Pass a whole number of topics between 1 "
            f"and the {n_clusters} fitted clusters, or 'auto'."
        )
    if n_clusters == 0:
        raise InvalidParameterError(
            f"{where}: n_topics={n_topics} but the clusterer found no clusters "
            "(every row is noise): there is nothing to merge. Lower "
            "min_cluster_size, or pass n_clusters, and fit again."
        )
    n_topics = int(n_topics)
    if not 1 <= n_topics <= n_clusters:
        raise InvalidParameterError(
            f"{where}: n_topics={n_topics} is out of range: topics merge the "
            f"{n_clusters} fitted clusters, so pass 1 <= n_topics <= {n_clusters} "
            "(n_clusters_), or 'auto'."
        )
    return n_topics


class TopicsMixin:
    """The coarse level of :class:`~embedtasks.EmbeddingClusterer`: topics.

    Kept apart from the estimator (which fits the clusters) so that each stays
    readable; everything here reads the fitted clusters only.
    """

    def topics(
        self,
        texts=None,
        *,
        n_topics="auto",
        n_keywords=8,
        stop_words="english",
        namer=None,
    ):
        """Coarse topics: the fitted clusters merged, one row per topic.

        Clusters are merged bottom-up by Ward's rule on their centres
        (:attr:`cluster_centers_`, weighted by their rows): each merge joins the
        two topics whose union keeps the rows closest to their topic's mean
        direction, so topics stay of comparable size. Noise rows stay noise.

        Parameters
        ----------
        texts : sequence of str, optional
            The texts of the training rows, in the order given to :meth:`fit`:
            adds each topic's c-TF-IDF ``keywords`` and representative texts,
            and names topics by their keywords (as :meth:`summary` names
            clusters).
        n_topics : int or "auto", default="auto"
            How many topics, from 1 to :attr:`n_clusters_`. ``"auto"`` reads it
            from the merge costs: between ``sqrt(k) / 2`` and ``2 sqrt(k)``
            topics for ``k`` clusters (at least 2, fewer than ``k``), the cut
            before the merge that costs the most relative to the one before
            it. On Banking77 test (84 clusters) that gives 6 topics, on Brown
            paragraphs (37 clusters) 9 (``benchmarks/bench_topics.py``).
        n_keywords : int, default=8
            Keywords per topic.
        stop_words : "english", list of str or None, default="english"
            Words never used as keywords.
        namer : object with a ``name(clusters)`` method, optional
            Names the topics instead of their keywords (e.g.
            :class:`~embedtasks.ChatNamer`); it gets one dict per topic as
            :meth:`summary` gives it per cluster. Needs ``texts``.

        Returns
        -------
        pandas.DataFrame
            Columns ``topic`` (``0 ..``, largest first), ``name``, ``size``,
            ``share`` (of all training rows), ``clusters`` (the fine clusters
            it holds, largest first), ``representatives`` (row indices: the
            most central row of each of its largest clusters) and, with
            ``texts``, ``representative_texts`` and ``keywords``. When there
            is noise, a last row ``topic == -1`` named ``"noise"`` counts it.

        See Also
        --------
        topic_labels : The topic of each row.

        Examples
        --------
        >>> import numpy as np
        >>> from embedtasks import EmbeddingClusterer
        >>> rng = np.random.default_rng(0)
        >>> directions = np.eye(8)[[0, 0, 0, 1, 1, 1]] + 0.6 * np.eye(8)[2:8]
        >>> X = np.repeat(directions, 20, axis=0) + 0.02 * rng.normal(size=(120, 8))
        >>> clusterer = EmbeddingClusterer(n_clusters=6, reduction="pca",
        ...                                random_state=0, cache_dir=None).fit(X)
        >>> texts = ["cats purr"] * 60 + ["tax forms"] * 60
        >>> clusterer.topics(texts)[["topic", "name", "size", "clusters"]]
           topic       name  size   clusters
        0      0  cats purr    60  [0, 1, 2]
        1      1  tax forms    60  [3, 4, 5]
        >>> clusterer.topic_labels()[[0, 59, 60, 119]].tolist()
        [0, 0, 1, 1]
        """
        check_is_fitted(self)
        texts = self._check_texts(texts, "topics", namer)  # type: ignore[attr-defined]
        of_cluster = self._cluster_topics(n_topics, "topics")
        return topics_frame(
            self.labels_,  # type: ignore[attr-defined]
            of_cluster,
            self.representatives_,  # type: ignore[attr-defined]
            texts,
            n_keywords=n_keywords,
            stop_words=stop_words,
            n_examples=self.n_representatives,  # type: ignore[attr-defined]
            namer=namer,
        )

    def topic_labels(self, X=None, *, n_topics="auto"):
        """The topic of each row: the training rows, or new embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), optional
            New embeddings, placed by :meth:`predict` first; ``None``: the
            training rows (:attr:`labels_`).
        n_topics : int or "auto", default="auto"
            As in :meth:`topics` (the same value gives the same topics).

        Returns
        -------
        ndarray of shape (n_samples,)
            The topic of each row (the ``topic`` column of :meth:`topics`);
            ``-1`` for noise.
        """
        check_is_fitted(self)
        of_cluster = self._cluster_topics(n_topics, "topic_labels")
        if X is None:
            labels = self.labels_  # type: ignore[attr-defined]
        else:
            labels = self.predict(X)  # type: ignore[attr-defined]
        return np.append(of_cluster, -1)[labels]

    def _cluster_topics(self, n_topics: Any, method: str) -> Idx:
        """The topic of each fitted cluster."""
        k = int(self.n_clusters_)  # type: ignore[attr-defined]
        chosen = _check_n_topics(n_topics, k, method)
        if k == 0:
            return np.empty(0, dtype=np.intp)
        labels = self.labels_  # type: ignore[attr-defined]
        sizes = np.bincount(labels[labels >= 0], minlength=k)
        tree = merge_tree(self.cluster_centers_, sizes)  # type: ignore[attr-defined]
        if chosen < 0:
            chosen = auto_n_topics(tree.costs, k)
        return cut_tree(tree, chosen)

    def _with_topics(self, frame: Any, n_topics: Any) -> Any:
        """:meth:`summary`'s table with each cluster's ``topic`` (noise: -1)."""
        if n_topics is None:
            return frame
        of_cluster = np.append(self._cluster_topics(n_topics, "summary"), -1)
        frame.insert(1, "topic", of_cluster[frame["cluster"].to_numpy()])
        return frame


def topics_frame(
    labels: Idx,
    of_cluster: Idx,
    representatives: list[Idx],
    texts: list[str] | None,
    *,
    n_keywords: int,
    stop_words: Any,
    n_examples: int,
    namer: Any = None,
) -> Any:
    """The table of :meth:`TopicsMixin.topics`, one row per topic."""
    import pandas as pd

    n_topics = int(of_cluster.max()) + 1 if of_cluster.size else 0
    topic_of = np.append(of_cluster, -1)[labels]
    clustered = topic_of >= 0
    sizes = np.bincount(topic_of[clustered], minlength=n_topics)
    cluster_sizes = np.bincount(labels[labels >= 0], minlength=of_cluster.size)
    members = [
        [int(c) for c in np.flatnonzero(of_cluster == t)] for t in range(n_topics)
    ]
    members = [sorted(m, key=lambda c: (-cluster_sizes[c], c)) for m in members]
    rows = [
        [int(representatives[c][0]) for c in m if representatives[c].size][:n_examples]
        for m in members
    ]
    ids = list(range(n_topics))
    noise = np.flatnonzero(~clustered)
    if noise.size:
        ids.append(-1)
        sizes = np.append(sizes, noise.size)
        members.append([-1])
        rows.append(noise[:n_examples].tolist())
    keywords = None
    if texts is not None:
        keywords = ctfidf_keywords(texts, topic_of, n_topics, n_keywords, stop_words)
    names = [  # "topic 3" where there are no keywords
        f"topic {t}" if name == f"cluster {t}" else name
        for t, name in enumerate(topic_names(n_topics, keywords))
    ]
    if namer is not None and texts is not None and keywords is not None:
        names = names_from(namer, names, keywords, texts, rows, sizes)
    frame = pd.DataFrame(
        {
            "topic": ids,
            "name": names + ["noise"] * bool(noise.size),
            "size": sizes,
            "share": sizes / max(labels.size, 1),
            "clusters": members,
            "representatives": rows,
        }
    )
    if texts is not None and keywords is not None:
        frame["representative_texts"] = [[texts[i] for i in r] for r in rows]
        frame["keywords"] = keywords + [[]] * bool(noise.size)
    return frame
