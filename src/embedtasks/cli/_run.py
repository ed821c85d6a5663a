"""What every data command shares: the embedder, notes on stderr, the output."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from embedtasks.cli._args import CLIError
from embedtasks.cli._io import (
    Rows,
    _column,
    _flat,
    _kind,
    _need_parquet,
    read_table,
    write_table,
)


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
            if isinstance(value, list | tuple | dict | set) or hasattr(value, "shape"):
                raise CLIError(
                    f"column {column!r} of '{path}' holds lists, not texts (row "
                    f"{row} has a {type(value).__name__}); choose a text column "
                    "with --column, or join the items into one text per row first"
                )
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
        from embedtasks.embedders._openai import OpenAIEmbedder

        return OpenAIEmbedder(
            model=args.model or "text-embedding-3-small",
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            cache_dir=cache_dir,
            progress=progress,
            **({"batch_size": args.batch_size} if args.batch_size else {}),
            **({} if args.max_retries is None else {"max_retries": args.max_retries}),
            **({"long_text": args.long_text} if args.long_text else {}),
        )
    from embedtasks.embedders._local import LocalEmbedder

    return LocalEmbedder(
        model=args.model or "all-MiniLM-L6-v2",
        device=args.device,
        cache_dir=cache_dir,
        progress=progress,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
        **({"long_text": args.long_text} if args.long_text else {}),
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

    from embedtasks.cli._terminal import terminal_width

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
    from embedtasks.cli import _terminal

    frame_out = frame  # --top shortens the terminal table only: data keeps every row
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail on an output file of unknown type, one naming an input file, or a
    missing optional library (pyarrow for Parquet, plotly for the report), before
    reading or embedding: the error names the fix."""
    tables = {
        "search", "recommend", "cluster", "outliers", "diversity", "classify",
        "dedupe", "leakage", "drift",
    }  # fmt: skip
    sources = (
        ("the input", "input"),
        ("the TEST", "test"),
        ("the --train", "train"),
        ("the --queries-file", "queries_file"),
        ("the reference", "reference"),
    )
    inputs = [
        (flag, Path(path))
        for flag, name in sources
        if (path := getattr(args, name, None))
    ]
    outputs = ("output", "summary_output", "pairs_output", "examples_output")
    for name in outputs:
        path = getattr(args, name, None)
        if not path:
            continue
        for flag, source in inputs:
            if _same_file(Path(path), source):
                option = "--" + name.replace("_", "-")
                raise CLIError(
                    f"{option} '{path}' is {flag} file: writing there would "
                    "overwrite your data. Name another output file"
                )
        embed_table = args.command == "embed" and Path(str(path)).suffix != ".npy"
        if name != "output" or args.command in tables or embed_table:
            kind = _kind(Path(path), "output file")
            if kind == "parquet":
                _need_parquet()
    if args.command == "report":
        from embedtasks._optional import import_optional

        import_optional("plotly", extra="report", purpose="embedtasks report")


def _warning_printer(args: argparse.Namespace) -> Callable[..., None]:
    """Warnings as one line each, like the errors (no source line, no path)."""

    def show(message: Warning | str, *_: object, **__: object) -> None:
        _say(args, f"warning: {message}")

    return show
