"""The ``embed`` and ``cache`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embedtasks.cli._args import CLIError, _common
from embedtasks.cli._io import _kind, write_table
from embedtasks.cli._run import _embed, _embedder, _emit, _load, _note


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
    from embedtasks._cachedir import resolve_cache_dir
    from embedtasks.embedders import EmbeddingCache
    from embedtasks.embedders._cache import index_path, is_cache
    from embedtasks.exceptions import CacheError

    where = resolve_cache_dir(args.cache_dir or "default")
    assert where is not None
    if not index_path(where).exists():
        # Only a cache the library made is read, changed or cleared: nothing
        # is created here (not even an empty index).
        print(f"no embedtasks cache in {where} (nothing to {args.action})")
        return 0
    if not is_cache(where):
        EmbeddingCache(where)  # raises the one-line "not an embedtasks cache"
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


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
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
