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
#: A term no cluster uses at this multiple of its corpus-wide document rate is
#: boilerplate (it is as common everywhere).
_MIN_LIFT = 2.0
#: Weight of relevance (vs novelty) when keywords are picked by MMR.
_MMR_RELEVANCE = 0.7
#: A word in more than this share of the names is left out of them.
_MAX_NAME_SHARE = 0.5
#: Stems that agree on this many first letters count as one word in a name.
_STEM_CHARS = 6
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "s")


def ctfidf_keywords(
    texts: list[str],
    labels: npt.NDArray[np.intp],
    n_clusters: int,
    n_keywords: int,
    stop_words: Any,
) -> list[list[str]]:
    """Top c-TF-IDF terms per cluster (class-based TF-IDF), diverse by MMR.

    URLs and e-mail addresses are removed from the texts first, and address
    fragments ("www", "http", "org") are never keywords. Corpus-wide
    boilerplate is left out: with 4 or more clusters, a term found in more than
    half of the clusters, or one no cluster uses at even twice its corpus-wide
    rate of documents (a signature, a template line), names none of them, and
    neither does a phrase holding such a term. Two-word phrases are candidates
    too; one replaces a word of it that mostly occurs inside it ("credit card",
    not "credit" and "card"). The keywords of a cluster are then chosen by
    maximal marginal relevance: a term that occurs in the same documents of the
    cluster as one already chosen (a synonym, a fixed pair) waits its turn.
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
        counts = vectorizer.fit_transform(docs).tocsc()
    except ValueError:  # empty vocabulary: only stop words, digits or punctuation
        return empty
    member_labels = labels[member]
    onehot = sparse.csr_matrix(
        (np.ones(member.size), (member_labels, np.arange(member.size))),
        shape=(n_clusters, member.size),
    )
    per_cluster = np.asarray((onehot @ counts).todense(), dtype=np.float64)
    present = counts.copy()
    present.data[:] = 1.0
    doc_rate = np.asarray((onehot @ present).todense(), dtype=np.float64)
    doc_rate /= np.maximum(np.bincount(member_labels, minlength=n_clusters), 1)[:, None]
    vocab = vectorizer.get_feature_names_out()
    words = [str(v).split() for v in vocab]
    banned = np.array([any(w in _URL_TOKENS for w in ws) for ws in words], dtype=bool)
    if n_clusters >= 4:
        overall = np.asarray(present.sum(axis=0)).ravel() / member.size
        common = (per_cluster > 0).mean(axis=0) > _MAX_CLUSTER_SHARE
        common |= doc_rate.max(axis=0) < _MIN_LIFT * overall
        common_words = {str(v) for v, c in zip(vocab, common, strict=True) if c}
        banned |= common
        banned |= np.array([any(w in common_words for w in ws) for ws in words])
    unigram_total = per_cluster[:, [len(ws) == 1 for ws in words]].sum(axis=1)
    tf = per_cluster / np.maximum(unigram_total, 1)[:, None]
    idf = np.log1p(unigram_total.mean() / np.maximum(per_cluster.sum(axis=0), 1))
    score = tf * idf
    score[:, banned] = 0.0
    index = {str(v): j for j, v in enumerate(vocab)}
    order = np.argsort(member_labels, kind="stable")
    bounds = np.searchsorted(member_labels[order], np.arange(n_clusters + 1))
    keywords = []
    for c in range(n_clusters):
        terms = _pick(score[c], per_cluster[c], vocab, words, index, 3 * n_keywords)
        rows = order[bounds[c] : bounds[c + 1]]
        keywords.append(_diverse(terms, score[c], index, present[rows], n_keywords))
    return keywords


def _diverse(
    terms: list[str],
    score: np.ndarray,
    index: dict[str, int],
    present: sparse.csc_matrix,
    n_keywords: int,
) -> list[str]:
    """Maximal marginal relevance over ``terms`` (best first).

    A term's similarity to another is the cosine of the documents of the
    cluster they occur in; relevance is the c-TF-IDF score over the best one.
    """
    if len(terms) <= 1:
        return terms[:n_keywords]
    columns = present[:, [index[t] for t in terms]].toarray()
    norms = np.linalg.norm(columns, axis=0)
    gram = (columns.T @ columns) / np.maximum(np.outer(norms, norms), 1e-12)
    stems = [_stems(t) for t in terms]  # "exchange rate" repeats "exchange rates"
    lexical = np.array([[float(a.overlaps(b)) for b in stems] for a in stems])
    gram = np.maximum(gram, lexical)
    relevance = np.array([score[index[t]] for t in terms])
    relevance = relevance / max(relevance.max(), 1e-12)
    chosen = [0]
    while len(chosen) < min(n_keywords, len(terms)):
        redundancy = gram[:, chosen].max(axis=1)
        gain = _MMR_RELEVANCE * relevance - (1 - _MMR_RELEVANCE) * redundancy
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return [terms[i] for i in chosen]


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
    n_clusters: int, keywords: list[list[str]] | None, max_words: int = 4
) -> list[str]:
    """Names of two to four words from the keywords; ``"cluster 3"`` without.

    Each name takes its cluster's keywords in order while they add a word (a
    phrase replaces its own words), up to three keywords and ``max_words``
    words. With 4 or more clusters a word that would appear in more than half
    of the names is left out of them (it tells none apart); names that still
    coincide take their next keyword, then a number.

    >>> topic_names(2, [["card", "delivery time", "arrive"], ["refund", "card"]])
    ['card delivery time', 'refund card']
    """
    if keywords is None:
        return [f"cluster {c}" for c in range(n_clusters)]
    banned: set[str] = set()
    if n_clusters >= 4:
        draft = [_stems(_compose(k, max_words, set())) for k in keywords]
        seen: dict[str, int] = {}
        for stems in draft:
            for stem in stems:
                seen[stem] = seen.get(stem, 0) + 1
        banned = {w for w, n in seen.items() if n > _MAX_NAME_SHARE * n_clusters}
    names = []
    for c, words in enumerate(keywords):
        name = _compose(words, max_words, banned) or _compose(words, max_words, set())
        names.append(name or f"cluster {c}")
    return _unique(names, keywords, max_words)


def _stem(word: str) -> str:
    """``word`` without a plural or verb ending ("activating" -> "activat")."""
    word = word.lower().removesuffix("'s")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _same(a: str, b: str) -> bool:
    """Two stems of one word: equal, or (4+ letters) agreeing on 6 first letters."""
    if a == b:
        return True
    if min(len(a), len(b)) < 4:
        return False
    n = min(len(a), len(b), _STEM_CHARS)
    return a[:n] == b[:n]


class _Stems(frozenset):
    """The stems of a term; ``&`` and ``<=`` treat forms of a word as one."""

    def overlaps(self, other: frozenset[str] | set[str]) -> bool:
        return any(_same(a, b) for a in self for b in other)

    def within(self, other: frozenset[str] | set[str]) -> bool:
        return all(any(_same(a, b) for b in other) for a in self)


def _stems(term: str) -> _Stems:
    return _Stems(_stem(w) for w in term.split())


def _compose(keywords: list[str], max_words: int, banned: set[str]) -> str:
    """The first keywords that add a word, within ``max_words`` words."""
    chosen: list[str] = []
    for keyword in keywords:
        words = _stems(keyword)
        if words.overlaps(banned):
            continue
        longer = len(keyword.split())
        kept = [  # a phrase replaces its own words
            c for c in chosen if len(c.split()) >= longer or not _stems(c).within(words)
        ]
        if words.overlaps({w for c in kept for w in _stems(c)}):
            continue  # no word (or a form of it) twice in a name
        trial = kept + [keyword]
        if sum(len(c.split()) for c in trial) > max_words:
            continue
        chosen = trial
        if len(chosen) == 3 or sum(len(c.split()) for c in chosen) >= 3:
            break
    return " ".join(chosen)


def _unique(names: list[str], keywords: list[list[str]], max_words: int) -> list[str]:
    """Names made distinct: a repeated one takes a further keyword, then a number."""
    taken: dict[str, int] = {}
    out = []
    for name, words in zip(names, keywords, strict=True):
        if name in taken:
            for extra in words:
                if not _stems(extra).overlaps(_stems(name)):
                    candidate = f"{name} {extra}"
                    if (
                        candidate not in taken
                        and len(candidate.split()) <= max_words + 2
                    ):
                        name = candidate
                        break
        if name in taken:
            taken[name] += 1
            name = f"{name} ({taken[name]})"
        taken.setdefault(name, 1)
        out.append(name)
    return out


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
        clusters = [
            {
                "name": names[c],
                "keywords": keywords[c],
                "texts": [texts[i] for i in rows[c]],
                "size": int(sizes[c]),
            }
            for c in range(n_found)
        ]
        names = [str(name) for name in namer.name(clusters)]
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
