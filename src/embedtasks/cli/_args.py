"""Argument types and the flag groups shared by commands, declared once."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FORMATS = ("table", "csv", "jsonl", "json")


class CLIError(Exception):
    """A problem with the arguments or the input; exit status 2."""


# -- flags owned by an estimator: default, range and help read from it ---------------
def _target(spec: str) -> Any:
    """``"module:Name.attr"`` -> the object (imported when first needed)."""
    module, _, path = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


class Default:
    """A flag's default that lives on an estimator or function, not in the CLI.

    ``spec`` names the owner (``"embedtasks.outliers:OutlierScorer"``), ``param``
    its parameter. :func:`resolve_defaults` swaps it for the value once the
    arguments are parsed, so ``--help`` imports nothing and no default is
    written twice.
    """

    def __init__(self, spec: str, param: str) -> None:
        self.spec, self.param = spec, param

    def value(self) -> Any:
        return inspect.signature(_target(self.spec)).parameters[self.param].default

    def __repr__(self) -> str:  # shown only if a handler forgot to resolve it
        return f"<default of {self.spec}.{self.param}>"


def static_default(spec: str, param: str) -> Any:
    """``param``'s default read from the owner's source, without importing it
    (``--help`` stays instant); imported only if the default is not a literal.

    ``spec`` names the defining module: ``"embedtasks.outliers:OutlierScorer"``.
    """
    module, _, path = spec.partition(":")
    root = Path(__file__).resolve().parents[1]  # the embedtasks package
    parts = module.split(".")[1:]
    source = root.joinpath(*parts).with_suffix(".py")
    if not source.is_file():
        source = root.joinpath(*parts, "__init__.py")
    node: Any = ast.parse(source.read_text(encoding="utf-8"))
    for name in path.split("."):
        node = next(
            n
            for n in node.body
            if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == name
        )
    if isinstance(node, ast.ClassDef):
        node = next(
            n
            for n in node.body
            if isinstance(n, ast.FunctionDef) and n.name == "__init__"
        )
    args = node.args
    positional = args.posonlyargs + args.args
    with_default = positional[len(positional) - len(args.defaults) :]
    pairs = list(zip(with_default, args.defaults, strict=True))
    pairs += [
        (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d
    ]
    for arg, default in pairs:
        if arg.arg == param:
            try:
                return ast.literal_eval(default)
            except ValueError:
                break
    return Default(spec, param).value()


class _OwnedHelp(str):
    """Help text that ends in the owner's default, read when help is shown."""

    default: Default
    shown: Callable[[Any], str]

    def __mod__(self, params: Any) -> str:
        text = str.__mod__(str(self), params) if "%" in self else str(self)
        value = static_default(self.default.spec, self.default.param)
        return f"{text} ({self.shown(value)})"


def _checked(spec: str, param: str) -> Callable[[str], Any]:
    """An argparse type: the value as a number (or a word), checked by the owner's
    own ``_parameter_constraints``, worded for the command line."""

    def parse(value: str) -> Any:
        from embedtasks._validation import check_param

        number: Any = value
        for convert in (int, float):
            try:
                number = convert(value)
                break
            except ValueError:
                continue
        problem = check_param(_target(spec), param, number)
        if problem:
            raise argparse.ArgumentTypeError(f"{_plain(problem)}, got {value}")
        return number

    parse.__name__ = "value"
    return parse


_PLAIN = (  # the estimators' constraint wording, as a command line reads it
    (re.compile(r"an int in the range \[(-?\w+), inf\)"), r"a whole number >= \1"),
    (
        re.compile(r"a float in the range ([\[(])([-\w.]+), ([-\w.]+)([\])])"),
        r"a number in \1\2, \3\4",
    ),
    (re.compile(r"a str among \{'(\w+)'\}"), r"\1"),
    (re.compile(r" or None\b"), ""),
    (re.compile(r"(\d)\.0\b"), r"\1"),
)


def _plain(rule: str) -> str:
    """ "must be an int in the range [1, inf)" -> "must be a whole number >= 1"."""
    for pattern, replacement in _PLAIN:
        rule = pattern.sub(replacement, rule)
    return rule


def owned(
    parser: Any,
    *flags: str,
    spec: str,
    param: str,
    help: str,
    type: Callable[[str], Any] | None = None,
    shown: Callable[[Any], str] = str,
    default_unset: bool = False,
    **kwargs: Any,
) -> None:
    """Add a flag for ``spec``'s ``param``: its default, its range (when ``type`` is
    not given, the owner's ``_parameter_constraints``) and the default in the help
    all come from the owner. ``default_unset``: the flag stays None when not given
    (the owner applies its default itself)."""
    default = Default(spec, param)
    text = _OwnedHelp(help)
    text.default, text.shown = default, shown
    parser.add_argument(
        *flags,
        default=None if default_unset else default,
        type=type or _checked(spec, param),
        help=text,
        **kwargs,
    )


def resolve_defaults(args: argparse.Namespace) -> None:
    """Replace every :class:`Default` left in ``args`` by the owner's value."""
    for name, value in vars(args).items():
        if isinstance(value, Default):
            setattr(args, name, value.value())


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
        "--long-text",
        choices=["truncate", "chunk", "error"],
        help="texts over the model's window: keep the first window (the local "
        "model's default), embed every window and average them, or stop with an "
        "error (the default with --base-url)",
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
    owned(
        group,
        "--max-retries",
        spec="embedtasks.embedders._openai:OpenAIEmbedder",
        param="max_retries",
        type=_integer(0),
        help="endpoint: retries of a failed request",
        default_unset=True,
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
    owned(
        p,
        "--n-clusters",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer",
        param="n_clusters",
        help="fixed number (KMeans)",
        shown=lambda v: "none: HDBSCAN" if v is None else str(v),
    )
    owned(
        p,
        "--min-cluster-size",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer",
        param="min_cluster_size",
        help="HDBSCAN: an integer >= 2, or auto (rows // 40, at least 5, up to 15; "
        "then rows // 200)",
    )
    owned(
        p,
        "--cluster-selection-method",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer",
        param="cluster_selection_method",
        type=str,
        choices=["auto", "eom", "leaf"],
        help="HDBSCAN: eom keeps the most persistent clusters, leaf the smallest "
        "(more clusters); auto: eom, leaf on small corpora when eom keeps an "
        "uneven parent",
    )
    owned(
        p,
        "--reduction",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer",
        param="reduction",
        type=str,
        choices=["auto", "umap", "pca", "none"],
        help="before clustering",
    )
    p.add_argument(
        "--assign-noise",
        action="store_true",
        help="give every noise row (-1) its nearest cluster",
    )
    owned(
        p,
        "--max-noise",
        spec="embedtasks.cluster._estimator:EmbeddingClusterer",
        param="max_noise",
        help="HDBSCAN: at most this share of rows left as noise, the closest "
        "noise rows joining clusters; 1 keeps all of HDBSCAN's noise",
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
    p.add_argument(
        "--random-state",
        type=int,
        default=0,
        help="seed; the command line fixes one so that runs repeat (0)",
    )


def duplicate_flag(p: argparse.ArgumentParser) -> None:
    """``--duplicate-threshold``, shared by ``diversity`` and ``report``."""
    owned(
        p,
        "--duplicate-threshold",
        spec="embedtasks.diversity:DiversityReport",
        param="duplicate_threshold",
        help="near-duplicates: pairs at least this similar",
    )
