"""The main job: every task of embedtasks on real text that every machine has.

The corpus is the docstrings of the Python packages installed beside embedtasks
(numpy, pandas, scikit-learn, httpx and parts of the standard library), read from
their source files with :mod:`ast` (nothing is imported or executed), one text per
public function or class: its summary paragraph, labelled by the package it comes
from. None of it was written by the embedtasks team.

:func:`build_corpus` makes the corpus (cached as JSON next to the embedding cache);
:func:`run_demo` embeds it with :class:`~embedtasks.LocalEmbedder` and writes a
readable report of search, recommendations, clustering, outliers, diversity and
classification to a text stream. ``embedtasks demo`` runs it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from embedtasks._cachedir import DEMO_CORPUS_PREFIX, resolve_cache_dir
from embedtasks._validation import (
    HasMethods,
    Integral,
    Interval,
    StrOptions,
    validate_params,
)

__all__ = [
    "DEMO_QUERIES",
    "DEMO_SOURCES",
    "LABEL_DESCRIPTIONS",
    "build_corpus",
    "run_demo",
]

#: Label -> top-level modules whose docstrings carry that label.
DEMO_SOURCES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "scikit-learn": ("sklearn",),
    "httpx": ("httpx",),
    "asyncio": ("asyncio",),
    "email": ("email",),
    "logging": ("logging",),
    "unittest": ("unittest",),
    "xml": ("xml",),
    "http/urllib": ("http", "urllib"),
}

#: Natural-language searches the report answers.
DEMO_QUERIES = (
    "solve a system of linear equations",
    "find the median ignoring missing values",
    "group rows of a table by a column and aggregate",
    "compute the accuracy of a classifier",
    "parse the headers of an email message",
    "retry a request after a network timeout",
)

_CORPUS_FORMAT = 1
_SKIP_PARTS = {"tests", "test", "testing", "_vendor", "externals", "conftest.py"}
_MIN_CHARS, _MAX_CHARS = 30, 300


def _summary(docstring: str) -> str | None:
    """The first paragraph of a docstring on one line, or None if too short."""
    paragraph = docstring.strip().split("\n\n", 1)[0]
    text = re.sub(r"\s+", " ", paragraph).strip()
    if len(text) < _MIN_CHARS or len(text.split()) < 4:
        return None
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS].rsplit(" ", 1)[0] + " ..."
    return text


def _module_files(module: str) -> list[tuple[str, Path]]:
    """(dotted module name, source file) for ``module`` and its submodules."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return []
    if not spec.submodule_search_locations:
        return [(module, Path(spec.origin))]
    root = Path(next(iter(spec.submodule_search_locations)))
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_PARTS.intersection(rel.parts) or rel.name.startswith("test_"):
            continue
        parts = [module, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        files.append((".".join(parts), path))
    return files


def _docstrings(dotted: str, path: Path) -> list[tuple[str, str]]:
    """(qualified name, summary) of the public functions and classes in a file."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):  # pragma: no cover - odd files
        return []
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if child.name.startswith("_"):
                    continue
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                text = _summary(doc) if doc else None
                if text:
                    found.append((name, text))
                if isinstance(child, ast.ClassDef):
                    visit(child, name)

    visit(tree, dotted)
    return found


_DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def _versions(sources: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Installed version of each source module ("stdlib" for the standard library)."""
    versions = {"python": platform.python_version()}
    for modules in sources.values():
        for module in modules:
            try:
                dist = _DISTRIBUTIONS.get(module, module)
                versions[module] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[module] = "stdlib"
    return versions


@validate_params(
    {
        "n_texts": [Interval(Integral, 1, None, closed="left")],
        "sources": [dict, None],
        "max_per_label": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
    },
    prefer_skip_nested_validation=True,
)
def build_corpus(
    n_texts: int = 3000,
    *,
    sources: dict[str, tuple[str, ...]] | None = None,
    max_per_label: int = 800,
    random_state: int = 0,
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Collect docstring summaries of installed packages, labelled by package.

    Source files are parsed with :mod:`ast`, in a seeded random order, until
    ``max_per_label`` public functions/classes with a docstring are found per label;
    labels are then drawn round-robin (so small ones are kept whole) up to
    ``n_texts`` distinct texts.

    Parameters
    ----------
    n_texts : int, default=3000
        Number of texts wanted (fewer if the packages hold fewer).
    sources : dict, default=None
        ``{label: (module, ...)}``; defaults to :data:`DEMO_SOURCES`. Modules that
        are not installed are skipped.
    max_per_label : int, default=800
        Docstrings collected per label before sampling (at most ``n_texts``).
    random_state : int, default=0
        Seed of the file order and the sampling.
    cache_dir : str, path or None, default=None
        The cache folder, as the estimators' ``cache_dir``: ``"default"``
        (``$EMBEDTASKS_CACHE_DIR`` or ``~/.cache/embedtasks``) or a folder; the
        corpus is stored there as JSON (keyed by the parameters and the package
        versions) and re-read on the next call. ``None``: not stored.

    Returns
    -------
    pandas.DataFrame
        Columns ``text`` (the summary), ``label`` (package) and ``name`` (the
        qualified name of the function or class), one distinct text per row.

    Examples
    --------
    >>> corpus = build_corpus(60, sources={"json": ("json",), "csv": ("csv",)})
    >>> list(corpus.columns), corpus["label"].unique().tolist()
    (['text', 'label', 'name'], ['json', 'csv'])
    >>> corpus["name"].str.startswith(("json.", "csv.")).all()
    np.True_
    """
    sources = dict(DEMO_SOURCES if sources is None else sources)
    cache_file = None
    folder = resolve_cache_dir(cache_dir)
    if folder is not None:
        key = json.dumps(
            [_CORPUS_FORMAT, n_texts, sources, max_per_label, random_state],
            sort_keys=True,
        )
        key += json.dumps(_versions(sources), sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        cache_file = folder / f"{DEMO_CORPUS_PREFIX}{digest}.json"
        if cache_file.exists():
            return pd.read_json(cache_file, orient="records")

    rng = np.random.default_rng(random_state)
    pools: dict[str, list[tuple[str, str]]] = {}
    for label, modules in sources.items():
        files = [f for m in modules for f in _module_files(m)]
        pool: list[tuple[str, str]] = []
        for i in rng.permutation(len(files)):
            pool.extend(_docstrings(*files[i]))
            if len(pool) >= min(max_per_label, n_texts):
                break
        order = rng.permutation(len(pool))
        pools[label] = [pool[i] for i in order]

    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    cursors = dict.fromkeys(pools, 0)
    while len(rows) < n_texts and any(cursors[k] < len(pools[k]) for k in pools):
        for label, pool in pools.items():
            while cursors[label] < len(pool):
                name, text = pool[cursors[label]]
                cursors[label] += 1
                if text not in seen:
                    seen.add(text)
                    rows.append((text, label, name))
                    break
            if len(rows) >= n_texts:
                break
    corpus = pd.DataFrame(rows, columns=["text", "label", "name"])
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        corpus.to_json(tmp, orient="records")
        tmp.replace(cache_file)
    return corpus


#: What each label covers, for zero-shot classification from descriptions alone.
LABEL_DESCRIPTIONS = {
    "numpy": "numerical arrays, array math, polynomials, linear algebra, dtypes",
    "pandas": "DataFrame and Series tables, indexes, time series, reading CSV files",
    "scikit-learn": "machine learning models, fit and predict, estimators, metrics",
    "httpx": "HTTP client requests, responses, URLs, headers, transports",
    "asyncio": "asynchronous coroutines, event loops, tasks, futures, streams",
    "email": "email messages, MIME parts, mail headers, addresses, encoding",
    "logging": "logging records, loggers, handlers, formatters, log levels",
    "unittest": "unit tests, test cases, assertions, mocks, test runners",
    "xml": "XML documents, elements, DOM, SAX parsers, XML attributes",
    "http/urllib": "HTTP servers, cookies, URL parsing, opening URLs, status codes",
}


class _Report:
    """Writes the sections of the report to a text stream."""

    def __init__(self, out: TextIO, width: int = 88) -> None:
        self.out, self.width = out, width
        self.started = time.perf_counter()

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def section(self, title: str) -> None:
        self.line()
        self.line(f"== {title} " + "=" * max(0, self.width - len(title) - 4))

    def item(self, score: float | None, label: str, text: str, name: str = "") -> None:
        head = f"  {score:5.2f}  " if score is not None else "  "
        room = self.width - len(head) - len(label) - 3
        text = text if len(text) <= room else text[: room - 3] + "..."
        self.line(f"{head}[{label}] {text}")
        if name:
            self.line(" " * len(head) + f"({name})")


@dataclass
class _Run:
    """What every section of the demo reads: the corpus, its vectors, the report."""

    report: _Report
    embedder: Any
    X: np.ndarray
    texts: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    counts: pd.Series
    results: dict[str, Any] = field(default_factory=dict)
    nn: Any = None  # the search index, reused by the recommendations
    cache_dir: str | Path | None = None


@validate_params(
    {
        "out": [HasMethods(["write"])],
        # Below 20 texts the clusterer and the classifier have too little to show.
        "n_texts": [Interval(Integral, 20, None, closed="left")],
        "cache_dir": [str, os.PathLike, None],
        "progress": ["boolean", StrOptions({"auto"})],
        "embedder": [HasMethods(["fit_transform", "transform"]), None],
    },
    prefer_skip_nested_validation=False,
)
def run_demo(
    out: TextIO,
    *,
    n_texts: int = 3000,
    cache_dir: str | Path | None = "default",
    progress: bool | str = "auto",
    embedder: Any = None,
) -> dict[str, Any]:
    """Run every task on the docstring corpus and write a report to ``out``.

    Parameters
    ----------
    out : text stream
        Where the report goes (``sys.stdout`` from the command line).
    n_texts : int, default=3000
        Size of the corpus (see :func:`build_corpus`).
    cache_dir : str, path or None, default="default"
        Embedding cache (as :class:`~embedtasks.LocalEmbedder`'s ``cache_dir``); the
        corpus itself is cached in the same directory.
    progress : bool or "auto", default="auto"
        Progress bar while embedding.
    embedder : transformer, default=None
        Any embedder (texts -> unit float32 rows); ``LocalEmbedder`` by default.

    Returns
    -------
    dict
        The figures the report prints (sizes, timings, accuracies, ...), for tests.
    """

    report = _Report(out)
    t0 = time.perf_counter()
    corpus = build_corpus(n_texts, cache_dir=cache_dir)
    counts = corpus["label"].value_counts()
    report.section("Corpus: docstrings of the installed Python packages")
    report.line(
        f"{len(corpus):,} public functions and classes, summary paragraph of each "
        f"docstring, from {counts.size} packages ({time.perf_counter() - t0:.1f} s):"
    )
    report.line("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    run = _embed(report, corpus, counts, embedder, cache_dir, progress)
    for section in (_search, _recommend, _cluster, _outliers, _diversity, _classify):
        section(run)
    report.section("Done")
    total = time.perf_counter() - report.started
    report.line(
        f"whole job {total:.1f} s; run it again: the vectors come from the cache"
    )
    run.results["seconds"] = total
    return run.results


def _embed(
    report: _Report,
    corpus: pd.DataFrame,
    counts: pd.Series,
    embedder: Any,
    cache_dir: str | Path | None,
    progress: bool | str,
) -> _Run:
    from embedtasks.embedders._local import LocalEmbedder

    texts, labels, names = (corpus[c].to_numpy() for c in ("text", "label", "name"))
    report.section("Embed")
    own = embedder is None
    if own:
        embedder = LocalEmbedder(cache_dir=cache_dir, progress=progress)
    X = embedder.fit_transform(list(texts))
    if own:  # no bars for the handfuls of queries and labels below
        embedder.set_params(progress=False)
    usage = getattr(embedder, "usage_", {})
    seconds = usage.get("seconds", float("nan"))
    report.line(
        f"{type(embedder).__name__}: {X.shape[0]:,} texts -> float32 {X.shape}, "
        f"{usage.get('cache_hits', 0):,} from the cache, "
        f"{usage.get('embedded', 0):,} embedded, {seconds:.1f} s"
    )
    run = _Run(report, embedder, X, texts, labels, names, counts, cache_dir=cache_dir)
    run.results.update(n_texts=len(corpus), embed=dict(usage))
    return run


def _search(run: _Run) -> None:
    from embedtasks.neighbors import DotProductNeighbors

    report, labels, texts, names = run.report, run.labels, run.texts, run.names
    report.section("Search: natural-language questions, top 3 of the corpus")
    run.nn = DotProductNeighbors(n_neighbors=3).fit(run.X, names)
    hits = run.nn.search(run.embedder.transform(list(DEMO_QUERIES)), as_frame=True)
    for q, block in hits.groupby("query", sort=True):
        report.line(f"? {DEMO_QUERIES[q]}")
        for row, score in zip(block["index"], block["score"], strict=True):
            report.item(float(score), labels[row], texts[row], names[row])
    run.results["search"] = hits["index"].to_numpy().reshape(len(DEMO_QUERIES), -1)


def _recommend(run: _Run) -> None:
    report, labels, texts, names = run.report, run.labels, run.texts, run.names
    liked = int(run.results["search"][0, 0])
    report.section("Recommend: more like the first answer above (itself excluded)")
    report.line(f"  liked: [{labels[liked]}] {names[liked]}")
    table = run.nn.recommend(liked, 5, as_frame=True)
    for row, score in zip(table["index"], table["score"], strict=True):
        report.item(float(score), labels[row], texts[row], names[row])
    run.results["recommend"] = table["index"].to_numpy()


def _cluster(run: _Run) -> None:
    from sklearn.metrics import v_measure_score

    from embedtasks.cluster._estimator import EmbeddingClusterer

    report, labels = run.report, run.labels
    report.section("Cluster: topics found by density (HDBSCAN after UMAP)")
    t0 = time.perf_counter()
    # The library's default clusterer; its UMAP layout is cached beside the vectors.
    clusterer = EmbeddingClusterer(random_state=0, cache_dir=run.cache_dir)
    clusterer.fit(run.X)
    summary = clusterer.summary(list(run.texts), n_keywords=5)
    noise = float(np.mean(clusterer.labels_ == -1))
    found = clusterer.labels_ >= 0
    v = v_measure_score(labels[found], clusterer.labels_[found]) if found.any() else 0.0
    report.line(
        f"{clusterer.n_clusters_} topics, {noise:.0%} of items in none (noise); "
        f"agreement with the packages (V-measure): {v:.2f} "
        f"({time.perf_counter() - t0:.1f} s). Largest:"
    )
    summary = summary[summary["cluster"] >= 0]
    for _, row in summary.sort_values("size", ascending=False).head(8).iterrows():
        members = pd.Series(labels[clusterer.labels_ == row["cluster"]])
        shares = members.value_counts(normalize=True)
        top, share = shares.index[0], shares.iloc[0]
        report.line(
            f"  #{row['cluster']:<3d} {row['size']:4d} items, {share:.0%} {top}; "
            f"keywords: {', '.join(row['keywords'])}"
        )
        report.item(None, top, row["representative_texts"][0])
    run.results["cluster"] = {
        "n_clusters": clusterer.n_clusters_,
        "noise": noise,
        "v": v,
    }


def _outliers(run: _Run) -> None:
    from embedtasks.outliers import OutlierScorer

    report = run.report
    report.section("Outliers: least related to everything else (kNN distance)")
    scorer = OutlierScorer(n_neighbors=10)
    flags = scorer.fit_predict(run.X)
    order = np.argsort(scorer.training_scores_, kind="stable")[:5]
    report.line(
        f"{int((flags == -1).sum())} of {len(flags):,} flagged "
        "(below the lower Tukey fence); the 5 most unusual (mean distance):"
    )
    for row in order:
        report.item(
            -float(scorer.training_scores_[row]), run.labels[row], run.texts[row]
        )
    run.results["outliers"] = order


def _diversity(run: _Run) -> None:
    from embedtasks.diversity import DiversityReport

    report, labels, texts, names = run.report, run.labels, run.texts, run.names
    report.section("Diversity: how varied is each package's documentation?")
    div = DiversityReport(random_state=0).fit(run.X, groups=labels)
    table = div.to_frame()
    report.line(
        f"whole corpus: Vendi score {div.vendi_score_:.0f} (effective number of "
        f"distinct docstrings, of {div.n_samples_:,}); mean similarity "
        f"{div.mean_similarity_:.2f}; {div.n_duplicate_pairs_:,} near-duplicate "
        "pairs (cosine >= 0.95)"
    )
    report.line(
        f"  {'package':<14s}{'n':>6s}{'mean sim':>10s}{'Vendi':>8s}{'Vendi/n':>9s}"
    )
    per_group = table.drop(index="all").sort_values("mean_similarity")
    for name, row in per_group.iterrows():
        report.line(
            f"  {name!s:<14s}{int(row['n_samples']):>6d}{row['mean_similarity']:>10.2f}"
            f"{row['vendi_score']:>8.1f}{row['vendi_share']:>9.1%}"
        )
    if div.n_duplicate_pairs_:
        i, j = div.duplicate_pairs_[0]
        report.line(f"  closest pair ({div.duplicate_similarities_[0]:.3f}):")
        report.item(None, labels[i], texts[i], names[i])
        report.item(None, labels[j], texts[j], names[j])
    run.results["diversity"] = {"vendi": float(div.vendi_score_)}


def _classify(run: _Run) -> None:
    from embedtasks.classify._estimator import NearestLabelClassifier

    report, labels, X = run.report, run.labels, run.X
    report.section("Classify: which package wrote this docstring?")
    rng = np.random.default_rng(0)
    train = np.zeros(len(labels), dtype=bool)
    for label in run.counts.index:
        rows = np.flatnonzero(labels == label)
        train[rng.choice(rows, size=min(10, rows.size // 2), replace=False)] = True
    few = NearestLabelClassifier().fit(X[train], labels[train])
    acc_few = float(few.score(X[~train], labels[~train]))
    zero = NearestLabelClassifier(
        embedder=run.embedder,
        labels=list(LABEL_DESCRIPTIONS),
        label_descriptions=LABEL_DESCRIPTIONS,
        template="Python documentation about {label}",
    ).fit(X[train])
    acc_zero = float(zero.score(X[~train], labels[~train]))
    half = rng.random(len(labels)) < 0.5
    knn = NearestLabelClassifier(method="knn", n_neighbors=5).fit(X[half], labels[half])
    acc_half = float(knn.score(X[~half], labels[~half]))
    chance = float(run.counts.max() / run.counts.sum())
    report.line(
        f"few-shot (10 labelled docstrings per package): accuracy {acc_few:.1%} on "
        f"the other {int((~train).sum()):,}"
    )
    report.line(
        f"zero-shot (a one-line description per package): accuracy {acc_zero:.1%} "
        f"(majority class: {chance:.1%})"
    )
    report.line(
        f"half the corpus labelled (nearest neighbours): accuracy {acc_half:.1%}"
    )
    new = [
        "Send a GET request and return the response.",
        "Fit the model to the training data and return the fitted estimator.",
        "Attach a file to the message as a MIME part.",
    ]
    proba = few.predict_proba(run.embedder.transform(new))
    for text, p in zip(new, proba, strict=True):
        best = int(p.argmax())
        report.line(f"  {few.classes_[best]:>12s} ({p[best]:.0%})  {text}")
    run.results["classify"] = {
        "few_shot": acc_few,
        "zero_shot": acc_zero,
        "half": acc_half,
    }
