from __future__ import annotations

import io

import pytest

from embedtasks._validation import check_param
from embedtasks.demo import build_corpus, run_demo


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_texts": 0}, r"'n_texts' parameter of build_corpus must be an int in"),
        ({"max_per_label": -1}, r"'max_per_label' parameter of build_corpus"),
        ({"sources": ["json"]}, r"'sources' parameter of build_corpus must be"),
    ],
)
def test_build_corpus_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_corpus(**kwargs)


def test_run_demo_checks_its_arguments_before_any_work():
    out = io.StringIO()
    with pytest.raises(
        ValueError,
        match=r"'n_texts' parameter of run_demo must be an int in the range "
        r"\[20, inf\)",
    ):
        run_demo(out, n_texts=5)
    with pytest.raises(ValueError, match=r"'progress' parameter of run_demo"):
        run_demo(out, progress="sometimes")
    assert out.getvalue() == ""


def test_demo_flag_range_is_run_demo_own():
    # The CLI's --n-texts reads the range from the decorated function.
    assert (
        check_param(run_demo, "n_texts", 5) == "must be an int in the range [20, inf)"
    )
    assert check_param(run_demo, "n_texts", 20) is None
