"""The ``outliers``, ``diversity`` and ``classify`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from embedtasks.cli._args import (
    CLIError,
    _common,
    _integer,
    duplicate_flag,
    owned,
)
from embedtasks.cli._io import Rows, _column, read_table
from embedtasks.cli._run import (
    _embed,
    _emit,
    _groups,
    _ids,
    _load,
    _note,
    _noter,
    _rows,
    _save,
)

_TOP_HELP = (
    "rows in the terminal table, 0: all (10); --format csv, jsonl and json print "
    "every row"
)


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
    table = scorer.fit(X).to_frame()
    flags = table["is_outlier"].to_numpy()
    _note(args, f"{int(flags.sum()):,} of {len(flags):,} rows flagged")
    result = pd.DataFrame({"index": rows.kept})
    ids = _ids(frame, args, rows)
    if ids is not None:
        result["id"] = ids
    result["outlier_score"] = table["outlier_score"].to_numpy()
    result["is_outlier"] = flags
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
        out["is_outlier"] = rows.spread(flags, "boolean")
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

    from embedtasks.classify._estimator import NearestLabelClassifier

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


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("outliers", cmd_outliers, "score how unrelated each row is to the rest")
    _common(p)
    owned(
        p,
        "--n-neighbors",
        spec="embedtasks.outliers:OutlierScorer",
        param="n_neighbors",
        help="neighbours",
    )
    owned(
        p,
        "--contamination",
        spec="embedtasks.outliers:OutlierScorer",
        param="contamination",
        help="share of outliers in (0, 0.5], or auto (Tukey fence)",
    )
    p.add_argument(
        "--top",
        type=_integer(0),
        default=10,
        help=_TOP_HELP,
    )
    p.add_argument("-o", "--output", help="write every row with its score")
    p = add("diversity", cmd_diversity, "how varied are the texts (per group too)")
    _common(p)
    p.add_argument("--group-column", help="compare the groups of this column")
    duplicate_flag(p)
    p.add_argument("-o", "--output", help="write the per-group table here")
    p.add_argument("--pairs-output", help="write the near-duplicate pairs here")
    p = add("classify", cmd_classify, "label rows zero-shot (--labels) or by example")
    _common(p)
    p.add_argument("--labels", help="comma-separated class names (zero-shot)")
    p.add_argument("--template", default="{label}", help="label text template")
    p.add_argument("--train", help="a labelled file with the same text column")
    p.add_argument("--label-column", default="label", help="its label column (label)")
    p.add_argument(
        "--top",
        type=_integer(0),
        default=10,
        help=_TOP_HELP,
    )
    p.add_argument("-o", "--output", help="write every row with its label")
