"""The ``search`` and ``recommend`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embedtasks.cli._args import (
    CLIError,
    _common,
    _integer,
    _number,
    owned,
)
from embedtasks.cli._io import Rows
from embedtasks.cli._run import _embed, _emit, _ids, _load, _save


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


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("search", cmd_search, "rank the rows of a file for each query (top k)")
    _common(p)
    p.add_argument("-q", "--query", action="append", help="a query (repeat for more)")
    p.add_argument("--queries-file", help="a text file, one query per line")
    owned(
        p,
        "-k",
        spec="embedtasks.neighbors:DotProductNeighbors",
        param="n_neighbors",
        help="results per query",
    )
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
    owned(
        p,
        "-k",
        spec="embedtasks.neighbors:DotProductNeighbors",
        param="n_neighbors",
        help="recommendations",
    )
    owned(
        p,
        "--diversity",
        spec="embedtasks.neighbors:DotProductNeighbors.recommend",
        param="diversity",
        type=_number(0, 1),
        help="0 ranks by similarity; up to 1 prefers variety (MMR)",
    )
    p.add_argument("-o", "--output", help="write the recommendations here")
