"""One self-contained HTML page to look at a corpus: map, clusters, outliers, copies.

:func:`report` runs the estimators (:class:`~embedtasks.EmbeddingClusterer`,
:class:`~embedtasks.OutlierScorer`, :class:`~embedtasks.NearDuplicates`,
:class:`~embedtasks.DiversityReport`) on the
embeddings of a list of texts and lays their tables out in one HTML file that opens
offline from disk: plotly's JavaScript is inlined, nothing is fetched. This module
computes no similarity itself; every number comes from an estimator.

Every text reaches the page escaped: in tables through :func:`html.escape`, in the
page's data as JSON with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc. (so a
text holding ``</script>`` cannot end a script), and in the map's hover labels
escaped again for plotly's own markup. Texts are cut to ``max_text_chars`` to keep
the file small on a large corpus.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from embedtasks._optional import import_optional
from embedtasks._report._drift import drift_section
from embedtasks._report._page import Page, clean_text
from embedtasks._validation import check_texts
from embedtasks.cluster._estimator import EmbeddingClusterer
from embedtasks.diversity import DiversityReport
from embedtasks.drift import DriftTest
from embedtasks.duplicates import NearDuplicates
from embedtasks.outliers import OutlierScorer

__all__ = ["Report", "report"]


class Report:
    """An HTML report of a corpus, and the tables it shows.

    Made by :func:`report`. In a notebook it displays itself (``_repr_html_``, in
    an ``iframe`` so its script and styles stay apart from the notebook's);
    :meth:`save` writes the page to a file that opens offline in any browser.

    Attributes
    ----------
    html : str
        The whole page, with plotly's JavaScript inlined.
    points : pandas.DataFrame
        One row per text: ``row``, map coordinates ``x`` and ``y``, ``cluster``
        (-1 for noise), with topics ``topic``, ``outlier_score`` (higher is
        more unusual), ``is_outlier`` and, with groups, ``group``.
    clusters : pandas.DataFrame
        :meth:`EmbeddingClusterer.summary <embedtasks.EmbeddingClusterer.summary>`
        of the texts (with each cluster's ``topic`` when there are topics).
    topics : pandas.DataFrame or None
        :meth:`EmbeddingClusterer.topics <embedtasks.EmbeddingClusterer.topics>`
        of the texts: the clusters merged into coarse topics (``None`` with
        ``n_topics=None`` or no clusters).
    outliers : pandas.DataFrame
        The most unusual rows, most unusual first.
    duplicates : pandas.DataFrame
        The largest groups of near-copies (:class:`~embedtasks.NearDuplicates`),
        largest first: ``group``, ``size``, ``min_similarity`` (the lowest
        similarity within the group), ``canonical_row`` (the row to keep),
        ``rows`` (every member, the canonical row first) and ``canonical_text``.
    diversity : pandas.DataFrame
        :meth:`DiversityReport.to_frame <embedtasks.DiversityReport.to_frame>`:
        one row for all texts, then one per group.
    drift : DriftResult or None
        With a reference corpus: how this corpus differs from it.
    """

    def __init__(
        self,
        html: str,
        *,
        points: Any,
        clusters: Any,
        outliers: Any,
        duplicates: Any,
        diversity: Any,
        drift: Any = None,
        topics: Any = None,
    ) -> None:
        self.html = html
        self.topics = topics
        self.drift = drift
        self.points = points
        self.clusters = clusters
        self.outliers = outliers
        self.duplicates = duplicates
        self.diversity = diversity

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (UTF-8); return the path.

        Parameters
        ----------
        path : str or pathlib.Path
            The file to write, e.g. ``"report.html"``; missing folders are made.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path

    def _repr_html_(self) -> str:
        source = html.escape(self.html, quote=True)
        return (
            '<iframe style="width:100%;height:900px;border:1px solid #ddd" '
            f'srcdoc="{source}"></iframe>'
        )

    def __repr__(self) -> str:
        n_clusters = int((self.clusters["cluster"] >= 0).sum())
        return (
            f"Report({len(self.points):,} rows, {n_clusters} clusters, "
            f"{len(self.html.encode('utf-8')) / 1e6:.1f} MB of HTML)"
        )


def report(
    texts: Any,
    X: Any = None,
    *,
    groups: Any = None,
    ids: Any = None,
    embedder: Any = None,
    clusterer: Any = None,
    outlier_scorer: Any = None,
    diversity: Any = None,
    near_duplicates: Any = None,
    title: str = "embedtasks report",
    n_outliers: int = 20,
    n_duplicates: int = 50,
    max_text_chars: int = 300,
    reference: Any = None,
    reference_X: Any = None,
    drift_test: Any = None,
    namer: Any = None,
    n_topics: Any = "auto",
) -> Report:
    """Look at a corpus: one self-contained HTML page of its map, clusters and more.

    The page holds a 2-D map of every text coloured by cluster (the text shows on
    hover), the cluster table (names, keywords, representative texts, sizes), the
    most unusual texts, the groups of near-copies, diversity per group and a filter
    box that finds texts and lights them up on the map. It opens offline from disk.

    Parameters
    ----------
    texts : sequence of str
        The corpus, one text per row.
    X : array-like of shape (n_samples, n_features), optional
        Their embeddings; computed with ``embedder`` when not given.
    groups : array-like of shape (n_samples,), optional
        A group label per text (source, class, period...): diversity is then
        reported per group too, and the group shows on hover.
    ids : array-like of shape (n_samples,), optional
        A name per text (the file's id column, a package name...): the page's
        tables and hover labels show it instead of the row number, and the
        returned tables gain an ``id`` column.
    embedder : estimator, optional
        Embeds ``texts`` when ``X`` is not given; default
        :class:`~embedtasks.LocalEmbedder`.
    clusterer : EmbeddingClusterer, optional
        Gives the clusters and the map (its ``map_``). A fitted one (on these
        rows) is used as it is, an unfitted one is fitted on a copy; default
        ``EmbeddingClusterer(random_state=0)``.
    outlier_scorer : OutlierScorer, optional
        Scores how unusual each text is (fitted on a copy); default
        ``OutlierScorer()``.
    diversity : DiversityReport, optional
        Measures diversity (fitted on a copy); default
        ``DiversityReport(random_state=0)``.
    near_duplicates : NearDuplicates, optional
        Groups near-copies (fitted on a copy); default
        ``NearDuplicates(random_state=0)`` (its threshold derived from the data).
    title : str, default="embedtasks report"
        The page's title.
    n_outliers : int, default=20
        Rows of the outlier table.
    n_duplicates : int, default=50
        Groups in the near-copy table (the largest).
    namer : ChatNamer, optional
        Names the clusters (e.g. :class:`~embedtasks.ChatNamer`, a chat model)
        instead of their keywords; see
        :meth:`EmbeddingClusterer.summary <embedtasks.EmbeddingClusterer.summary>`.
    n_topics : int, "auto" or None, default="auto"
        The coarse level: the clusters merged into this many topics
        (:meth:`EmbeddingClusterer.topics
        <embedtasks.EmbeddingClusterer.topics>`; ``"auto"`` reads the number
        from the data). When there are fewer topics than clusters, a selector
        colours and names the map by topic, a table lists the topics and the
        cluster table shows each cluster's topic. ``None``: clusters only.
    max_text_chars : int, default=300
        Texts are cut to this many characters on the page (a 20,000-row corpus of
        paragraphs then makes a file of about 11 MB).
    reference : sequence of str, optional
        A reference corpus (last month's data, the training set): the page then
        opens with a section on how ``texts`` differ from it
        (:class:`~embedtasks.DriftTest`).
    reference_X : array-like of shape (n_reference, n_features), optional
        The reference texts' embeddings; computed with ``embedder`` when not
        given.
    drift_test : DriftTest, optional
        The test to run (fitted on a copy); default ``DriftTest(random_state=0)``.

    Returns
    -------
    Report
        ``save(path)`` writes the page; the tables are its attributes.

    Examples
    --------
    >>> import numpy as np
    >>> from embedtasks import EmbeddingClusterer, report
    >>> rng = np.random.default_rng(0)
    >>> X = np.repeat(np.eye(3), 10, axis=0) + 0.05 * rng.normal(size=(30, 3))
    >>> texts = [f"{topic} {i}" for topic in ("cats", "tax", "rain") for i in range(10)]
    >>> page = report(texts, X, clusterer=EmbeddingClusterer(
    ...     reduction="pca", n_components=2, min_cluster_size=5, random_state=0))
    >>> page.clusters[["cluster", "size"]].to_numpy().tolist()
    [[0, 10], [1, 10], [2, 10]]
    >>> page.save("report.html").name  # doctest: +SKIP
    'report.html'
    """
    import_optional("plotly", extra="report", purpose="embedtasks.report")
    texts, X, id_values, group_values = _inputs(
        texts, X, embedder, ids, groups, n_outliers, n_duplicates, max_text_chars
    )
    drift = _drift(reference, reference_X, texts, X, embedder, drift_test)
    clusterer = _fitted_clusterer(clusterer, X)
    topics = None
    if n_topics is not None and clusterer.n_clusters_ > 0:
        topics = clusterer.topics(texts, n_topics=n_topics, namer=namer)
    summary = clusterer.summary(
        texts, namer=namer, n_topics=None if topics is None else n_topics
    )
    labels = np.asarray(clusterer.labels_)
    layout = np.asarray(clusterer.map_, dtype=np.float32)
    outliers = _outliers(outlier_scorer, X)
    diversity_report = clone(
        DiversityReport(random_state=0) if diversity is None else diversity
    ).fit(X, groups=group_values)
    if near_duplicates is None:
        near_duplicates = NearDuplicates(random_state=0)
    dedupe = clone(near_duplicates).fit(X)

    points, top, duplicates = _tables(
        texts, labels, layout, outliers, dedupe, group_values, id_values,
        n_outliers, n_duplicates,
    )  # fmt: skip
    if topics is not None:
        points.insert(points.columns.get_loc("cluster") + 1, "topic",
                      clusterer.topic_labels(n_topics=n_topics))  # fmt: skip
    page = Page(
        texts=[clean_text(t, max_text_chars) for t in texts],
        summary=summary,
        points=points,
        diversity=diversity_report,
        dedupe=dedupe,
        groups=group_values,
        title=title,
        ids=None if id_values is None else id_values.tolist(),
        topics=topics,
    )
    drift_html = (
        "" if drift is None else drift_section(drift, max_text_chars=max_text_chars)
    )
    return Report(
        page.render(top, duplicates, drift_html),
        points=points,
        clusters=summary,
        outliers=top,
        duplicates=duplicates,
        diversity=diversity_report.to_frame(),
        drift=drift,
        topics=topics,
    )


def _inputs(
    texts: Any,
    X: Any,
    embedder: Any,
    ids: Any,
    groups: Any,
    n_outliers: Any,
    n_duplicates: Any,
    max_text_chars: Any,
) -> tuple[list[str], np.ndarray, Any, Any]:
    """The report's inputs checked (and the texts embedded when X is None)."""
    for name, value, least in (
        ("n_outliers", n_outliers, 0),
        ("n_duplicates", n_duplicates, 0),
        ("max_text_chars", max_text_chars, 1),
    ):
        if not isinstance(value, int | np.integer) or value < least:
            raise ValueError(
                f"embedtasks.report: {name} must be an int >= {least}, got {value!r}."
            )
    texts = check_texts(texts, estimator_name="embedtasks.report")
    n = len(texts)
    if n < 2:
        raise ValueError(
            f"embedtasks.report needs at least 2 texts, got {n}: the map, the "
            "clusters and the outlier and duplicate tables compare rows."
        )
    if X is None:
        if embedder is None:
            from embedtasks.embedders._local import LocalEmbedder

            embedder = LocalEmbedder()
        X = embedder.fit_transform(texts)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != n:
        raise ValueError(
            f"embedtasks.report got {n} texts but embeddings of shape {X.shape}; "
            "pass one embedding row per text, in the same order."
        )
    id_values = None
    if ids is not None:
        id_values = np.asarray(ids, dtype=object)
        if id_values.shape != (n,):
            raise ValueError(
                f"embedtasks.report got {n} texts but ids of shape "
                f"{id_values.shape}; pass one id per text."
            )
        id_values = np.asarray(["" if v is None else str(v) for v in id_values])
    group_values = None
    if groups is not None:
        group_values = np.asarray(groups).astype(str)
        if group_values.shape != (n,):
            raise ValueError(
                f"embedtasks.report got {n} texts but groups of shape "
                f"{group_values.shape}; pass one group label per text."
            )
    return texts, X, id_values, group_values


def _tables(
    texts: list[str],
    labels: np.ndarray,
    layout: np.ndarray,
    outliers: dict[str, Any],
    dedupe: Any,
    group_values: Any,
    id_values: Any,
    n_outliers: int,
    n_duplicates: int,
) -> tuple[Any, Any, Any]:
    """The page's points, its most unusual rows and its near-copy groups."""
    n = len(texts)
    import pandas as pd

    points = pd.DataFrame(
        {
            "row": np.arange(n),
            "x": layout[:, 0],
            "y": layout[:, 1],
            "cluster": labels,
            "outlier_score": outliers["scores"],
            "is_outlier": outliers["flags"],
        }
    )
    if group_values is not None:
        points["group"] = group_values
    if id_values is not None:
        points.insert(1, "id", id_values)
    duplicates = _groups_table(dedupe, texts, n_duplicates)
    order = np.argsort(-outliers["scores"], kind="stable")[:n_outliers]
    top = pd.DataFrame(
        {
            "row": order,
            "outlier_score": outliers["scores"][order],
            "is_outlier": outliers["flags"][order],
            "cluster": labels[order],
            "nearest_row": outliers["nearest"][order],
            "nearest_similarity": outliers["nearest_similarity"][order],
            "text": [texts[i] for i in order],
        }
    )
    if id_values is not None:
        top.insert(1, "id", id_values[top["row"].to_numpy()])
        kept = duplicates["canonical_row"].to_numpy(dtype=np.intp)
        duplicates.insert(4, "canonical_id", id_values[kept])
        duplicates["ids"] = [id_values[rows].tolist() for rows in duplicates["rows"]]
    return points, top, duplicates


def _drift(
    reference: Any, reference_X: Any, texts: list[str], X: Any, embedder: Any, test: Any
) -> Any:
    """The drift of ``texts`` from ``reference`` (None without a reference)."""
    if reference is None:
        if reference_X is not None:
            raise ValueError(
                "embedtasks.report got reference_X without reference: pass the "
                "reference texts too (they name the clusters and the examples)."
            )
        return None
    reference = check_texts(reference, estimator_name="embedtasks.report(reference)")
    if reference_X is None:
        if embedder is None:
            from embedtasks.embedders._local import LocalEmbedder

            embedder = LocalEmbedder()
        reference_X = embedder.fit_transform(reference)
    test = clone(DriftTest(random_state=0) if test is None else test)
    return test.fit(reference_X, texts=reference).test(X, texts=texts)


def _groups_table(dedupe: Any, texts: list[str], n_groups: int) -> Any:
    """The largest groups of near-copies: size, lowest similarity, rows, kept text."""
    import pandas as pd

    sizes = dedupe.group_sizes_
    shown = np.flatnonzero(sizes > 1)
    shown = shown[np.lexsort((shown, -sizes[shown]))][:n_groups]
    order = np.lexsort((~dedupe.keep_, np.arange(dedupe.groups_.size), dedupe.groups_))
    bounds = np.searchsorted(dedupe.groups_[order], np.arange(dedupe.n_groups_ + 1))
    canonical = dedupe.canonical_[shown]
    return pd.DataFrame(
        {
            "group": shown,
            "size": sizes[shown],
            "min_similarity": dedupe.min_similarity_[shown],
            "canonical_row": canonical,
            "rows": [order[bounds[g] : bounds[g + 1]].tolist() for g in shown],
            "canonical_text": [texts[i] for i in canonical],
        }
    )


def _fitted_clusterer(clusterer: Any, X: np.ndarray) -> Any:
    if clusterer is None:
        clusterer = EmbeddingClusterer(random_state=0)
    if hasattr(clusterer, "labels_"):  # fitted by the caller
        if len(clusterer.labels_) != X.shape[0]:
            raise ValueError(
                f"embedtasks.report got a clusterer fitted on {len(clusterer.labels_)} "
                f"rows for {X.shape[0]} texts; pass it unfitted, or fitted on these "
                "texts' embeddings."
            )
        return clusterer
    return clone(clusterer).fit(X)


def _outliers(scorer: Any, X: np.ndarray) -> dict[str, Any]:
    """Outlier scores (higher = more unusual), flags and each row's nearest row:
    :meth:`OutlierScorer.to_frame`, the one table of outliers."""
    table = clone(OutlierScorer() if scorer is None else scorer).fit(X).to_frame()
    return {
        "scores": table["outlier_score"].to_numpy(),
        "flags": table["is_outlier"].to_numpy(),
        "nearest": table["nearest"].to_numpy(),
        "nearest_similarity": table["nearest_similarity"].to_numpy(),
    }
