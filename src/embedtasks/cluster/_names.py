"""What :class:`~embedtasks.EmbeddingClusterer` shows: keywords, names, comparison, map.

Kept apart from the estimator (which fits) so that each stays readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

#: Tokens that are pieces of addresses, never topics ("www, http, org").
_URL_TOKENS = frozenset(
    "http https www com org net html htm php asp io edu gov co uk de amp nbsp "
    "href src url".split()
)
_URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+", re.IGNORECASE)
#: A keyword found in more than this share of the clusters names none of them.
_MAX_CLUSTER_SHARE = 0.5
#: A bigram replaces its words when it holds this share of their occurrences.
_BIGRAM_KEEP = 0.6


def ctfidf_keywords(
    texts: list[str],
    labels: npt.NDArray[np.intp],
    n_clusters: int,
    n_keywords: int,
    stop_words: Any,
) -> list[list[str]]:
    """Top c-TF-IDF terms per cluster (BERTopic's class-based TF-IDF).

    URLs and e-mail addresses are removed from the texts first, and address
    fragments ("www", "http", "org") are never keywords. With 4 or more clusters,
    a term found in more than half of the clusters is dropped (it names none of
    them), and so is a phrase holding such a term. Two-word phrases are
    candidates too; one replaces a word of it that mostly occurs inside it
    ("credit card", not "credit" and "card").
    """
    from sklearn.feature_extraction.text import CountVectorizer

    member = np.flatnonzero(labels >= 0)
    empty: list[list[str]] = [[] for _ in range(n_clusters)]
    if member.size == 0:
        return empty
    docs = [_URL.sub(" ", texts[i]) for i in member]
    vectorizer = CountVectorizer(
        stop_words=stop_words,
        ngram_range=(1, 2),
        min_df=2 if member.size >= 1_000 else 1,
        token_pattern=r"(?u)\b[^\W\d_][\w'-]*[^\W_]\b|\b[^\W\d_]\b",
    )
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError:  # empty vocabulary: only stop words, digits or punctuation
        return empty
    onehot = sparse.csr_matrix(
        (np.ones(member.size), (labels[member], np.arange(member.size))),
        shape=(n_clusters, member.size),
    )
    per_cluster = np.asarray((onehot @ counts).todense(), dtype=np.float64)
    vocab = vectorizer.get_feature_names_out()
    words = [str(v).split() for v in vocab]
    banned = np.array([any(w in _URL_TOKENS for w in ws) for ws in words], dtype=bool)
    if n_clusters >= 4:
        common = (per_cluster > 0).mean(axis=0) > _MAX_CLUSTER_SHARE
        common_words = {str(v) for v, c in zip(vocab, common, strict=True) if c}
        banned |= common
        banned |= np.array([any(w in common_words for w in ws) for ws in words])
    unigram_total = per_cluster[:, [len(ws) == 1 for ws in words]].sum(axis=1)
    tf = per_cluster / np.maximum(unigram_total, 1)[:, None]
    idf = np.log1p(unigram_total.mean() / np.maximum(per_cluster.sum(axis=0), 1))
    score = tf * idf
    score[:, banned] = 0.0
    index = {str(v): j for j, v in enumerate(vocab)}
    keywords = []
    for row, count in zip(score, per_cluster, strict=True):
        keywords.append(_pick(row, count, vocab, words, index, n_keywords))
    return keywords


def _pick(
    row: np.ndarray,
    count: np.ndarray,
    vocab: np.ndarray,
    words: list[list[str]],
    index: dict[str, int],
    n_keywords: int,
) -> list[str]:
    chosen: list[str] = []
    covered: set[str] = set()
    for j in np.argsort(-row, kind="stable"):
        if len(chosen) >= n_keywords or row[j] <= 0:
            break
        term, parts = str(vocab[j]), words[j]
        if len(parts) == 2:
            # a phrase, when its words mostly come together in this cluster
            inside = [
                p for p in parts if count[j] >= _BIGRAM_KEEP * count[index.get(p, j)]
            ]
            if not inside:
                continue
            chosen = [c for c in chosen if c not in inside]
            covered.update(inside)
        elif term in covered:
            continue
        chosen.append(term)
    return chosen[:n_keywords]


def topic_names(
    n_clusters: int, keywords: list[list[str]] | None, n_words: int = 3
) -> list[str]:
    """``"3_rust_cargo_crate"`` from keywords, ``"cluster_3"`` without."""
    if keywords is None:
        return [f"cluster_{c}" for c in range(n_clusters)]
    names = []
    for c, words in enumerate(keywords):
        tokens = [w.replace(" ", "-") for w in _distinct(words, n_words)]
        names.append("_".join([str(c), *tokens]) if tokens else f"cluster_{c}")
    return names


def _distinct(keywords: list[str], n: int) -> list[str]:
    """The first ``n`` keywords that add a word, a phrase replacing its own words.

    ``["identity", "verify identity", "identity check", "id"]`` gives
    ``["verify identity", "identity check", "id"]``: every keyword of a name adds
    a word, and a word alone never repeats a phrase's.

    >>> _distinct(["top-up", "top-up cancelled", "reverted", "top-up failed"], 3)
    ['top-up cancelled', 'reverted', 'top-up failed']
    """
    chosen: list[str] = []
    for keyword in keywords:
        words = set(keyword.split())
        if words <= {w for c in chosen for w in c.split()}:
            continue  # every word already in the name
        chosen = [c for c in chosen if not set(c.split()) <= words]
        chosen.append(keyword)
        if len(chosen) == n:
            break
    return chosen


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
    table.insert(0, "name", [names[k] if k >= 0 else "-1_noise" for k in counts.index])
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
