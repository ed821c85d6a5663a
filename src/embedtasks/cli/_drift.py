"""The ``drift`` command: did the data change between two files?"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from embedtasks.cli._args import CLIError, _common, _integer, owned
from embedtasks.cli._run import _embed, _emit, _load, _note, _save

_CLUSTER_COLUMNS = [
    "cluster",
    "name",
    "change",
    "share_reference",
    "share_new",
    "difference",
    "ci_low",
    "ci_high",
    "n_reference",
    "n_new",
]


def _drift_test(args: argparse.Namespace) -> Any:
    from embedtasks.drift import DriftTest

    return DriftTest(
        n_neighbors=args.n_neighbors,
        n_permutations=args.n_permutations,
        n_clusters=args.n_clusters,
        n_examples=args.examples,
        max_samples=args.max_samples or None,
        alpha=args.alpha,
        random_state=args.random_state,
    )


def run_drift(
    args: argparse.Namespace, reference_texts: list[str], new_texts: list[str]
) -> Any:
    """Embed both sets and test; the :class:`~embedtasks.DriftResult`."""
    if len(reference_texts) + len(new_texts) < 3:
        raise CLIError("drift needs at least 3 texts in the two files together")
    drift = _drift_test(args)
    _, X_ref = _embed(args, reference_texts)
    _, X_new = _embed(args, new_texts)
    return drift.fit(X_ref, texts=reference_texts).test(X_new, texts=new_texts)


def cmd_drift(args: argparse.Namespace) -> int:
    """Test whether NEW differs from REFERENCE; say what changed."""
    _, ref_rows = _load(argparse.Namespace(**{**vars(args), "input": args.reference}))
    _, new_rows = _load(args)
    result = run_drift(args, ref_rows.texts, new_rows.texts)
    clusters = result.clusters[
        [c for c in _CLUSTER_COLUMNS if c in result.clusters.columns]
    ].copy()
    examples = result.examples.copy()
    # rows of the files, not of the embedded texts (they differ with --on-empty skip)
    examples["index"] = new_rows.kept[examples["index"].to_numpy()]
    examples["nearest_reference"] = ref_rows.kept[
        examples["nearest_reference"].to_numpy()
    ]
    if args.format == "json":
        data = result.to_dict()
        data["clusters"] = json.loads(clusters.to_json(orient="records"))
        data["examples"] = json.loads(examples.to_json(orient="records"))
        data["reference"], data["new"] = args.reference, args.input
        json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    elif args.format in {"csv", "jsonl"}:
        _emit(args, clusters)
    else:
        _print_table(args, result, clusters, examples)
    _save(args, clusters, args.output, "clusters")
    _save(args, examples, args.examples_output, "examples")
    return 0


def _print_table(
    args: argparse.Namespace, result: Any, clusters: Any, examples: Any
) -> None:
    print(result.summary(n_clusters=0).splitlines()[0])
    print("\n".join(result.summary(n_clusters=0).splitlines()[1:3]))
    changed = clusters[clusters["change"] != ""]
    title = "clusters that grew or shrank (share in reference -> new)"
    if changed.empty:
        title = "no cluster's share changed beyond its interval; the largest changes"
        order = clusters["difference"].abs().sort_values(ascending=False).index
        changed = clusters.loc[order[:5]]
    print()
    _emit(
        args,
        changed.reset_index(drop=True),
        priority=["name", "change", "share_reference", "share_new", "difference"],
        title=title,
    )
    if len(examples):
        print()
        shown = [c for c in examples.columns if c != "nearest_reference"]
        _emit(
            args,
            examples[shown],
            text_columns=["text", "nearest_reference_text"],
            priority=["index", "score", "text"],
            title="new rows least like the reference (score: share of new rows "
            "among its neighbours)",
        )
    _note(
        args,
        "a p-value says whether the sets differ, not how much it matters; read the "
        "clusters and examples",
    )


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add(
        "drift",
        cmd_drift,
        "did the data change? test NEW against REFERENCE, say what changed",
    )
    p.add_argument("reference", help="the reference data file (same formats as new)")
    _common(p)
    for action in p._actions:  # the shared positional is the new file here
        if action.dest == "input":
            action.metavar = "new"
            action.help = (
                "the new data file: CSV, TSV, Parquet, JSON Lines, JSON or .txt; "
                "--format json prints everything, csv/jsonl the cluster table"
            )
    drift_flags(p)
    p.add_argument("-o", "--output", help="write the cluster table here")
    p.add_argument("--examples-output", help="write the example rows here")


def drift_flags(p: argparse.ArgumentParser) -> None:
    """The test's flags: defaults and ranges are DriftTest's own."""
    group = p.add_argument_group("drift test")
    spec = "embedtasks.drift._estimator:DriftTest"
    owned(group, "--n-neighbors", spec=spec, param="n_neighbors", help="per row")
    owned(
        group,
        "--n-permutations",
        spec=spec,
        param="n_permutations",
        help="permutations for the p-value",
    )
    owned(
        group,
        "--n-clusters",
        spec=spec,
        param="n_clusters",
        help="clusters of the pooled rows, or auto = sqrt(rows / 20) in [2, 30]",
    )
    owned(group, "--examples", spec=spec, param="n_examples", help="example rows shown")
    owned(
        group,
        "--max-samples",
        spec=spec,
        param="max_samples",
        type=_integer(0),
        help="rows tested from each file at most, 0: all",
    )
    owned(group, "--alpha", spec=spec, param="alpha", help="significance level")
    group.add_argument("--random-state", type=int, default=0, help="seeds the test (0)")
