"""The ``embedtasks`` command line: data files in, results out.

Every data subcommand reads a CSV, TSV, Parquet, JSON Lines, JSON or text file,
takes its texts from one column (``--column``, default ``text``), embeds them (the
local model by default; an OpenAI-compatible endpoint with ``--base-url``), cached
on disk so a re-run costs nothing, and prints the estimator's DataFrame: a table
that fits the terminal, or CSV, JSON Lines or JSON (``--format``). ``-o`` writes
each artefact to a file (its format from its extension). Column names and 0-based
ranks are those of the Python DataFrames; ``index`` is the row of the input file
(0-based).

Arguments are checked before anything is embedded. Errors are one line on stderr
and a non-zero exit: 2 for bad arguments or input (a missing file or column, an
empty text), 1 for a failure while working.

This module is the only one in embedtasks that prints. It imports pandas,
scikit-learn and the models only when a command runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedtasks import __version__

__all__ = ["build_parser", "main"]

_READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
}
_COMPRESSED = {".gz", ".bz2", ".zip", ".xz", ".zst"}
_FORMATS = ("table", "csv", "jsonl", "json")


class CLIError(Exception):
    """A problem with the arguments or the input; exit status 2."""


# -- files ---------------------------------------------------------------------------
def _kind(path: Path, what: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    kind = _READERS.get(suffixes[-1] if suffixes else "")
    if kind is None or (what == "output file" and kind == "txt"):
        known = sorted(k for k in _READERS if what != "output file" or k != ".txt")
        raise CLIError(
            f"cannot tell the format of {what} '{path}' from its extension "
            f"{path.suffix!r}; use one of {', '.join(known)}"
        )
    return kind


def read_table(
    path: str | Path,
    *,
    text_columns: Sequence[str] = (),
    note: Callable[[str], None] | None = None,
) -> Any:
    """Read a data file into a pandas DataFrame, texts kept as they are.

    Cells are never guessed to be missing: "NA", "null" or "None" stay texts; in a
    CSV/TSV only an empty cell is. ``text_columns`` are read as strings (ids like
    "007" keep their zeros). A ``.txt`` file is one text per non-blank line, in a
    column ``text``. CSV files that are not UTF-8 are read as cp1252 (``note``
    says so); a ``;`` or ``|`` separated ``.csv`` is recognised.
    """
    import pandas as pd

    path = Path(path)
    kind = _kind(path, "input file")
    if not path.is_file():
        raise CLIError(f"input file '{path}' not found")
    try:
        if kind == "parquet":
            _need_parquet()
            return pd.read_parquet(path)
        if kind == "txt":
            lines = path.read_text("utf-8-sig", errors="replace").splitlines()
            return pd.DataFrame({"text": [t for t in lines if t.strip()]})
        if kind in {"json", "jsonl"}:
            with open(path, "rb") as f:
                array = f.read(64).lstrip().startswith(b"[")
            return pd.read_json(path, lines=not array, dtype=False)
        return _read_csv(path, kind, text_columns, note)
    except CLIError:
        raise
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CLIError(f"could not read '{path}' as {kind}: {reason}") from exc


def _read_csv(
    path: Path,
    kind: str,
    text_columns: Sequence[str],
    note: Callable[[str], None] | None,
) -> Any:
    import pandas as pd

    options: dict[str, Any] = {
        "keep_default_na": False,
        "na_values": [""],
        "dtype": dict.fromkeys(text_columns, str),
    }
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            sep = "\t" if kind == "tsv" else _separator(path, encoding)
            return pd.read_csv(path, sep=sep, encoding=encoding, **options)
        except UnicodeDecodeError:
            if note is not None:
                note(f"'{path}' is not UTF-8; reading it as cp1252")
        except pd.errors.EmptyDataError as exc:
            raise CLIError(f"input file '{path}' is empty") from exc
    return pd.read_csv(  # pragma: no cover - cp1252 decodes nearly every byte
        path, sep=_separator(path, "latin-1"), encoding="latin-1", **options
    )


def _separator(path: Path, encoding: str) -> str:
    """',' unless the header line has none and holds ';', tab or '|'."""
    if path.suffix.lower() in _COMPRESSED:
        return ","
    with open(path, encoding=encoding, newline="") as f:
        header = f.readline()
    if "," in header:
        return ","
    counts = {sep: header.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def write_table(frame: Any, path: str | Path) -> None:
    """Write a DataFrame as CSV/TSV/Parquet/JSON Lines/JSON, by extension."""
    path = Path(path)
    kind = _kind(path, "output file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        _need_parquet()
        frame.to_parquet(path, index=False)
    elif kind in {"jsonl", "json"}:
        frame.to_json(path, orient="records", lines=kind == "jsonl", force_ascii=False)
    else:
        _flat(frame).to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)


def _flat(frame: Any) -> Any:
    """Lists (keywords, representatives) joined with '; ' for CSV cells."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, list | tuple)).any():
            out[column] = out[column].map(
                lambda v: "; ".join(map(str, v)) if isinstance(v, list | tuple) else v
            )
    return out


def _need_parquet() -> None:
    from embedtasks._optional import import_optional

    import_optional("pyarrow", extra="parquet", purpose="Parquet files")


def _column(frame: Any, name: str, path: str, *, option: str = "--column") -> Any:
    if name not in frame.columns:
        names = list(frame.columns)
        columns = ", ".join(map(repr, names[:30]))
        if len(names) > 30:
            columns += f" and {len(names) - 30} more"
        raise CLIError(
            f"column {name!r} not found in '{path}'; it has {columns}. "
            f"Choose one with {option}"
        )
    return frame[name]


@dataclass
class Rows:
    """The texts of one column, and which rows of the file they come from."""

    texts: list[str]
    kept: Any  # ndarray of int: file row of each text
    n_rows: int  # rows in the file

    def spread(self, values: Any, dtype: str | None = None) -> Any:
        """A column for every row of the file: ``values`` at the kept rows, NA
        (empty) at the skipped ones."""
        import pandas as pd

        series = pd.Series(values, index=self.kept)
        if dtype is not None:
            series = series.astype(dtype)
        return series.reindex(range(self.n_rows)).array


def _rows(
    frame: Any, column: str, path: str, on_empty: str, note: Callable[[str], None]
) -> Rows:
    """The texts of ``column``; empty cells raise or are skipped (``--on-empty``)."""
    import numpy as np
    import pandas as pd

    values = _column(frame, column, path)
    filled = values.dropna()
    numbers = values.dtype.kind in "iufcb" or (
        len(filled) and pd.to_numeric(filled, errors="coerce").notna().all()
    )
    if numbers and len(filled):
        others = [
            c
            for c in frame.columns
            if c != column
            and frame[c].dtype.kind not in "iufcbmM"
            and pd.to_numeric(frame[c].dropna(), errors="coerce").isna().any()
        ]
        hint = f" Text columns: {', '.join(map(repr, others[:10]))}." if others else ""
        raise CLIError(
            f"column {column!r} of '{path}' holds numbers (e.g. "
            f"{filled.iloc[0]!r}), not texts; choose the text column with "
            f"--column.{hint}"
        )
    texts: list[str] = []
    kept: list[int] = []
    empty: list[int] = []
    for row, value in enumerate(values.tolist()):
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            empty.append(row)
        elif not isinstance(value, str):
            texts.append(str(value))
            kept.append(row)
        elif not value.strip():
            empty.append(row)
        else:
            texts.append(value)
            kept.append(row)
    if empty:
        listed = ", ".join(map(str, empty[:8])) + (
            f" and {len(empty) - 8:,} more" if len(empty) > 8 else ""
        )
        one = len(empty) == 1
        which = f"row {listed}" if one else f"rows {listed}"
        if not texts:
            raise CLIError(f"column {column!r} in '{path}' has no text in any row")
        if on_empty == "error":
            raise CLIError(
                f"{which} (0-based) of column {column!r} in '{path}' "
                f"{'is' if one else 'are'} empty; fill or remove "
                f"{'it' if one else 'them'}, or pass --on-empty skip to leave empty "
                "rows out (they stay in the output, with empty results)"
            )
        note(f"skipped {len(empty):,} empty {'row' if one else 'rows'}: {listed}")
    if not texts:
        raise CLIError(f"'{path}' has no rows")
    return Rows(texts, np.asarray(kept, dtype=np.intp), len(values))


def _load(args: argparse.Namespace, *extra: str | None) -> tuple[Any, Rows]:
    """The input file and its texts; ``extra`` columns must exist too."""
    columns = [args.column, args.id_column, *extra]
    text_columns = [c for c in columns if c]
    frame = read_table(args.input, text_columns=text_columns, note=_noter(args))
    rows = _rows(frame, args.column, args.input, args.on_empty, _noter(args))
    if args.id_column:
        _column(frame, args.id_column, args.input, option="--id-column")
    return frame, rows


def _groups(frame: Any, args: argparse.Namespace, rows: Rows) -> Any:
    """The --group-column label of each embedded row (None without the flag)."""
    if not args.group_column:
        return None
    column = _column(frame, args.group_column, args.input, option="--group-column")
    return column.fillna("(missing)").astype(str).to_numpy()[rows.kept]


def _ids(frame: Any, args: argparse.Namespace, rows: Rows) -> Any:
    if not args.id_column:
        return None
    return frame[args.id_column].to_numpy()[rows.kept]


# -- embedder ------------------------------------------------------------------------
def _cache_setting(args: argparse.Namespace) -> str | None:
    return None if args.no_cache else (args.cache_dir or "default")


def _embedder(args: argparse.Namespace) -> Any:
    cache_dir = _cache_setting(args)
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


def _embed(args: argparse.Namespace, texts: list[str]) -> tuple[Any, Any]:
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


def _say(args: argparse.Namespace, message: object) -> None:
    """A note or warning on stderr, ``embedtasks CMD: ...``, wrapped to the terminal.

    Errors stay on one line (easy to grep in a log), as the table output does not
    follow them.
    """
    import textwrap

    from embedtasks._terminal import terminal_width

    width = terminal_width()
    lines = f"embedtasks {args.command}: {message}".splitlines() or [""]
    for line in lines:
        wrapped = textwrap.wrap(
            line, width, subsequent_indent="  ", break_long_words=False,
            break_on_hyphens=False,
        )  # fmt: skip
        print("\n".join(wrapped or [line]), file=sys.stderr)


def _note(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        _say(args, message)


def _noter(args: argparse.Namespace) -> Callable[[str], None]:
    return lambda message: _note(args, message)


# -- output --------------------------------------------------------------------------
def _emit(
    args: argparse.Namespace,
    frame: Any,
    *,
    text_columns: Sequence[str] = (),
    priority: Sequence[str] = (),
    max_rows: int | None = None,
    title: str | None = None,
) -> None:
    """Print ``frame`` in ``--format``: a table that fits the terminal, or data."""
    from embedtasks import _terminal

    if max_rows is not None:
        frame_out = frame.head(max_rows) if args.format != "table" else frame
    else:
        frame_out = frame
    if args.format == "csv":
        _flat(frame_out).to_csv(sys.stdout, index=False)
    elif args.format in {"jsonl", "json"}:
        text = frame_out.to_json(
            orient="records", lines=args.format == "jsonl", force_ascii=False
        )
        sys.stdout.write(text.rstrip("\n") + "\n" if text.strip() else "")
    else:
        width = _terminal.terminal_width()
        if title is not None:
            print(_terminal.clip(title, width))
        lines = _terminal.render(
            frame,
            total_width=width,
            text_columns=text_columns,
            priority=priority,
            max_rows=max_rows,
        )
        print("\n".join(lines))
    sys.stdout.flush()


def _save(args: argparse.Namespace, frame: Any, path: str | None, what: str) -> None:
    if path:
        write_table(frame, path)
        _note(args, f"wrote {len(frame):,} rows ({what}) to '{path}'")


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail on an output file of unknown type before reading or embedding."""
    tables = {"search", "recommend", "cluster", "outliers", "diversity", "classify"}
    for name in ("output", "summary_output", "pairs_output"):
        path = getattr(args, name, None)
        if path and (name != "output" or args.command in tables):
            kind = _kind(Path(path), "output file")
            if kind == "parquet":
                _need_parquet()


# -- subcommands ---------------------------------------------------------------------
def cmd_embed(args: argparse.Namespace) -> int:
    """Embed a column and write the vectors (.npy, or a table with a vector column)."""
    import numpy as np

    out = Path(args.output) if args.output else None
    if out is None and not args.dry_run:
        raise CLIError("-o/--output is required (or pass --dry-run)")
    if out is not None and out.suffix.lower() != ".npy":
        _kind(out, "output file")
    frame, rows = _load(args)
    if args.dry_run:
        return _dry_run(args, rows.texts)
    assert out is not None
    _, X = _embed(args, rows.texts)
    if len(rows.kept) < rows.n_rows:  # skipped rows: NaN vectors keep the row order
        full = np.full((rows.n_rows, X.shape[1]), np.nan, dtype=np.float32)
        full[rows.kept] = X
        X = full
    if out.suffix.lower() == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, X)
    else:
        frame = frame.copy()
        if _kind(out, "output file") in {"csv", "tsv"}:
            frame[args.vector_column] = [" ".join(f"{v:.7g}" for v in row) for row in X]
        else:
            frame[args.vector_column] = [None if np.isnan(row[0]) else row for row in X]
        write_table(frame, out)
    _note(args, f"wrote {X.shape[0]:,} x {X.shape[1]} float32 vectors to '{out}'")
    return 0


def _dry_run(args: argparse.Namespace, texts: list[str]) -> int:
    """Print what embedding would cost; send nothing."""
    import pandas as pd

    figures = _embedder(args).estimate(texts)
    if args.format != "table":
        _emit(args, pd.DataFrame([figures]))
        return 0
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
    from embedtasks._cache import EmbeddingCache, resolve_cache_dir
    from embedtasks.exceptions import CacheError

    where = resolve_cache_dir(args.cache_dir or "default")
    assert where is not None
    if args.action == "clear":
        try:
            with EmbeddingCache(where) as cache:
                n = cache.clear()
            print(f"cleared {n:,} vectors from {cache.path}")
        except CacheError:
            removed = EmbeddingCache.remove_files(where)
            print(f"removed the damaged cache ({len(removed)} files) in {where}")
        return 0
    mib = 2.0**20
    with EmbeddingCache(where) as cache:
        if args.action == "info":
            info = cache.info()
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
        print(
            f"compacted {report['vectors']:,} vectors ({report['dropped']:,} damaged "
            f"dropped): {report['bytes_before'] / mib:,.1f} MiB -> "
            f"{report['bytes_after'] / mib:,.1f} MiB"
        )
        return 0


def _with_texts(frame: Any, rows: Rows, args: argparse.Namespace, source: Any) -> Any:
    """``frame`` from an estimator, its ``index`` made the file's row, plus the
    text of each row."""
    frame["index"] = rows.kept[frame["index"].to_numpy()]
    frame[args.column] = source.loc[frame["index"]].to_numpy()
    return frame


def _read_queries(args: argparse.Namespace) -> list[str]:
    queries = [q for q in (args.query or []) if q.strip()]
    if args.queries_file:
        path = Path(args.queries_file)
        if not path.is_file():
            raise CLIError(f"queries file '{path}' not found")
        lines = path.read_text("utf-8-sig", errors="replace").splitlines()
        queries += [q.strip() for q in lines if q.strip()]
    if not queries:
        raise CLIError("give at least one query: --query TEXT or --queries-file FILE")
    return queries


def cmd_search(args: argparse.Namespace) -> int:
    """Rank the rows of a file for each query; print (and optionally save) the top k."""
    from embedtasks.neighbors import DotProductNeighbors

    queries = _read_queries(args)
    frame, rows = _load(args)
    k = min(args.k, len(rows.texts))
    embedder, X = _embed(args, rows.texts)
    nn = DotProductNeighbors(n_neighbors=k).fit(X, _ids(frame, args, rows))
    result = nn.search(embedder.transform(queries), as_frame=True)
    result.insert(1, "query_text", [queries[q] for q in result["query"]])
    result = _with_texts(result, rows, args, frame[args.column])
    _show_by_query(args, result)
    _save(args, result, args.output, "search results")
    return 0


def _show_by_query(args: argparse.Namespace, result: Any) -> None:
    """Search results: in a table, one block per query under its text."""
    if args.format != "table":
        _emit(args, result)
        return
    for i, (q, block) in enumerate(result.groupby("query", sort=True)):
        if i:
            print()
        text = block["query_text"].iloc[0]
        _emit(
            args,
            block.drop(columns=["query", "query_text"]),
            text_columns=[args.column],
            title=f"query {q}: {text}",
        )


def _items(args: argparse.Namespace, frame: Any, rows: Rows) -> tuple[Any, Any]:
    """Positions among the embedded rows of --row/--id items and --exclude rows."""
    import numpy as np

    wanted = list(args.row or [])
    if args.id:
        if not args.id_column:
            raise CLIError("--id needs --id-column COL (the column holding the ids)")
        ids = frame[args.id_column].astype(str).to_numpy()
        for value in args.id:
            found = np.flatnonzero(ids == value)
            if not found.size:
                sample = ", ".join(map(repr, ids[:5]))
                raise CLIError(
                    f"--id {value!r} is not in column {args.id_column!r} of "
                    f"'{args.input}' (it holds e.g. {sample})"
                )
            wanted.append(int(found[0]))
    if not wanted:
        raise CLIError("say what you like: --row N (0-based row) or --id ID")

    def positions(values: list[int], flag: str) -> Any:
        out = []
        for row in values:
            if not 0 <= row < rows.n_rows:
                raise CLIError(
                    f"{flag} {row} is outside the {rows.n_rows:,} rows of "
                    f"'{args.input}' (rows count from 0)"
                )
            at = int(np.searchsorted(rows.kept, row))
            if at >= len(rows.kept) or rows.kept[at] != row:
                raise CLIError(f"{flag} {row} is an empty row (skipped)")
            out.append(at)
        return np.asarray(out, dtype=np.intp)

    kept = set(rows.kept.tolist())
    exclude = positions(  # an empty row is never recommended anyway
        [r for r in args.exclude or [] if r in kept or not 0 <= r < rows.n_rows],
        "--exclude",
    )
    return positions(wanted, "--row"), exclude


def cmd_recommend(args: argparse.Namespace) -> int:
    """More like these rows (by row or id), the liked rows themselves excluded."""
    from embedtasks.neighbors import DotProductNeighbors

    frame, rows = _load(args)
    liked, exclude = _items(args, frame, rows)
    if len(rows.texts) <= len(set(liked.tolist())):
        raise CLIError("nothing left to recommend: every row is a liked row")
    _, X = _embed(args, rows.texts)
    nn = DotProductNeighbors(n_neighbors=args.k).fit(X, _ids(frame, args, rows))
    result = nn.recommend(
        liked, args.k, exclude=exclude, diversity=args.diversity, as_frame=True
    )
    result = _with_texts(result, rows, args, frame[args.column])
    liked_rows = ", ".join(str(rows.kept[i]) for i in liked)
    _emit(
        args,
        result,
        text_columns=[args.column],
        title=f"more like row{'s' if len(liked) > 1 else ''} {liked_rows}",
    )
    _save(args, result, args.output, "recommendations")
    return 0


def _clusterer(args: argparse.Namespace, n: int) -> Any:
    """The clusterer of the --n-clusters ... flags, checked against ``n`` texts."""
    from embedtasks.cluster import EmbeddingClusterer

    if args.n_clusters is not None and args.n_clusters > n:
        raise CLIError(f"--n-clusters {args.n_clusters} is more than the {n:,} texts")
    if isinstance(args.min_cluster_size, int) and args.min_cluster_size > n:
        raise CLIError(
            f"--min-cluster-size {args.min_cluster_size} is more than the {n:,} texts"
        )
    return EmbeddingClusterer(
        n_clusters=args.n_clusters,
        reduction=None if args.reduction == "none" else args.reduction,
        min_cluster_size=args.min_cluster_size,
        assign_noise=args.assign_noise,
        max_noise=args.max_noise,
        random_state=args.random_state,
        cache_dir=_cache_setting(args),
    )


def cmd_cluster(args: argparse.Namespace) -> int:
    """Cluster the rows; print a per-cluster summary, save labels with -o."""
    frame, rows = _load(args)
    clusterer = _clusterer(args, len(rows.texts))
    _, X = _embed(args, rows.texts)
    labels = clusterer.fit_predict(X)
    summary = clusterer.summary(rows.texts, n_keywords=args.keywords)
    noise = int((labels == -1).sum())
    _note(args, f"{clusterer.n_clusters_} clusters, {noise:,} noise rows (-1)")
    _emit(
        args,
        summary,
        text_columns=["keywords", "representative_texts"],
        priority=["cluster", "name", "size", "share", "mean_probability"],
    )
    _save(args, summary, args.summary_output, "cluster summary")
    if args.output:
        out = frame.copy()
        out["cluster"] = rows.spread(labels, "Int64")
        out["probability"] = rows.spread(clusterer.probabilities_)
        _save(args, out, args.output, "rows with 'cluster'")
    return 0


def cmd_outliers(args: argparse.Namespace) -> int:
    """Score how unrelated each row is to the rest; print the most unusual."""
    import pandas as pd

    from embedtasks.outliers import OutlierScorer

    frame, rows = _load(args)
    if args.n_neighbors >= len(rows.texts):
        raise CLIError(
            f"--n-neighbors {args.n_neighbors} needs more than {args.n_neighbors} "
            f"texts; '{args.input}' has {len(rows.texts):,}"
        )
    scorer = OutlierScorer(
        n_neighbors=args.n_neighbors, contamination=args.contamination
    )
    _, X = _embed(args, rows.texts)
    flags = scorer.fit_predict(X)
    _note(args, f"{int((flags == -1).sum()):,} of {len(flags):,} rows flagged")
    result = pd.DataFrame({"index": rows.kept})
    ids = _ids(frame, args, rows)
    if ids is not None:
        result["id"] = ids
    result["outlier_score"] = -scorer.training_scores_
    result["is_outlier"] = flags == -1
    result[args.column] = rows.texts
    top = result.sort_values("outlier_score", ascending=False, kind="stable")
    _emit(
        args,
        top.reset_index(drop=True),
        text_columns=[args.column],
        max_rows=args.top or None,
    )
    if args.output:
        out = frame.copy()
        out["outlier_score"] = rows.spread(result["outlier_score"].to_numpy())
        out["is_outlier"] = rows.spread(flags == -1, "boolean")
        _save(args, out, args.output, "scored rows")
    return 0


_DIVERSITY_FIRST = (
    "group",
    "n_samples",
    "mean_similarity",
    "nn_similarity_p50",
    "n_duplicate_pairs",
    "vendi_score",
    "vendi_share",
)


def cmd_diversity(args: argparse.Namespace) -> int:
    """Summarise how varied the texts are, overall and per group."""
    from embedtasks.diversity import DiversityReport

    frame, rows = _load(args, args.group_column)
    groups = _groups(frame, args, rows)
    if len(rows.texts) < 2:
        raise CLIError(f"diversity needs at least 2 texts; '{args.input}' has 1")
    report = DiversityReport(
        duplicate_threshold=args.duplicate_threshold, random_state=0
    )
    _, X = _embed(args, rows.texts)
    report.fit(X, groups=groups)
    table = report.to_frame()
    table.insert(0, "group", table.index.astype(str))
    table = table.reset_index(drop=True)
    pairs = _pairs(report, rows, frame, args)
    _emit(args, table, priority=_DIVERSITY_FIRST)
    if args.format == "table" and len(pairs):
        print()
        _emit(
            args,
            pairs,
            text_columns=[f"{args.column}_a", f"{args.column}_b"],
            max_rows=5,
            title=f"near-duplicate pairs (similarity >= {args.duplicate_threshold}): "
            f"{report.n_duplicate_pairs_:,}",
        )
    _save(args, table, args.output, "diversity per group")
    _save(args, pairs, args.pairs_output, "near-duplicate pairs")
    return 0


def _pairs(report: Any, rows: Rows, frame: Any, args: argparse.Namespace) -> Any:
    """The near-duplicate pairs as a table of file rows, ids and texts."""
    import pandas as pd

    a, b = (rows.kept[report.duplicate_pairs_[:, j]] for j in (0, 1))
    pairs = pd.DataFrame(
        {"index_a": a, "index_b": b, "similarity": report.duplicate_similarities_}
    )
    if args.id_column:
        ids = frame[args.id_column].to_numpy()
        pairs["id_a"], pairs["id_b"] = ids[a], ids[b]
    texts = frame[args.column].to_numpy()
    pairs[f"{args.column}_a"], pairs[f"{args.column}_b"] = texts[a], texts[b]
    return pairs


def cmd_classify(args: argparse.Namespace) -> int:
    """Label each row: zero-shot from --labels, or from a labelled --train file."""
    import pandas as pd

    from embedtasks.classify import NearestLabelClassifier

    labels = None
    if args.labels:
        labels = list(dict.fromkeys(x.strip() for x in args.labels.split(",")))
        labels = [x for x in labels if x]
        if len(labels) < 2:
            raise CLIError(f"--labels needs at least two classes, got {args.labels!r}")
    elif not args.train:
        raise CLIError(
            "give the classes: --labels 'a,b,c' (zero-shot) or --train FILE "
            "--label-column COL (examples)"
        )
    frame, rows = _load(args)
    train_rows = y = None
    if args.train:
        train = read_table(
            args.train, text_columns=[args.column, args.label_column], note=_noter(args)
        )
        train_rows = _rows(train, args.column, args.train, args.on_empty, _noter(args))
        y_all = _column(train, args.label_column, args.train, option="--label-column")
        y = y_all.to_numpy()[train_rows.kept]
        if pd.isna(y).any():
            row = int(train_rows.kept[pd.isna(y).argmax()])
            raise CLIError(
                f"row {row} of '{args.train}' has no label in column "
                f"{args.label_column!r}; label it or remove it"
            )
    embedder, X = _embed(args, rows.texts)
    clf = NearestLabelClassifier(
        embedder=embedder, labels=labels, template=args.template
    )
    if train_rows is not None:
        clf.fit(embedder.transform(train_rows.texts), y)
    else:
        clf.fit(X)
    proba = clf.predict_proba(X)
    predicted = clf.classes_[proba.argmax(axis=1)]
    result = pd.DataFrame({"index": rows.kept})
    ids = _ids(frame, args, rows)
    if ids is not None:
        result["id"] = ids
    result["label"] = predicted
    result["probability"] = proba.max(axis=1).round(4)
    result[args.column] = rows.texts
    _emit(args, result, text_columns=[args.column], max_rows=args.top or None)
    if args.output:
        out = frame.copy()
        out["label"] = rows.spread(predicted)
        out["probability"] = rows.spread(result["probability"].to_numpy())
        _save(args, out, args.output, "labelled rows")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page: map, clusters, outliers, near-copies."""
    from embedtasks.diversity import DiversityReport
    from embedtasks.report import report

    frame, rows = _load(args, args.group_column)
    texts = rows.texts
    groups = _groups(frame, args, rows)
    clusterer = _clusterer(args, len(texts))
    _, X = _embed(args, texts)
    page = report(
        texts,
        X,
        groups=groups,
        clusterer=clusterer,
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

    progress = True if args.progress is None else args.progress
    run_demo(
        sys.stdout,
        n_texts=args.n_texts,
        cache_dir=_cache_setting(args),
        progress=progress,
    )
    return 0


# -- argument types: checked by argparse, before anything is read or embedded -------
def _ranged(
    kind: str,
    convert: Callable[[str], Any],
    low: float,
    high: float | None = None,
    *,
    open_low: bool = False,
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the value, then check it is in range."""

    def parse(value: str) -> Any:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {kind}, got {value!r}"
            ) from None
        below = number <= low if open_low else number < low
        if below or (high is not None and number > high) or number != number:
            where = (
                f">= {low:g}"
                if high is None
                else f"in {'(' if open_low else '['}{low:g}, {high:g}]"
            )
            raise argparse.ArgumentTypeError(f"must be {where}, got {value}")
        return number

    parse.__name__ = kind
    return parse


def _integer(low: int) -> Callable[[str], int]:
    return _ranged(f"a whole number >= {low}", int, low)


def _number(
    low: float, high: float, *, open_low: bool = False
) -> Callable[[str], float]:
    return _ranged("a number", float, low, high, open_low=open_low)


def _or_auto(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def either(value: str) -> Any:
        return "auto" if value == "auto" else parse(value)

    either.__name__ = getattr(parse, "__name__", "value")
    return either


# -- parser --------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        parser.add_argument(
            "input", help="CSV, TSV, Parquet, JSON Lines, JSON or .txt file"
        )
        parser.add_argument(
            "-c", "--column", default="text", help="column holding the texts (text)"
        )
        parser.add_argument(
            "--id-column", help="column of row ids, shown as 'id' beside each result"
        )
        parser.add_argument(
            "--on-empty",
            choices=["error", "skip"],
            default="error",
            help="an empty text cell: stop with an error (default), or skip the row "
            "(listed on stderr; empty in the output)",
        )
        parser.add_argument(
            "--format",
            choices=_FORMATS,
            default="table",
            help="printed output: a table fitted to the terminal ($COLUMNS), or "
            "csv, jsonl, json (table)",
        )
    group = parser.add_argument_group("embedder")
    group.add_argument(
        "--model",
        help="local: a model name or directory (all-MiniLM-L6-v2); "
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
    group.add_argument(
        "--batch-size", type=_integer(1), help="texts per batch or request"
    )
    group.add_argument(
        "--max-retries",
        type=_integer(0),
        help="endpoint: retries of a failed request (8)",
    )
    group.add_argument("--device", help="device for the local model (cpu)")
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
    parser.add_argument(
        "--quiet", action="store_true", help="no notes on stderr (results still print)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``embedtasks`` command."""
    parser = argparse.ArgumentParser(
        prog="embedtasks",
        description="Text embeddings at work: embed, search, recommend, cluster, "
        "flag outliers, measure diversity and classify the texts of a data file.",
        epilog="Start with: embedtasks demo",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Any, help: str, **kwargs: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, **kwargs)
        p.set_defaults(handler=handler)
        return p

    p = add("demo", cmd_demo, "run every task on the docstrings of installed packages")
    p.add_argument("--n-texts", type=_integer(20), default=3000, help="corpus (3000)")
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
    p.add_argument("-q", "--query", action="append", help="a query (repeat for more)")
    p.add_argument("--queries-file", help="a text file, one query per line")
    p.add_argument("-k", type=_integer(1), default=5, help="results per query (5)")
    p.add_argument("-o", "--output", help="write the results table here")

    p = add("recommend", cmd_recommend, "more like given rows, themselves excluded")
    _common(p)
    p.add_argument(
        "--row", type=_integer(0), action="append", help="a liked row, 0-based (repeat)"
    )
    p.add_argument("--id", action="append", help="a liked row by its --id-column value")
    p.add_argument(
        "--exclude", type=_integer(0), action="append", help="a row never to recommend"
    )
    p.add_argument("-k", type=_integer(1), default=5, help="recommendations (5)")
    p.add_argument(
        "--diversity",
        type=_number(0, 1),
        default=0.0,
        help="0 ranks by similarity; up to 1 prefers variety (MMR) (0)",
    )
    p.add_argument("-o", "--output", help="write the recommendations here")

    p = add("cluster", cmd_cluster, "group similar rows; keywords per cluster")
    _common(p)
    _cluster_flags(p)
    p.add_argument("--keywords", type=_integer(1), default=5, help="per cluster (5)")
    p.add_argument("-o", "--output", help="write every row with 'cluster' here")
    p.add_argument("--summary-output", help="write the cluster summary here")

    p = add("outliers", cmd_outliers, "score how unrelated each row is to the rest")
    _common(p)
    p.add_argument(
        "--n-neighbors", type=_integer(1), default=10, help="neighbours (10)"
    )
    p.add_argument(
        "--contamination",
        type=_or_auto(_number(0, 0.5, open_low=True)),
        default="auto",
        help="share of outliers in (0, 0.5], or auto (Tukey fence)",
    )
    p.add_argument(
        "--top", type=_integer(0), default=10, help="rows to print, 0: all (10)"
    )
    p.add_argument("-o", "--output", help="write every row with its score")

    p = add("diversity", cmd_diversity, "how varied are the texts (per group too)")
    _common(p)
    p.add_argument("--group-column", help="compare the groups of this column")
    p.add_argument(
        "--duplicate-threshold",
        type=_number(-1, 1),
        default=0.95,
        help="near-duplicates (0.95)",
    )
    p.add_argument("-o", "--output", help="write the per-group table here")
    p.add_argument("--pairs-output", help="write the near-duplicate pairs here")

    p = add("classify", cmd_classify, "label rows zero-shot (--labels) or by example")
    _common(p)
    p.add_argument("--labels", help="comma-separated class names (zero-shot)")
    p.add_argument("--template", default="{label}", help="label text template")
    p.add_argument("--train", help="a labelled file with the same text column")
    p.add_argument("--label-column", default="label", help="its label column (label)")
    p.add_argument(
        "--top", type=_integer(0), default=10, help="rows to print, 0: all (10)"
    )
    p.add_argument("-o", "--output", help="write every row with its label")
    p = add("report", cmd_report, "one HTML page: map, clusters, outliers, copies")
    _common(p)
    p.add_argument("--group-column", help="diversity per group of this column")
    p.add_argument("-o", "--output", default="report.html", help="(report.html)")
    p.add_argument("--title", help="page title (the input file's name)")
    _cluster_flags(p)
    p.add_argument(
        "--duplicate-threshold",
        type=_number(-1, 1),
        default=0.95,
        help="near-duplicates (0.95)",
    )
    p.add_argument(
        "--max-text-chars", type=_integer(1), default=300, help="texts cut to (300)"
    )
    return parser


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    """The clusterer's flags, shared by ``cluster`` and ``report``."""
    p.add_argument(
        "--n-clusters", type=_integer(1), help="fixed number (KMeans); default HDBSCAN"
    )
    p.add_argument(
        "--min-cluster-size",
        type=_or_auto(_integer(2)),
        default="auto",
        help="HDBSCAN: an integer >= 2, or auto = max(15, rows // 200) (auto)",
    )
    p.add_argument(
        "--reduction", choices=["auto", "umap", "pca", "none"], default="auto"
    )
    p.add_argument(
        "--assign-noise",
        action="store_true",
        help="give every noise row (-1) its nearest cluster",
    )
    p.add_argument(
        "--max-noise",
        type=_number(0, 1),
        default=0.15,
        help="HDBSCAN: at most this share of rows left as noise, the closest "
        "noise rows joining clusters (0.15; 1 keeps all of HDBSCAN's noise)",
    )
    p.add_argument("--random-state", type=int, default=0)


def _warning_printer(args: argparse.Namespace) -> Callable[..., None]:
    """Warnings as one line each, like the errors (no source line, no path)."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        _say(args, f"warning: {message}")

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``embedtasks`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a text that the terminal cannot show
            stream.reconfigure(errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(args)
            _check_outputs(args)
            return int(args.handler(args))
    except CLIError as exc:
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `embedtasks search ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print(f"embedtasks {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from embedtasks.exceptions import EmbedTasksError

        known = (EmbedTasksError, ImportError, ValueError, TypeError, OSError)
        if not isinstance(exc, known):
            raise
        print(f"embedtasks {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
