from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from embedtasks import DiversityReport
from embedtasks._kernel import (
    l2_normalize,
    neighbour_scan,
    pairwise_mean_std,
    vendi_score,
)


def _unit(rng, n, d):
    X = rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _topics(n_topics, n=200, d=64, spread=0.5, seed=0):
    """``n`` unit rows spread over ``n_topics`` random directions."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng, n_topics, d)
    X = centres[np.arange(n) % n_topics] + spread * _unit(rng, n, d)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_pairwise_statistics_exact_against_full_matrix():
    rng = np.random.default_rng(0)
    X = _unit(rng, 300, 16)
    S = (X.astype(np.float64) @ X.T.astype(np.float64))[np.triu_indices(300, 1)]
    report = DiversityReport(quantiles=(0.1, 0.5, 0.9)).fit(X)
    assert report.pairs_exact_
    assert report.mean_similarity_ == pytest.approx(S.mean(), abs=1e-6)
    assert report.std_similarity_ == pytest.approx(S.std(), rel=1e-5)
    np.testing.assert_allclose(
        report.similarity_quantiles_, np.quantile(S, [0.1, 0.5, 0.9]), atol=1e-6
    )
    assert report.similarity_histogram_.shape == (40,)
    assert report.similarity_histogram_.sum() == pytest.approx(1.0)
    assert report.bin_edges_.shape == (41,)


def test_sampled_pairs_estimate_quantiles_when_too_many():
    rng = np.random.default_rng(0)
    X = _unit(rng, 400, 8)
    S = (X @ X.T)[np.triu_indices(400, 1)]
    report = DiversityReport(max_pairs=20_000, random_state=0).fit(X)
    assert not report.pairs_exact_
    np.testing.assert_allclose(
        report.similarity_quantiles_, np.quantile(S, report.quantiles), atol=0.02
    )
    again = DiversityReport(max_pairs=20_000, random_state=0).fit(X)
    np.testing.assert_array_equal(
        report.similarity_quantiles_, again.similarity_quantiles_
    )


def test_nearest_neighbours_exact_across_blocks():
    rng = np.random.default_rng(1)
    X = _unit(rng, 300, 12)
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    report = DiversityReport().fit(X)
    np.testing.assert_array_equal(report.nn_indices_, S.argmax(axis=1))
    np.testing.assert_allclose(report.nn_similarity_, S.max(axis=1), rtol=1e-6)
    assert report.nn_similarity_.dtype == np.float32
    assert report.nn_quantiles_.shape == (5,)
    # Many tiles, off-diagonal ones too, on 1 or 2 threads: the same bits.
    for budget, n_jobs in [(64 * 64 * 4, 1), (16 * 16 * 4, 2)]:
        scan = neighbour_scan(l2_normalize(X), memory_budget=budget, n_jobs=n_jobs)
        np.testing.assert_array_equal(scan.nn_idx, report.nn_indices_)
        np.testing.assert_array_equal(scan.nn_sim, report.nn_similarity_)


def test_near_duplicates_found_counted_and_capped():
    rng = np.random.default_rng(2)
    X = _unit(rng, 100, 32)
    copies = X[[3, 50, 97]] + 0.01 * _unit(rng, 3, 32)
    Xd = np.vstack([X, copies])  # rows 100, 101, 102 copy 3, 50, 97
    report = DiversityReport(duplicate_threshold=0.9).fit(Xd)
    assert report.n_duplicate_pairs_ == 3
    assert sorted(map(tuple, report.duplicate_pairs_.tolist())) == [
        (3, 100),
        (50, 101),
        (97, 102),
    ]
    assert (report.duplicate_similarities_ >= 0.9).all()
    assert np.all(np.diff(report.duplicate_similarities_) <= 0)  # best first
    capped = DiversityReport(duplicate_threshold=0.9, max_duplicate_pairs=1).fit(Xd)
    assert capped.n_duplicate_pairs_ == 3 and capped.duplicate_pairs_.shape == (1, 2)
    assert capped.duplicate_similarities_[0] == report.duplicate_similarities_[0]


def test_vendi_fast_path_equals_exact():
    rng = np.random.default_rng(3)
    for n, d in [(500, 32), (100, 8), (40, 64)]:
        X = _topics(5, n=n, d=d, seed=n)
        exact = vendi_score(X, method="kernel")
        fast = vendi_score(X, method="covariance")
        assert fast == pytest.approx(exact, rel=1e-4)
    X = _unit(rng, 60, 200)  # n < d: "auto" takes the kernel
    assert vendi_score(X) == pytest.approx(vendi_score(X, method="covariance"), 1e-4)


def test_vendi_rises_with_topics_and_falls_with_duplicates():
    scores = [DiversityReport().fit(_topics(k)).vendi_score_ for k in (1, 2, 5, 20)]
    assert scores == sorted(scores) and scores[-1] > 2 * scores[0]
    X = _topics(20)
    with_copies = np.vstack([X, np.repeat(X[:5], 40, axis=0)])
    assert DiversityReport().fit(with_copies).vendi_score_ < scores[-1]


def test_vendi_and_pairwise_helpers_edge_cases():
    assert vendi_score(np.zeros((3, 4))) == 0.0
    with pytest.raises(ValueError, match="method must be"):
        vendi_score(np.eye(3), method="fast")
    with pytest.raises(ValueError, match="2-D array with rows"):
        vendi_score(np.ones(3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        pairwise_mean_std(np.ones((1, 3)))


def test_groups_get_their_own_rows_and_cross_similarity():
    X = np.vstack([_topics(1, n=30, seed=1), _topics(10, n=30, seed=2)])
    groups = np.array(["narrow"] * 30 + ["broad"] * 30)
    report = DiversityReport().fit(X, groups=groups)
    frame = report.to_frame()
    assert list(frame.index) == ["all", "broad", "narrow"]
    assert list(report.groups_) == ["broad", "narrow"]
    assert frame.loc["broad", "vendi_score"] > frame.loc["narrow", "vendi_score"]
    assert (
        frame.loc["narrow", "mean_similarity"] > frame.loc["broad", "mean_similarity"]
    )
    S = X @ X.T
    within = S[30:, 30:][np.triu_indices(30, 1)].mean()
    assert report.group_similarity_[0, 0] == pytest.approx(within, abs=1e-5)
    assert report.group_similarity_[0, 1] == pytest.approx(S[:30, 30:].mean(), 1e-4)
    assert frame["n_samples"].tolist() == [60, 30, 30]


def test_group_of_one_row_has_nan_statistics():
    X = _topics(3, n=10)
    report = DiversityReport().fit(X, groups=[0] * 9 + [1])
    frame = report.to_frame()
    assert np.isnan(frame.loc[1, "mean_similarity"])
    assert frame.loc[1, "vendi_score"] == 1.0
    assert np.isnan(report.group_similarity_[1, 1])


def test_to_frame_columns():
    frame = DiversityReport(quantiles=(0.5, 0.99)).fit(_topics(3, n=20)).to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [
        "n_samples",
        "mean_similarity",
        "std_similarity",
        "similarity_p50",
        "similarity_p99",
        "nn_similarity_mean",
        "nn_similarity_p50",
        "nn_similarity_p99",
        "n_duplicate_pairs",
        "duplicate_share",
        "vendi_score",
        "vendi_share",
    ]


def test_bad_input_errors():
    X = _topics(2, n=10)
    with pytest.raises(ValueError, match=r"one label per row.*\(3,\) for 10 rows"):
        DiversityReport().fit(X, groups=["a", "b", "c"])
    with pytest.raises(TypeError, match="one comparable type"):
        DiversityReport().fit(X, groups=pd.Series(["a", 1] * 5))
    with pytest.raises(
        ValueError,
        match=r"'quantiles' parameter of DiversityReport must be a non-empty "
        r"array-like of numbers in \[0, 1\]",
    ):
        DiversityReport(quantiles=(0.5, 50)).fit(X)
    with pytest.raises(ValueError, match="'duplicate_threshold' parameter"):
        DiversityReport(duplicate_threshold=2).fit(X)
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        DiversityReport().fit(X[:1])
    with pytest.raises(NotFittedError):
        DiversityReport().to_frame()


def test_plot_draws_two_panels():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    X = _topics(3, n=30)
    fig = DiversityReport().fit(X, groups=[0, 1, 2] * 10).plot()
    first, second = fig.axes[:2]
    assert first.get_title() == "Pairwise similarity"
    assert len(first.get_lines()) == 4 and len(second.get_lines()) == 5  # + threshold
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_stays_readable_with_many_groups():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X = _topics(5, n=600)
    groups = np.arange(600) % 60  # 60 groups (warnings are errors in the suite)
    groups[:100] = 7  # the largest group
    fig = DiversityReport(random_state=0).fit(X, groups=groups).plot(max_groups=6)
    first, second = fig.axes[:2]
    labels = [t.get_text() for t in second.get_legend().get_texts()]
    # the corpus, the 6 largest groups (largest first), the other 54 pooled
    assert len(labels) == 1 + 6 + 1 + 1
    assert labels[0] == "all (600)" and labels[1].startswith("7 (")
    assert labels[7].startswith("other 54 groups (")
    assert labels[-1] == "duplicate threshold"
    colours = [tuple(line.get_color()) for line in first.get_lines()[1:7]]
    assert len(set(colours)) == 6  # no colour repeats
    low, high = first.get_xlim()
    assert low > -1.0 and high <= 1.0  # fitted to the similarities that occur
    plt.close(fig)


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    report = DiversityReport().fit(_topics(2, n=10))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(
        ImportError,
        match=r"DiversityReport.plot\(\) needs 'matplotlib'. Install it with: "
        r"pip install 'embedtasks\[plot\]'",
    ):
        report.plot()


def test_fit_leaves_the_input_untouched():
    X = (3 * _topics(2, n=10)).astype(np.float32)
    before = X.copy()
    DiversityReport().fit(X)
    np.testing.assert_array_equal(X, before)
