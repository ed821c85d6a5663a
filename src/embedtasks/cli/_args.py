"""Argument types and the flag groups shared by commands, declared once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

_FORMATS = ("table", "csv", "jsonl", "json")


class CLIError(Exception):
    """A problem with the arguments or the input; exit status 2."""


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


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    """The clusterer's flags, shared by ``cluster`` and ``report``."""
    p.add_argument(
        "--n-clusters", type=_integer(1), help="fixed number (KMeans); default HDBSCAN"
    )
    p.add_argument(
        "--min-cluster-size",
        type=_or_auto(_integer(2)),
        default="auto",
        help="HDBSCAN: an integer >= 2, or auto = rows // 40 (at least 5) up to "
        "15, then rows // 200 (auto)",
    )
    p.add_argument(
        "--cluster-selection-method",
        choices=["auto", "eom", "leaf"],
        default="auto",
        help="HDBSCAN: eom keeps the most persistent clusters, leaf the smallest "
        "(more clusters); auto = eom, leaf on small corpora when eom keeps an "
        "uneven parent (auto)",
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
    p.add_argument(
        "--names",
        choices=["keywords", "chat"],
        default="keywords",
        help="cluster names from their keywords (offline), or from a chat model "
        "(--chat-model; the largest clusters, one cached call each) (keywords)",
    )
    p.add_argument("--chat-model", help="with --names chat: the chat model")
    p.add_argument(
        "--chat-base-url",
        help="with --names chat: an OpenAI-compatible endpoint ($OPENAI_BASE_URL, "
        "else OpenAI); the key is read from $OPENAI_API_KEY",
    )
    p.add_argument(
        "--chat-max-clusters",
        type=_integer(1),
        default=30,
        help="with --names chat: name at most this many clusters, the largest (30)",
    )
    p.add_argument("--random-state", type=int, default=0)
