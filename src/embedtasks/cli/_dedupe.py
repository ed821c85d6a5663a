"""The ``dedupe`` and ``leakage`` commands (``NearDuplicates``)."""

from __future__ import annotations

import argparse
from typing import Any

from embedtasks.cli._args import (
    CLIError,
    _common,
    _integer,
    _number,
    _or_auto,
    owned,
)
from embedtasks.cli._io import Rows, read_table
from embedtasks.cli._run import (
    _embed,
    _emit,
    _ids,
    _load,
    _note,
    _noter,
    _rows,
    _save,
)

_OWNER = "embedtasks.duplicates:NearDuplicates"
_THRESHOLD_HELP = (
    "cosine similarity to a group's canonical row at or above which a row is a "
    "near-copy; auto: derived from the file (above what unrelated rows reach, at "
    "most 0.95; see docs/guide/deduplication.md)"
)


def _estimator(threshold: float | str) -> Any:
    from embedtasks.duplicates import NearDuplicates

    return NearDuplicates(threshold=threshold, random_state=0)


def cmd_dedupe(args: argparse.Namespace) -> int:
    """Group near-copies; mark one row to keep per group (or drop the others)."""
    import numpy as np
    import pandas as pd

    if args.drop and not args.output:
        raise CLIError("--drop needs -o FILE: the kept rows are written to a file")
    frame, rows = _load(args)
    _, X = _embed(args, rows.texts)
    dedupe = _estimator(args.threshold).fit(X)
    n_dup = int((dedupe.group_sizes_ > 1).sum())
    n_extra = int((~dedupe.keep_).sum())
    _note(
        args,
        f"{len(rows.texts):,} rows in {dedupe.n_groups_:,} groups; {n_extra:,} rows "
        f"are near-copies of the kept row of one of {n_dup:,} groups"
        + ("" if args.drop else " (--drop writes only the kept rows)"),
    )
    table = pd.DataFrame({"group": dedupe.groups_, "index": rows.kept})
    ids = _ids(frame, args, rows)
    if ids is not None:
        table["id"] = ids
    table["keep"] = dedupe.keep_
    table["similarity"] = dedupe.similarity_.round(4)
    table["group_size"] = dedupe.group_sizes_[dedupe.groups_]
    table[args.column] = rows.texts
    shown = table[table["group_size"] > 1]
    order = np.lexsort((~shown["keep"].to_numpy(), shown["index"], shown["group"]))
    shown = shown.iloc[order].reset_index(drop=True)
    if args.top:
        first_groups = shown["group"].drop_duplicates().head(args.top)
        shown = shown[shown["group"].isin(first_groups)]
    _emit(
        args,
        shown,
        text_columns=[args.column],
        title=f"near-copy groups (similarity to the kept row >= "
        f"{dedupe.threshold_:.3f}), "
        "the kept row first",
    )
    if args.output:
        out = frame.copy()
        out["group"] = rows.spread(dedupe.groups_, "Int64")
        out["keep"] = rows.spread(dedupe.keep_, "boolean")
        if args.drop:  # rows skipped as empty (keep unknown) stay
            out = out[out["keep"].fillna(True).to_numpy(dtype=bool)]
        _save(args, out, args.output, "kept rows" if args.drop else "grouped rows")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    """Which test rows near-duplicate a training row, beside the chance share."""
    train_frame, train = _load(args)
    test_frame = read_table(
        args.test,
        text_columns=[c for c in (args.column, args.id_column) if c],
        note=_noter(args),
    )
    test = _rows(test_frame, args.column, args.test, args.on_empty, _noter(args))
    _, X = _embed(args, train.texts + test.texts)
    n = len(train.texts)
    dedupe = _estimator(args.group_threshold).fit(X[:n])
    result = dedupe.leakage(X[n:], threshold=args.threshold)
    print(result)
    leaked = result.frame[result.frame["leaked"]]
    table = _leak_table(args, leaked, train, test, train_frame, test_frame, True)
    table = table.drop(columns="leaked")
    if len(table):
        _emit(
            args,
            table,
            text_columns=[f"{args.column}_test", f"{args.column}_train"],
            priority=["test_index", "test_id", "train_index", "train_id"],
            max_rows=args.top or None,
            title=f"leaked test rows (similarity >= {result.summary['threshold']:.3f}"
            "), most similar first",
        )
    if args.output:
        full = _leak_table(
            args, result.frame, train, test, train_frame, test_frame, False
        )
        _save(args, full, args.output, "test rows with their nearest training row")
    return 0


def _leak_table(
    args: argparse.Namespace,
    rows: Any,
    train: Rows,
    test: Rows,
    train_frame: Any,
    test_frame: Any,
    by_similarity: bool,
) -> Any:
    """Test rows with their nearest training row: file rows, ids, both texts."""
    import pandas as pd

    t_rows = test.kept[rows.index.to_numpy()]
    r_rows = train.kept[rows["nearest"].to_numpy()]
    table = pd.DataFrame({"test_index": t_rows, "train_index": r_rows})
    if args.id_column:
        table["test_id"] = test_frame[args.id_column].to_numpy()[t_rows]
        table["train_id"] = train_frame[args.id_column].to_numpy()[r_rows]
    table["similarity"] = rows["similarity"].to_numpy().round(4)
    table["leaked"] = rows["leaked"].to_numpy()
    table[f"{args.column}_test"] = test_frame[args.column].to_numpy()[t_rows]
    table[f"{args.column}_train"] = train_frame[args.column].to_numpy()[r_rows]
    if not by_similarity:
        return table
    order = (-table["similarity"].to_numpy()).argsort(kind="stable")
    return table.iloc[order].reset_index(drop=True)


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("dedupe", cmd_dedupe, "group near-copies, keep one row of each group")
    _common(p)
    owned(p, "--threshold", spec=_OWNER, param="threshold", help=_THRESHOLD_HELP)
    p.add_argument(
        "--top", type=_integer(0), default=10, help="groups to print, 0: all (10)"
    )
    p.add_argument("-o", "--output", help="write every row with group and keep")
    p.add_argument(
        "--drop", action="store_true", help="with -o: write only the kept rows"
    )
    p = add("leakage", cmd_leakage, "test rows that near-duplicate training rows")
    _common(p)
    for action in p._actions:
        if action.dest == "input":
            action.metavar, action.help = "TRAIN", "the training file"
    p.add_argument("test", metavar="TEST", help="the test file (same --column)")
    owned(
        p,
        "--threshold",
        spec=f"{_OWNER}.leakage",
        param="threshold",
        type=_or_auto(_number(-1, 1)),
        help="a test row leaks at or above this similarity to a training row; auto: "
        "above what unrelated training rows reach (the 99.9th percentile of a "
        "held-out slice's nearest similarity) and above the unseen test rows "
        "where the test rows' similarities show two modes",
    )
    owned(
        p,
        "--group-threshold",
        spec=_OWNER,
        param="threshold",
        help="near-copies within the training file",
    )
    p.add_argument(
        "--top", type=_integer(0), default=10, help="rows to print, 0: all (10)"
    )
    p.add_argument(
        "-o", "--output", help="write every test row with its nearest training row"
    )
