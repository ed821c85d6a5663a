"""The ``report`` command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embedtasks.cli._args import (
    _cluster_flags,
    _common,
    _integer,
    duplicate_flag,
    owned,
)
from embedtasks.cli._cluster import _clusterer, announcing, topics_flag
from embedtasks.cli._run import _embed, _groups, _ids, _load, _note


def cmd_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page: map, clusters, outliers, near-copies."""
    from embedtasks._report._build import report
    from embedtasks.diversity import DiversityReport
    from embedtasks.drift import DriftTest

    frame, rows = _load(args, args.group_column)
    texts = rows.texts
    groups = _groups(frame, args, rows)
    clusterer = _clusterer(args, len(texts))
    reference = reference_X = None
    if args.reference:
        ref_args = argparse.Namespace(**{**vars(args), "input": args.reference})
        reference = _load(ref_args)[1].texts
    namer = announcing(args)
    _, X = _embed(args, texts)
    if reference is not None:
        _, reference_X = _embed(args, reference)
    page = report(
        texts,
        X,
        groups=groups,
        ids=_ids(frame, args, rows),
        clusterer=clusterer,
        diversity=DiversityReport(
            duplicate_threshold=args.duplicate_threshold, random_state=0
        ),
        title=args.title or f"embedtasks report: {Path(args.input).name}",
        max_text_chars=args.max_text_chars,
        reference=reference,
        reference_X=reference_X,
        drift_test=DriftTest(random_state=args.random_state) if reference else None,
        namer=namer,
        n_topics=args.topics,
    )
    path = page.save(args.output)
    _note(args, f"wrote {page!r} to '{path}'")
    return 0


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("report", cmd_report, "one HTML page: map, clusters, outliers, copies")
    _common(p)
    p.add_argument("--group-column", help="diversity per group of this column")
    p.add_argument(
        "--reference",
        metavar="FILE",
        help="a reference data file (same --column): the page opens with how the "
        "input differs from it (clusters that grew or shrank, a p-value)",
    )
    p.add_argument("-o", "--output", default="report.html", help="(report.html)")
    p.add_argument("--title", help="page title (the input file's name)")
    _cluster_flags(p)
    topics_flag(
        p,
        "a selector shows the map by clusters or by this many topics (merged "
        "clusters); none: clusters only",
        default="auto",
    )
    duplicate_flag(p)
    owned(
        p,
        "--max-text-chars",
        spec="embedtasks._report._build:report",
        param="max_text_chars",
        type=_integer(1),
        help="texts cut to",
    )
