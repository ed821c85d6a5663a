"""Flags owned by an estimator: default, range and help come from the estimator."""

from __future__ import annotations

import argparse
import inspect
import re

import pytest

from embedtasks.cli import build_parser, main
from embedtasks.cli._args import Default, _target, resolve_defaults, static_default


def _owned_actions():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action.default, Default):
                yield command, action


def test_every_owned_default_is_the_owners_own():
    seen = 0
    for command, action in _owned_actions():
        default = action.default
        owner = _target(default.spec)
        expected = inspect.signature(owner).parameters[default.param].default
        args = argparse.Namespace(**{action.dest: default})
        resolve_defaults(args)
        assert getattr(args, action.dest) == expected, (command, action.dest)
        # --help reads the same default from the source, without importing it
        assert static_default(default.spec, default.param) == expected
        seen += 1
    assert seen >= 10  # outliers, diversity, report, search, recommend, cluster, demo


def test_help_shows_the_estimators_default(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--keywords KEYWORDS per cluster (8)" in out  # summary(n_keywords=8)
    assert "noise (0.15)" in out  # EmbeddingClusterer(max_noise=0.15)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["outliers", "x.csv", "--n-neighbors", "0"], r"whole number >= 1, got 0$"),
        (["outliers", "x.csv", "--contamination", "0.7"], r"auto or a number in \(0, "),
        (["cluster", "x.csv", "--max-noise", "2"], r"a number in \[0, 1\], got 2$"),
        (["diversity", "x.csv", "--duplicate-threshold", "x"], r"\[-1, 1\], got x$"),
        (["cluster", "x.csv", "--min-cluster-size", "1"], r">= 2 or auto, got 1$"),
    ],
)
def test_ranges_are_the_estimators_constraints(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err.strip())


def test_a_flag_given_is_kept_and_one_not_given_gets_the_default():
    parser = build_parser()
    args = parser.parse_args(["outliers", "x.csv", "--n-neighbors", "3"])
    resolve_defaults(args)
    assert args.n_neighbors == 3 and args.contamination == "auto"
