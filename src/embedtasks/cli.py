"""The ``embedtasks`` command line: data files in, results out.

Every subcommand reads a CSV, TSV, Parquet or JSON Lines file, takes its texts from
one column (``--column``, default ``text``), embeds them (the local model by
default; an OpenAI-compatible endpoint with ``--base-url``/``--model``, key from
the environment), cached on disk so a re-run costs nothing, and prints or writes
the result. Errors are one line on stderr and a non-zero exit: 2 for bad
arguments or input (a missing file or column), 1 for a failure while working.

This module is the only one in embedtasks that prints.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedtasks import __version__
from embedtasks.exceptions import EmbedTasksError

__all__ = ["main"]

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


class CLIError(Exception):
    """A problem with the arguments or the input; exit status 2."""


# -- files ---------------------------------------------------------------------------
def _format(path: Path, what: str) -> str:
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise CLIError(
            f"cannot tell the format of {what} '{path}' from its extension "
            f"{path.suffix!r}; use one of {', '.join(sorted(_READERS))}"
        )
    return kind


def read_table(path: str | Path) -> Any:
    """Read a CSV/TSV/Parquet/JSON Lines file into a pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    kind = _format(path, "input file")
    if not path.is_file():
        raise CLIError(f"input file '{path}' not found")
    if kind == "parquet":
        _need_parquet()
        return pd.read_parquet(path)
    if kind == "jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", keep_default_na=True)


def write_table(frame: Any, path: str | Path) -> None:
    """Write a DataFrame as CSV/TSV/Parquet/JSON Lines, by extension."""
    path = Path(path)
    kind = _format(path, "output file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        _need_parquet()
        frame.to_parquet(path, index=False)
    elif kind == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)


def _need_parquet() -> None:
    from embedtasks._optional import import_optional

    import_optional("pyarrow", extra="parquet", purpose="Parquet files")


def _column(frame: Any, name: str, path: str, *, option: str = "--column") -> Any:
    if name not in frame.columns:
        columns = ", ".join(map(repr, list(frame.columns)[:20]))
        raise CLIError(
            f"column {name!r} not found in '{path}'; it has {columns}. "
            f"Choose one with {option}"
        )
    return frame[name]


def _texts(frame: Any, args: argparse.Namespace) -> list[str]:
    return _column_texts(frame, args.column, args.input)


def _column_texts(frame: Any, column: str, path: str) -> list[str]:
    from embedtasks._validation import check_texts

    values = _column(frame, column, path)
    return check_texts(values, estimator_name=f"column {column!r} of '{path}'")


# -- embedder ------------------------------------------------------------------------
def _embedder(args: argparse.Namespace) -> Any:
    cache_dir = None if args.no_cache else (args.cache_dir or "default")
    progress = "auto" if args.progress is None else args.progress
    if args.base_url or args.api_key_env != "OPENAI_API_KEY" or args.openai:
        from embedtasks.embedder import OpenAIEmbedder

        return OpenAIEmbedder(
            model=args.model or "text-embedding-3-small",
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            cache_dir=cache_dir,
            progress=progress,
            **({"batch_size": args.batch_size} if args.batch_size else {}),
            **({} if args.max_retries is None else {"max_retries": args.max_retries}),
        )
    from embedtasks.local import LocalEmbedder

    return LocalEmbedder(
        model=args.model or "all-MiniLM-L6-v2",
        device=args.device,
        cache_dir=cache_dir,
        progress=progress,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )


def _embed(args: argparse.Namespace, texts: list[str]) -> tuple[Any, np.ndarray]:
    embedder = _embedder(args)
    X = embedder.fit_transform(texts)
    usage = embedder.usage_
    _note(
        args,
        f"embedded {usage['texts']:,} texts with {type(embedder).__name__} "
        f"({usage['cache_hits']:,} from the cache, {usage['embedded']:,} new, "
        f"{usage['seconds']:.1f} s)",
    )
    return embedder, X


def _note(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"embedtasks {args.command}: {message}", file=sys.stderr)


def _show(frame: Any, *, max_width: int = 70) -> None:
    import pandas as pd

    with pd.option_context(
        "display.max_colwidth", max_width, "display.width", 200, "display.max_rows", 200
    ):
        print(frame.to_string(index=False))


# -- subcommands ---------------------------------------------------------------------
def cmd_embed(args: argparse.Namespace) -> int:
    """Embed a column and write the vectors (.npy, or a table with a vector column)."""
    frame = read_table(args.input)
    texts = _texts(frame, args)
    if args.dry_run:
        return _dry_run(args, texts)
    if not args.output:
        raise CLIError("-o/--output is required (or pass --dry-run).")
    out = Path(args.output)
    if out.suffix.lower() != ".npy":
        _format(out, "output file")
    _, X = _embed(args, texts)
    if out.suffix.lower() == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, X)
    else:
        frame = frame.copy()
        frame[args.vector_column] = list(X)
        if out.suffix.lower() in {".csv", ".tsv"}:
            frame[args.vector_column] = [" ".join(f"{v:.7g}" for v in row) for row in X]
        write_table(frame, out)
    _note(args, f"wrote {X.shape[0]:,} x {X.shape[1]} float32 vectors to '{out}'")
    return 0


def _dry_run(args: argparse.Namespace, texts: list[str]) -> int:
    """Print what embedding would cost; send nothing."""
    figures = _embedder(args).estimate(texts)
    seconds = figures.get("seconds")
    tokens = figures.get("tokens")
    print(
        f"{figures['texts']:,} rows, {figures['unique_texts']:,} unique, "
        f"{figures['cached']:,} already cached, {figures['to_embed']:,} to embed"
    )
    if tokens is not None:
        kind = "" if figures.get("tokens_exact") else " (upper bound: no tokenizer)"
        print(f"{tokens:,} tokens{kind} in {figures['requests']:,} requests")
    if seconds is not None:
        print(f"at least {seconds:,.0f} s at the known rate limits")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    """Inspect, check, compact or clear the embedding cache."""
    from embedtasks._cache import EmbeddingCache, default_cache_dir
    from embedtasks.exceptions import CacheError

    where = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if args.action == "clear":
        try:
            with EmbeddingCache(where) as cache:
                n = cache.clear()
            print(f"cleared {n:,} vectors from {cache.path}")
        except CacheError:
            removed = EmbeddingCache.remove_files(where)
            print(f"removed the damaged cache ({len(removed)} files) in {where}")
        return 0
    with EmbeddingCache(where) as cache:
        if args.action == "info":
            info = cache.info()
            mib = 2.0**20
            print(f"cache: {info['path']}")
            print(
                f"{info['vectors']:,} vectors in {info['files']} data files; "
                f"{info['data_bytes'] / mib:,.1f} MiB of data "
                f"({info['reclaimable_bytes'] / mib:,.1f} MiB reclaimable by "
                f"`embedtasks cache compact`), index {info['index_bytes'] / mib:,.1f}"
                " MiB"
            )
            for model in info["models"]:
                label = model["label"]
                name = label.get("model", "?")
                where_from = label.get("endpoint") or label.get("kind", "")
                print(
                    f"  {name} ({where_from}, {model['dim']}-d): "
                    f"{model['vectors']:,} vectors"
                )
            return 0
        if args.action == "verify":
            report = cache.verify(repair=args.repair)
            print(
                f"checked {report['checked']:,} vectors: {report['ok']:,} ok, "
                f"{report['damaged']:,} damaged"
                + (
                    f", {report['missing_files']} data files missing"
                    if report["missing_files"]
                    else ""
                )
            )
            if report["damaged"] and not args.repair:
                print(
                    "damaged vectors are never served (they are fetched again); "
                    "drop them with `embedtasks cache verify --repair` or "
                    "`embedtasks cache compact`"
                )
                return 1
            return 0
        report = cache.compact()
        mib = 2.0**20
        print(
            f"compacted {report['vectors']:,} vectors ({report['dropped']:,} damaged "
            f"dropped): {report['bytes_before'] / mib:,.1f} MiB -> "
            f"{report['bytes_after'] / mib:,.1f} MiB"
        )
        return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Rank the rows of a file for each query; print (and optionally save) the top k."""
    from embedtasks.neighbors import DotProductNeighbors

    queries = list(args.query or [])
    if args.queries_file:
        path = Path(args.queries_file)
        if not path.is_file():
            raise CLIError(f"queries file '{path}' not found")
        queries += [
            q.strip() for q in path.read_text("utf-8").splitlines() if q.strip()
        ]
    if not queries:
        raise CLIError("give at least one query: --query TEXT or --queries-file FILE")
    frame = read_table(args.input)
    texts = _texts(frame, args)
    ids = (
        _column(frame, args.id_column, args.input, option="--id-column")
        if (args.id_column)
        else None
    )
    embedder, X = _embed(args, texts)
    nn = DotProductNeighbors(n_neighbors=args.k).fit(X)
    scores, indices = nn.search(embedder.transform(queries))
    import pandas as pd

    rows = []
    for q, (row_scores, row_indices) in enumerate(zip(scores, indices, strict=True)):
        for rank, (score, index) in enumerate(
            zip(row_scores, row_indices, strict=True), start=1
        ):
            if index < 0:
                continue
            record = {
                "query": queries[q],
                "rank": rank,
                "score": round(float(score), 4),
            }
            record["row"] = int(index)
            if ids is not None:
                record[args.id_column] = ids.iloc[index]
            record[args.column] = texts[index]
            rows.append(record)
    result = pd.DataFrame(rows)
    _finish(args, result)
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """Cluster the rows; print a per-cluster summary, save labels with -o."""
    from embedtasks.cluster import EmbeddingClusterer

    frame = read_table(args.input)
    texts = _texts(frame, args)
    _, X = _embed(args, texts)
    clusterer = EmbeddingClusterer(
        n_clusters=args.n_clusters,
        reduction=None if args.reduction == "none" else args.reduction,
        min_cluster_size=args.min_cluster_size,
        random_state=args.random_state,
    )
    labels = clusterer.fit_predict(X)
    summary = clusterer.summary(texts, n_keywords=args.keywords)
    noise = int((labels == -1).sum())
    _note(args, f"{clusterer.n_clusters_} clusters, {noise:,} noise rows (-1)")
    table = summary[["cluster", "size", "keywords", "representative_texts"]].copy()
    table["keywords"] = table["keywords"].map(", ".join)
    table["example"] = table.pop("representative_texts").map(lambda t: t[0])
    if not args.quiet:
        _show(table)
    if args.output:
        out = frame.copy()
        out["cluster"] = labels
        out["probability"] = clusterer.probabilities_
        write_table(out, args.output)
        _note(args, f"wrote {len(out):,} rows with 'cluster' to '{args.output}'")
    return 0


def cmd_outliers(args: argparse.Namespace) -> int:
    """Score how unrelated each row is to the rest; print the most unusual."""
    from embedtasks.outliers import OutlierScorer

    frame = read_table(args.input)
    texts = _texts(frame, args)
    _, X = _embed(args, texts)
    scorer = OutlierScorer(
        n_neighbors=args.n_neighbors,
        contamination=args.contamination,
    )
    flags = scorer.fit_predict(X)
    import pandas as pd

    result = frame.copy()
    result["outlier_score"] = -scorer.training_scores_
    result["is_outlier"] = flags == -1
    _note(args, f"{int((flags == -1).sum()):,} of {len(flags):,} rows flagged")
    top = result.sort_values("outlier_score", ascending=False, kind="stable")
    if not args.quiet:
        shown = pd.DataFrame(
            {
                "row": top.index[: args.top],
                "outlier_score": top["outlier_score"].round(4).to_numpy()[: args.top],
                "is_outlier": top["is_outlier"].to_numpy()[: args.top],
                args.column: top[args.column].to_numpy()[: args.top],
            }
        )
        _show(shown)
    if args.output:
        write_table(result, args.output)
        _note(args, f"wrote {len(result):,} scored rows to '{args.output}'")
    return 0


_DIVERSITY_COLUMNS = (
    "group",
    "n_samples",
    "mean_similarity",
    "nn_similarity_p50",
    "n_duplicate_pairs",
    "vendi_score",
)


def cmd_diversity(args: argparse.Namespace) -> int:
    """Summarise how varied the texts are, overall and per group."""
    from embedtasks.diversity import DiversityReport

    frame = read_table(args.input)
    texts = _texts(frame, args)
    groups = None
    if args.group_column:
        groups = _column(frame, args.group_column, args.input, option="--group-column")
        groups = groups.astype(str).to_numpy()
    _, X = _embed(args, texts)
    report = DiversityReport(
        duplicate_threshold=args.duplicate_threshold, random_state=0
    ).fit(X, groups=groups)
    table = report.to_frame()
    table.insert(0, "group", table.index.astype(str))
    if not args.quiet:
        shown = [c for c in _DIVERSITY_COLUMNS if c in table.columns]
        _show(table[shown].round(3))
        for (i, j), s in list(
            zip(report.duplicate_pairs_, report.duplicate_similarities_, strict=True)
        )[:5]:
            print(f"near-duplicates ({s:.3f}): {texts[i]!r} ~ {texts[j]!r}")
    if args.output:
        write_table(table, args.output)
        _note(args, f"wrote the report to '{args.output}'")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """Label each row: zero-shot from --labels, or from a labelled --train file."""
    from embedtasks.classify import NearestLabelClassifier

    if not args.labels and not args.train:
        raise CLIError(
            "give the classes: --labels 'a,b,c' (zero-shot) or --train FILE "
            "--label-column COL (examples)"
        )
    frame = read_table(args.input)
    texts = _texts(frame, args)
    embedder, X = _embed(args, texts)
    labels = (
        [x.strip() for x in args.labels.split(",") if x.strip()]
        if (args.labels)
        else None
    )
    clf = NearestLabelClassifier(
        embedder=embedder, labels=labels, template=args.template
    )
    if args.train:
        train = read_table(args.train)
        train_texts = _column_texts(train, args.column, args.train)
        y = _column(train, args.label_column, args.train, option="--label-column")
        clf.fit(embedder.transform(train_texts), y.to_numpy())
    else:
        clf.fit(X)
    proba = clf.predict_proba(X)
    result = frame.copy()
    result["label"] = clf.classes_[proba.argmax(axis=1)]
    result["probability"] = proba.max(axis=1).round(4)
    if not args.quiet:
        _show(result[[args.column, "label", "probability"]].head(args.top))
    if args.output:
        write_table(result, args.output)
        _note(args, f"wrote {len(result):,} labelled rows to '{args.output}'")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page: map, clusters, outliers, near-copies."""
    from embedtasks.cluster import EmbeddingClusterer
    from embedtasks.diversity import DiversityReport
    from embedtasks.report import report

    frame = read_table(args.input)
    texts = _texts(frame, args)
    groups = None
    if args.group_column:
        groups = _column(frame, args.group_column, args.input, option="--group-column")
        groups = groups.astype(str).to_numpy()
    _, X = _embed(args, texts)
    page = report(
        texts,
        X,
        groups=groups,
        clusterer=EmbeddingClusterer(
            n_clusters=args.n_clusters,
            min_cluster_size=args.min_cluster_size,
            random_state=args.random_state,
        ),
        diversity=DiversityReport(
            duplicate_threshold=args.duplicate_threshold, random_state=0
        ),
        title=args.title or f"embedtasks report: {Path(args.input).name}",
        max_text_chars=args.max_text_chars,
    )
    path = page.save(args.output)
    _note(args, f"wrote {page!r} to '{path}'")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run every task on the docstrings of the installed packages."""
    from embedtasks.demo import run_demo

    cache_dir = None if args.no_cache else (args.cache_dir or "default")
    progress = True if args.progress is None else args.progress
    run_demo(sys.stdout, n_texts=args.n_texts, cache_dir=cache_dir, progress=progress)
    return 0


def _finish(args: argparse.Namespace, result: Any) -> None:
    if not args.quiet:
        _show(result.drop(columns=["row"]) if "row" in result else result)
    if args.output:
        write_table(result, args.output)
        _note(args, f"wrote {len(result):,} rows to '{args.output}'")


# -- parser --------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        parser.add_argument("input", help="CSV, TSV, Parquet or JSON Lines file")
        parser.add_argument(
            "-c", "--column", default="text", help="column holding the texts (text)"
        )
    group = parser.add_argument_group("embedder")
    group.add_argument(
        "--model",
        help="local: a sentence-transformers name or path (all-MiniLM-L6-v2); "
        "with --base-url: the served model (text-embedding-3-small)",
    )
    group.add_argument(
        "--base-url",
        help="use an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1",
    )
    group.add_argument(
        "--openai",
        action="store_true",
        help="use OpenAI's API (key from $OPENAI_API_KEY) instead of the local model",
    )
    group.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (OPENAI_API_KEY)",
    )
    group.add_argument("--batch-size", type=int, help="texts per batch or request")
    group.add_argument(
        "--max-retries", type=int, help="endpoint: retries of a failed request (8)"
    )
    group.add_argument("--device", help="torch device for the local model (cpu)")
    group.add_argument(
        "--cache-dir",
        help="embedding cache ($EMBEDTASKS_CACHE_DIR or ~/.cache/embedtasks)",
    )
    group.add_argument("--no-cache", action="store_true", help="do not cache vectors")
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a terminal, for 1,000+ texts)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print less")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedtasks`` command."""
    parser = argparse.ArgumentParser(
        prog="embedtasks",
        description="Text embeddings at work: embed, search, cluster, flag outliers, "
        "measure diversity and classify the texts of a data file.",
        epilog="Start with: embedtasks demo",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Any, help: str, **kwargs: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, **kwargs)
        p.set_defaults(handler=handler)
        return p

    p = add("demo", cmd_demo, "run every task on the docstrings of installed packages")
    p.add_argument("--n-texts", type=int, default=3000, help="corpus size (3000)")
    _common(p, data=False)

    p = add("embed", cmd_embed, "embed a text column; write vectors (.npy or a table)")
    _common(p)
    p.add_argument("-o", "--output", help=".npy, or .parquet/.jsonl/.csv table")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print rows, unique, cached, tokens, requests and time; send nothing",
    )
    p.add_argument(
        "--vector-column", default="embedding", help="table output column (embedding)"
    )

    p = add("cache", cmd_cache, "inspect, check, compact or clear the vector cache")
    p.add_argument("action", choices=["info", "verify", "compact", "clear"])
    p.add_argument(
        "--cache-dir",
        help="embedding cache ($EMBEDTASKS_CACHE_DIR or ~/.cache/embedtasks)",
    )
    p.add_argument("--repair", action="store_true", help="verify: drop damaged vectors")

    p = add("search", cmd_search, "rank the rows of a file for each query (top k)")
    _common(p)
    p.add_argument("--query", action="append", help="a query (repeat for more)")
    p.add_argument("--queries-file", help="a text file, one query per line")
    p.add_argument("-k", type=int, default=5, help="results per query (5)")
    p.add_argument("--id-column", help="column to show beside each result")
    p.add_argument("-o", "--output", help="also write the results table here")

    p = add("cluster", cmd_cluster, "group similar rows; keywords per cluster")
    _common(p)
    p.add_argument(
        "--n-clusters", type=int, help="fixed number (KMeans); default HDBSCAN"
    )
    p.add_argument(
        "--min-cluster-size",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="HDBSCAN: an int, or auto = max(15, rows // 200) (auto)",
    )
    p.add_argument(
        "--reduction", choices=["auto", "umap", "pca", "none"], default="auto"
    )
    p.add_argument("--keywords", type=int, default=5, help="keywords per cluster (5)")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("-o", "--output", help="write the rows with a 'cluster' column")

    p = add("outliers", cmd_outliers, "score how unrelated each row is to the rest")
    _common(p)
    p.add_argument("--n-neighbors", type=int, default=10, help="neighbours (10)")
    p.add_argument(
        "--contamination",
        type=lambda v: v if v == "auto" else float(v),
        default="auto",
        help="share of outliers, or auto (Tukey fence)",
    )
    p.add_argument("--top", type=int, default=10, help="rows to print (10)")
    p.add_argument("-o", "--output", help="write every row with its score")

    p = add("diversity", cmd_diversity, "how varied are the texts (per group too)")
    _common(p)
    p.add_argument("--group-column", help="compare the groups of this column")
    p.add_argument(
        "--duplicate-threshold", type=float, default=0.95, help="near-duplicates (0.95)"
    )
    p.add_argument("-o", "--output", help="write the report table here")

    p = add("classify", cmd_classify, "label rows zero-shot (--labels) or by example")
    _common(p)
    p.add_argument("--labels", help="comma-separated class names (zero-shot)")
    p.add_argument("--template", default="{label}", help="label text template")
    p.add_argument("--train", help="a labelled file with the same text column")
    p.add_argument("--label-column", default="label", help="its label column (label)")
    p.add_argument("--top", type=int, default=10, help="rows to print (10)")
    p.add_argument("-o", "--output", help="write every row with its label")
    p = add("report", cmd_report, "one HTML page: map, clusters, outliers, copies")
    _common(p)
    p.add_argument("--group-column", help="diversity per group of this column")
    p.add_argument("-o", "--output", default="report.html", help="(report.html)")
    p.add_argument("--title", help="page title (the input file's name)")
    p.add_argument(
        "--n-clusters", type=int, help="fixed number (KMeans); default HDBSCAN"
    )
    p.add_argument(
        "--min-cluster-size",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="HDBSCAN: an int, or auto = max(15, rows // 200) (auto)",
    )
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument(
        "--duplicate-threshold", type=float, default=0.95, help="near-duplicates (0.95)"
    )
    p.add_argument(
        "--max-text-chars", type=int, default=300, help="texts cut to this (300)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``embedtasks`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return int(args.handler(args))
    except CLIError as exc:
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (EmbedTasksError, ImportError, ValueError, TypeError, OSError) as exc:
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `embedtasks search ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"embedtasks {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
