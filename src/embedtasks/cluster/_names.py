"""What :class:`~embedtasks.EmbeddingClusterer` shows: summary, comparison, map.

Also each cluster's centre and representatives (:attr:`cluster_centers_`,
:attr:`representatives_`), which the summary lists.

Kept apart from the estimator (which fits) so that each stays readable; the
keywords and names come from :mod:`embedtasks._keywords`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embedtasks._kernel import group_sum, l2_normalize, mmr_rerank, similarity
from embedtasks._keywords import ctfidf_keywords, topic_names

#: Weight of novelty (vs closeness to the centre) when choosing representatives.
_MMR_DIVERSITY = 0.3


def summary_frame(
    labels: npt.NDArray[np.intp],
    probabilities: npt.NDArray[np.float64],
    representatives: list[npt.NDArray[np.intp]],
    texts: list[str] | None,
    *,
    n_keywords: int,
    stop_words: Any,
    n_noise_examples: int,
    namer: Any = None,
) -> Any:
    """The table of :meth:`EmbeddingClusterer.summary`, one row per cluster."""
    import pandas as pd

    n = labels.size
    n_found = len(representatives)
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered], minlength=n_found)
    prob_sums = np.bincount(
        labels[clustered], weights=probabilities[clustered], minlength=n_found
    )
    noise = np.flatnonzero(~clustered)
    has_noise = noise.size > 0
    cluster_ids = np.arange(n_found)
    rows = [r.tolist() for r in representatives]
    if has_noise:
        cluster_ids = np.append(cluster_ids, -1)
        sizes = np.append(sizes, noise.size)
        prob_sums = np.append(prob_sums, 0.0)
        rows.append(noise[:n_noise_examples].tolist())
    keywords = None
    if texts is not None:
        keywords = ctfidf_keywords(texts, labels, n_found, n_keywords, stop_words)
    names = topic_names(n_found, keywords)
    keyword_names = list(names)
    if namer is not None and texts is not None and keywords is not None:
        names = names_from(namer, names, keywords, texts, rows, sizes)
    frame = pd.DataFrame(
        {
            "cluster": cluster_ids,
            "name": names + ["noise"] * has_noise,
            "size": sizes,
            "share": sizes / n,
            "mean_probability": prob_sums / np.maximum(sizes, 1),
            "representatives": rows,
        }
    )
    if texts is None or keywords is None:
        return frame
    frame["representative_texts"] = [[texts[i] for i in r] for r in rows]
    frame["keywords"] = keywords + [[]] * has_noise
    if namer is not None:
        frame["keyword_name"] = keyword_names + ["noise"] * has_noise
    return frame


def names_from(
    namer: Any,
    names: list[str],
    keywords: list[list[str]],
    texts: list[str],
    rows: list[list[int]],
    sizes: npt.NDArray[np.integer],
) -> list[str]:
    """A namer's names for groups (clusters or topics), largest first.

    It gets one dict per group: ``name`` (the keyword name), ``keywords``,
    ``texts`` (the representative rows' texts) and ``size``.
    """
    groups = [
        {
            "name": names[g],
            "keywords": keywords[g],
            "texts": [texts[i] for i in rows[g]],
            "size": int(sizes[g]),
        }
        for g in range(len(names))
    ]
    return [str(name) for name in namer.name(groups)]


@dataclass(frozen=True)
class ClusterComparison:
    """How clusters line up with an existing label column.

    Attributes
    ----------
    purity : float
        Share of clustered rows (noise left out) whose label is the most common
        label of their cluster; 1.0 when every cluster holds one label.
    v_measure : float
        V-measure over all rows, noise counted as one more cluster (so noise
        lowers it); harmonic mean of ``homogeneity`` and ``completeness``.
    homogeneity : float
        1.0 when each cluster holds members of a single label.
    completeness : float
        1.0 when all members of a label fall in the same cluster.
    adjusted_rand : float
        Adjusted Rand index over all rows (noise as one cluster).
    noise_share : float
        Share of rows labelled ``-1``.
    table : pandas.DataFrame
        Rows = clusters (the noise row ``-1`` last, when present), columns = labels,
        values = row counts; plus ``size`` and ``top_label`` (the most common
        label of the cluster) and ``top_share`` (its share of the cluster).
    """

    purity: float
    v_measure: float
    homogeneity: float
    completeness: float
    adjusted_rand: float
    noise_share: float
    table: Any

    def __repr__(self) -> str:
        return (
            f"ClusterComparison(purity={self.purity:.3f}, "
            f"v_measure={self.v_measure:.3f}, homogeneity={self.homogeneity:.3f}, "
            f"completeness={self.completeness:.3f}, "
            f"adjusted_rand={self.adjusted_rand:.3f}, "
            f"noise_share={self.noise_share:.3f}, table={self.table.shape[0]} rows)"
        )


def compare_labels(
    labels: npt.NDArray[np.intp], y: Any, names: list[str]
) -> ClusterComparison:
    """Purity, V-measure and the cluster-by-label table of ``labels`` against ``y``."""
    import pandas as pd
    from sklearn.metrics import (
        adjusted_rand_score,
        homogeneity_completeness_v_measure,
    )

    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != labels.shape[0]:
        raise ValueError(
            f"EmbeddingClusterer.compare got y of shape {y.shape} but was fitted on "
            f"{labels.shape[0]} rows. Pass one label per training row, in the order "
            "given to fit()."
        )
    h, c, v = homogeneity_completeness_v_measure(y, labels)
    counts = pd.crosstab(pd.Series(labels, name="cluster"), pd.Series(y, name="label"))
    order = [k for k in counts.index if k >= 0] + [k for k in counts.index if k < 0]
    counts = counts.loc[order]
    clustered = counts.loc[[k for k in counts.index if k >= 0]]
    n_clustered = int(clustered.to_numpy().sum())
    purity = clustered.max(axis=1).sum() / n_clustered if n_clustered else 0.0
    table = counts.copy()
    table.insert(0, "size", counts.sum(axis=1))
    table.insert(1, "top_label", counts.idxmax(axis=1))
    table.insert(2, "top_share", counts.max(axis=1) / counts.sum(axis=1))
    table.insert(0, "name", [names[k] if k >= 0 else "noise" for k in counts.index])
    return ClusterComparison(
        purity=float(purity),
        v_measure=float(v),
        homogeneity=float(h),
        completeness=float(c),
        adjusted_rand=float(adjusted_rand_score(y, labels)),
        noise_share=float((labels < 0).mean()),
        table=table,
    )


def plot_map(
    layout: npt.NDArray[np.float32],
    labels: npt.NDArray[np.intp],
    names: list[str],
    *,
    ax: Any = None,
    n_labels: int = 60,
    point_size: float | None = None,
    title: str | None = None,
) -> Any:
    """Scatter the 2-D layout: clusters coloured and named, noise grey."""
    from embedtasks._optional import import_optional

    plt = import_optional(
        "matplotlib.pyplot", extra="plot", purpose="EmbeddingClusterer.plot_map()"
    )
    import matplotlib.patheffects as effects

    if ax is None:
        _, ax = plt.subplots(figsize=(10, 8))
    n = labels.size
    size = point_size if point_size is not None else float(np.clip(6e4 / n, 2, 30))
    noise = labels < 0
    ax.scatter(
        layout[noise, 0], layout[noise, 1], s=size * 0.6, c="#c8c8c8",
        alpha=0.5, linewidths=0, label="noise", rasterized=n > 20_000,
    )  # fmt: skip
    n_clusters = len(names)
    colours = _colours(n_clusters)
    clustered = ~noise
    ax.scatter(
        layout[clustered, 0], layout[clustered, 1], s=size,
        c=colours[labels[clustered]], alpha=0.8, linewidths=0,
        rasterized=n > 20_000,
    )  # fmt: skip
    # Name the largest clusters at their median point (labels are ordered by size).
    for c in range(min(n_clusters, n_labels)):
        members = layout[labels == c]
        if members.shape[0] == 0:
            continue
        x, y = np.median(members, axis=0)
        text = ax.annotate(
            _short(names[c]), (x, y), ha="center", va="center",
            fontsize=8 if n_clusters <= 30 else 6, color="black",
        )  # fmt: skip
        text.set_path_effects([effects.withStroke(linewidth=2.5, foreground="white")])
    ax.set_xticks([])
    ax.set_yticks([])
    share = 100 * noise.mean()
    ax.set_title(
        title
        if title is not None
        else f"{n_clusters} clusters, {share:.0f}% noise (grey), {n:,} rows"
    )
    return ax


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _colours(n: int) -> np.ndarray:
    """``n`` distinguishable colours: tab20 first, then evenly spaced hues."""
    from matplotlib import colormaps
    from matplotlib.colors import hsv_to_rgb

    base = np.asarray(colormaps["tab20"].colors)  # type: ignore[attr-defined]
    if n <= len(base):
        return base[: max(n, 1)]
    golden = 0.618033988749895
    hues = (np.arange(n - len(base)) * golden) % 1.0
    sat = 0.55 + 0.35 * (np.arange(n - len(base)) % 3) / 2
    val = 0.95 - 0.25 * (np.arange(n - len(base)) % 2)
    extra = hsv_to_rgb(np.stack([hues, sat, val], axis=1))
    return np.vstack([base, extra])


def cluster_centres(
    X: npt.NDArray[np.float32],
    labels: npt.NDArray[np.intp],
    weights: npt.NDArray[np.float64],
    n_clusters: int,
) -> npt.NDArray[np.float32]:
    """Unit mean direction of each cluster (members weighted by probability)."""
    member = np.flatnonzero(labels >= 0)
    w = np.where(weights[member] > 0, weights[member], 1e-6)
    sums = group_sum(X[member], labels[member], n_clusters, weights=w)
    return l2_normalize(sums)


def representatives(
    X: npt.NDArray[np.float32],
    rows: npt.NDArray[np.intp],
    centre: npt.NDArray[np.float32],
    n: int,
) -> npt.NDArray[np.intp]:
    """``n`` of ``rows`` close to ``centre``, diversified by MMR."""
    if rows.size == 0:
        return rows.astype(np.intp)
    relevance = similarity(X[rows], centre[None, :])[:, 0]
    order = np.argsort(-relevance, kind="stable")
    pool = rows[order[: max(10 * n, 50)]]
    return mmr_rerank(centre, pool, X, n, diversity=_MMR_DIVERSITY).astype(np.intp)
