"""The ``cluster`` command."""

from __future__ import annotations

import argparse
from typing import Any

from embedtasks.cli._args import (
    CLIError,
    _cluster_flags,
    _common,
    _integer,
    _or_auto,
    owned,
)
from embedtasks.cli._run import _cache_setting, _embed, _emit, _load, _note, _save


def _clusterer(args: argparse.Namespace, n: int) -> Any:
    """The clusterer of the --n-clusters ... flags, checked against ``n`` texts."""
    from embedtasks.cluster._estimator import EmbeddingClusterer

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
        cluster_selection_method=args.cluster_selection_method,
        assign_noise=args.assign_noise,
        max_noise=args.max_noise,
        random_state=args.random_state,
        cache_dir=_cache_setting(args),
    )


def _namer(args: argparse.Namespace) -> Any:
    """The ChatNamer of ``--names chat``, or None."""
    if args.names != "chat":
        return None
    if not args.chat_model:
        raise CLIError(
            "--names chat needs --chat-model (e.g. --chat-model gpt-4o-mini)"
        )
    from embedtasks.embedders._chat import ChatNamer

    return ChatNamer(
        args.chat_model,
        base_url=args.chat_base_url,
        max_clusters=args.chat_max_clusters,
        cache_dir=_cache_setting(args),
    )


def _named_note(args: argparse.Namespace, namer: Any) -> None:
    """What naming cost: calls, cached answers, failures (keyword names kept)."""
    if namer is None:
        return
    stats = namer.last_stats
    text = (
        f"names from {namer.model}: {stats.calls} call{'s' * (stats.calls != 1)}, "
        f"{stats.cached} cached"
    )
    if stats.failed:
        text += f", {stats.failed} kept their keyword name ({namer.last_errors[0]})"
    _note(args, text)


class _Announcing:
    """A namer that says what it will spend (its estimate) before it calls."""

    def __init__(self, namer: Any, args: argparse.Namespace) -> None:
        self.namer, self.args = namer, args

    def name(self, clusters: Any) -> list[str]:
        cost = self.namer.estimate(clusters)
        _note(
            self.args,
            f"naming {min(len(clusters), self.namer.max_clusters)} clusters with "
            f"{self.namer.model} at {self.namer.display_url}: {cost['calls']} calls "
            f"(~{cost['prompt_tokens']:,} prompt tokens), {cost['cached']} cached",
        )
        names: list[str] = self.namer.name(clusters)
        _named_note(self.args, self.namer)
        return names


def announcing(args: argparse.Namespace) -> Any:
    """The namer of the flags, announcing its cost; None for keyword names."""
    namer = _namer(args)
    return None if namer is None else _Announcing(namer, args)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Cluster the rows; print a per-cluster summary, save labels with -o."""
    frame, rows = _load(args)
    clusterer = _clusterer(args, len(rows.texts))
    namer = announcing(args)
    _, X = _embed(args, rows.texts)
    labels = clusterer.fit_predict(X)
    noise = int((labels == -1).sum())
    _note(args, f"{clusterer.n_clusters_} clusters, {noise:,} noise rows (-1)")
    from embedtasks._validation import InvalidParameterError  # sklearn: lazily

    try:  # the estimator checks n_topics; said here in the flag's words
        summary = clusterer.summary(
            rows.texts, n_keywords=args.keywords, namer=namer, n_topics=args.topics
        )
    except InvalidParameterError as exc:
        raise CLIError(f"--topics {args.topics}: {exc}") from None
    shown, first = summary, ["cluster", "name", "size", "share", "mean_probability"]
    if args.topics is not None:
        shown = clusterer.topics(
            rows.texts, n_topics=args.topics, n_keywords=args.keywords, namer=namer
        )
        first = ["topic", "name", "size", "share", "clusters"]
        n_topics = int((shown["topic"] >= 0).sum())
        _note(
            args,
            f"{n_topics} topics merged from the {clusterer.n_clusters_} clusters "
            "(-o and --summary-output: each one's 'topic')",
        )
    _emit(
        args,
        shown,
        text_columns=["keywords", "representative_texts"],
        priority=first,
    )
    _save(args, summary, args.summary_output, "cluster summary")
    if args.output:
        out = frame.copy()
        out["cluster"] = rows.spread(labels, "Int64")
        out["probability"] = rows.spread(clusterer.probabilities_)
        if args.topics is not None:
            topics = clusterer.topic_labels(n_topics=args.topics)
            out["topic"] = rows.spread(topics, "Int64")
        _save(args, out, args.output, "rows with 'cluster'")
    return 0


def register(add: Any) -> None:
    """Add this module's commands: their flags beside their handlers."""
    p = add("cluster", cmd_cluster, "group similar rows; keywords per cluster")
    _common(p)
    _cluster_flags(p)
    owned(
        p,
        "--keywords",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer.summary",
        param="n_keywords",
        type=_integer(1),
        help="per cluster",
    )
    topics_flag(p, "print the clusters merged into this many topics instead")
    p.add_argument("-o", "--output", help="write every row with 'cluster' here")
    p.add_argument("--summary-output", help="write the cluster summary here")


def topics_flag(p: Any, what: str, *, default: Any = None) -> None:
    """``--topics auto|N`` (``cluster``; ``report`` adds ``none``)."""
    words = "auto|N|none" if default is not None else "auto|N"

    def parse(value: str) -> Any:
        if value == "none" and default is not None:
            return None
        return _or_auto(_integer(1))(value)

    parse.__name__ = words
    p.add_argument(
        "--topics",
        metavar=words,
        type=parse,
        default=default,
        help=f"{what}; auto: the number read from the clusters' merge costs"
        + (f" ({default})" if default is not None else ""),
    )
