"""NearDuplicates: star groups, canonical rows, partial_fit, predict, leakage."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GroupKFold

from embedtasks import NearDuplicates
from embedtasks._kernel import (
    l2_normalize,
    lowest_similarity,
    match_rows,
    row_keys,
    similarity,
    star_groups,
    unique_rows,
)


def _corpus(n=400, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.standard_normal((n, d)))


def _near(X, rows, scale, seed=1):
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((len(rows), X.shape[1])).astype(np.float32)
    return l2_normalize(X[rows] + scale * noise)


def _arc(angles):
    """Unit vectors on a circle (2-D) at the given angles, in radians."""
    a = np.asarray(angles, dtype=np.float64)
    return np.column_stack([np.cos(a), np.sin(a)]).astype(np.float32)


def _check_star(X, dedupe):
    """Every member within threshold of its canonical row; canonicals apart."""
    X = l2_normalize(X)
    S = similarity(X, X)
    centre = dedupe.canonical_[dedupe.groups_]
    assert (S[np.arange(len(X)), centre] >= np.float32(dedupe.threshold_)).all()
    C = S[np.ix_(dedupe.canonical_, dedupe.canonical_)]
    np.fill_diagonal(C, -1)
    assert (C < np.float32(dedupe.threshold_)).all()


def test_near_duplicates_groups_copies_with_their_source():
    X = _corpus()
    data = np.vstack([X, X[:50], _near(X, range(50, 100), 0.03)])
    dedupe = NearDuplicates(0.95).fit(data)
    g = dedupe.groups_
    assert g.dtype == np.intp and g.shape == (500,)
    np.testing.assert_array_equal(g[400:450], g[:50])
    np.testing.assert_array_equal(g[450:], g[50:100])
    assert dedupe.n_groups_ == 400 and np.unique(g).size == 400
    assert dedupe.keep_.sum() == 400 and dedupe.keep_[:400].all()
    np.testing.assert_array_equal(np.unique(g[dedupe.keep_]), np.arange(400))
    np.testing.assert_array_equal(dedupe.group_sizes_, np.bincount(g))
    _check_star(data, dedupe)


def test_near_duplicates_numbers_groups_by_first_row():
    X = _corpus(5)
    dedupe = NearDuplicates(0.95).fit(X[[3, 1, 3, 0, 1]])
    np.testing.assert_array_equal(dedupe.groups_, [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(dedupe.canonical_, [0, 1, 3])


def test_near_duplicates_chain_is_not_one_group():
    # Neighbours on the arc are 0.96 similar, rows two apart 0.84: a chain.
    step = np.arccos(0.96)
    X = _arc(step * np.arange(12))
    dedupe = NearDuplicates(0.95).fit(X)
    assert dedupe.n_groups_ >= 4
    _check_star(X, dedupe)
    bound = np.cos(2 * np.arccos(0.95))
    assert (dedupe.min_similarity_[dedupe.group_sizes_ > 1] >= bound).all()


def test_near_duplicates_canonical_is_most_central():
    step = np.arccos(0.97)
    X = _arc([0.0, step, 2 * step])  # the middle row is near both others
    dedupe = NearDuplicates(0.95).fit(X)
    np.testing.assert_array_equal(dedupe.groups_, [0, 0, 0])
    np.testing.assert_array_equal(dedupe.keep_, [False, True, False])
    np.testing.assert_allclose(dedupe.similarity_, [0.97, 1.0, 0.97], atol=1e-6)


def test_near_duplicates_min_similarity_is_the_lowest_pair():
    X = _corpus(300)
    data = np.vstack([X, _near(X, range(30), 0.02), _near(X, range(30), 0.03, 2)])
    dedupe = NearDuplicates(0.95).fit(data)
    unit = l2_normalize(data)  # the rows fit compares (bits may move by an ulp)
    S = similarity(unit, unit)
    for g in range(dedupe.n_groups_):
        rows = np.flatnonzero(dedupe.groups_ == g)
        if rows.size == 1:
            assert np.isnan(dedupe.min_similarity_[g])
        else:
            sub = S[np.ix_(rows, rows)][np.triu_indices(rows.size, k=1)]
            assert dedupe.min_similarity_[g] == sub.min()
    assert dedupe.min_similarity_.dtype == np.float32


def test_near_duplicates_all_identical_rows():
    row = _corpus(1)
    dedupe = NearDuplicates(0.95).fit(np.repeat(row, 30_000, axis=0))
    assert dedupe.n_groups_ == 1 and dedupe.groups_.max() == 0
    assert dedupe.keep_.sum() == 1 and dedupe.keep_[0]
    assert dedupe.n_pairs_ == 0  # collapsed before any pair is listed
    assert dedupe.min_similarity_[0] == pytest.approx(1.0, abs=1e-6)


def test_near_duplicates_all_unique_rows():
    dedupe = NearDuplicates(0.95).fit(_corpus(500, 64))
    np.testing.assert_array_equal(dedupe.groups_, np.arange(500))
    assert dedupe.keep_.all() and np.isnan(dedupe.min_similarity_).all()


def test_near_duplicates_single_row():
    dedupe = NearDuplicates(0.95).fit(_corpus(1))
    assert dedupe.n_groups_ == 1 and dedupe.keep_.tolist() == [True]


def test_star_groups_dense_path_equals_pair_path():
    # 600 near-identical rows (179,700 pairs) plus ordinary rows.
    rng = np.random.default_rng(0)
    blob = l2_normalize(1 + 0.02 * rng.standard_normal((600, 16)))
    X = np.vstack([_corpus(300, 16), blob])
    pairs = star_groups(X, 0.95)
    dense = star_groups(X, 0.95, max_pairs=100)
    assert dense.pairs is None and pairs.n_pairs == dense.n_pairs > 100
    np.testing.assert_array_equal(pairs.labels, dense.labels)
    np.testing.assert_array_equal(pairs.centres, dense.centres)
    np.testing.assert_array_equal(pairs.degree, dense.degree)
    np.testing.assert_array_equal(pairs.centre_similarity, dense.centre_similarity)


def test_lowest_similarity_large_equals_dense():
    X = _near(_corpus(1), [0] * 700, 0.3)
    S = similarity(X, X)[np.triu_indices(700, k=1)]
    assert lowest_similarity(X) == S.min()


def test_unique_rows_and_match_rows():
    X = np.float32([[1, 0], [0, 1], [1, 0], [-0.0, 1]])
    first, inverse, counts = unique_rows(X)
    np.testing.assert_array_equal(first, [0, 1])
    np.testing.assert_array_equal(inverse, [0, 1, 0, 1])
    np.testing.assert_array_equal(counts, [2, 2])
    found = match_rows(row_keys(X[first]), X[first], np.float32([[0, 1], [1, 1]]))
    np.testing.assert_array_equal(found, [1, -1])


def test_near_duplicates_partial_fit_keeps_ids():
    X = _corpus(300)
    dedupe = NearDuplicates(0.95).fit(np.vstack([X[:200], _near(X, range(20), 0.02)]))
    before = dedupe.groups_.copy()
    new = np.vstack([_near(X, range(5), 0.02, 3), X[200:300], X[200:203], X[0:1]])
    dedupe.partial_fit(new)
    g = dedupe.groups_
    assert g.shape == (329,)
    np.testing.assert_array_equal(g[:220], before)
    np.testing.assert_array_equal(g[220:225], before[:5])  # joined old groups
    np.testing.assert_array_equal(g[225:325], np.arange(200, 300))  # new groups
    np.testing.assert_array_equal(g[325:328], g[225:228])  # copies among new rows
    assert g[328] == before[0]
    assert dedupe.n_groups_ == 300 and dedupe.keep_.sum() == 300
    assert not dedupe.keep_[220:225].any() and dedupe.keep_[225:325].all()


def test_near_duplicates_partial_fit_exact_copy_of_member():
    step = np.arccos(0.97)
    X = _arc([0.0, step, 2 * step])
    dedupe = NearDuplicates(0.95).fit(X[:2])  # centre row 0, member row 1
    dedupe.partial_fit(X[2:])  # row 2: 0.88 to row 0, so a new group
    assert dedupe.groups_.tolist() == [0, 0, 1]
    dedupe.partial_fit(X[1:2])  # an exact copy of row 1 joins row 1's group
    assert dedupe.groups_.tolist() == [0, 0, 1, 0]
    assert dedupe.group_sizes_.tolist() == [3, 1]


def test_near_duplicates_partial_fit_before_fit_is_fit():
    X = _corpus(50)
    a = NearDuplicates(0.95).partial_fit(X)
    np.testing.assert_array_equal(a.groups_, NearDuplicates(0.95).fit(X).groups_)


def test_near_duplicates_predict_does_not_change_fit():
    X = _corpus(100)
    dedupe = NearDuplicates(0.95).fit(X)
    labels = dedupe.predict(np.vstack([_near(X, [7], 0.02), _corpus(1, seed=5)]))
    assert labels.tolist() == [7, -1] and labels.dtype == np.intp
    assert dedupe.groups_.shape == (100,)


def test_near_duplicates_groups_keep_copies_in_one_fold():
    X = _corpus(200)
    data = np.vstack([X, _near(X, range(40), 0.02)])
    groups = NearDuplicates(0.95).fit(data).groups_
    for train, test in GroupKFold(n_splits=5).split(data, groups=groups):
        assert not set(groups[train]) & set(groups[test])
        assert not set(map(int, train)) & ({i + 200 for i in test if i < 40})


def test_near_duplicates_leakage_frame_and_summary():
    X = _corpus(400)
    train = np.vstack([X[:300], X[:10]])  # 10 internal copies
    dedupe = NearDuplicates(0.95, random_state=0).fit(train)
    test = np.vstack([_near(X, range(20), 0.02), X[300:400]])
    result = dedupe.leakage(test, threshold=None)  # the estimator's 0.95
    frame = result.frame
    assert list(frame.columns) == ["nearest", "group", "similarity", "leaked"]
    assert frame.shape == (120, 4) and frame["similarity"].dtype == np.float32
    assert frame["leaked"].tolist() == [True] * 20 + [False] * 100
    np.testing.assert_array_equal(frame["nearest"][:20], np.arange(20))
    s = result.summary
    assert s["n_leaked"] == 20 and s["leaked_share"] == pytest.approx(20 / 120)
    assert s["n_chance"] == 155
    # 20 of the 310 training rows have a copy elsewhere in the training set.
    assert 0.0 < s["chance_share"] < 0.2
    assert s["excess_share"] == pytest.approx(s["leaked_share"] - s["chance_share"])
    assert "20 of 120 test rows (16.7%)" in str(result) and "fixed" in str(result)


def test_near_duplicates_leakage_auto_threshold_sits_above_unrelated_rows():
    # Edited copies at ~0.8 similarity, unrelated rows far below: the auto rule
    # flags the copies that 0.95 misses, and few unseen rows.
    X = _corpus(3000, 64)
    dedupe = NearDuplicates(0.95, random_state=0).fit(X[:2000])
    copies = _near(X, range(300), 0.09)
    test = np.vstack([copies, X[2000:]])
    auto = dedupe.leakage(test)
    fixed = dedupe.leakage(test, threshold=None)
    flagged = auto.frame["leaked"].to_numpy()
    assert auto.summary["threshold_rule"] == "auto"
    assert auto.summary["threshold"] < 0.95 and flagged[:300].all()
    assert fixed.frame["leaked"][:300].sum() < 300
    assert flagged[300:].mean() <= 0.01
    assert auto.summary["chance_share"] <= 0.01 and auto.summary["n_chance"] == 1000


def test_near_duplicates_leakage_threshold_checked():
    dedupe = NearDuplicates(0.95).fit(_corpus(10))
    with pytest.raises(ValueError, match="threshold must be 'auto', None or a"):
        dedupe.leakage(_corpus(2), threshold=1.5)


def test_near_duplicates_approximate_path_reports_recall():
    X = _corpus(3000, 32)
    data = np.vstack([X, _near(X, range(100), 0.02)])
    exact = NearDuplicates(0.95, neighbors="exact").fit(data)
    approx = NearDuplicates(0.95, neighbors="approximate", random_state=0).fit(data)
    assert exact.approximate_recall_ is None
    assert approx.approximate_recall_ == pytest.approx(1.0)
    np.testing.assert_array_equal(approx.groups_, exact.groups_)


def test_near_duplicates_pickles_and_clones():
    X = _corpus(50)
    dedupe = NearDuplicates(threshold=0.9).fit(X)
    again = pickle.loads(pickle.dumps(dedupe))
    np.testing.assert_array_equal(again.predict(X), dedupe.groups_)
    assert clone(dedupe).get_params()["threshold"] == 0.9


def test_near_duplicates_errors():
    with pytest.raises(ValueError, match="NaN"):
        NearDuplicates(0.95).fit([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicates(threshold=2.0).fit(_corpus(3))
    dedupe = NearDuplicates(0.95).fit(_corpus(3))
    with pytest.raises(ValueError, match="expecting 32 features"):
        dedupe.leakage(np.ones((2, 3)))
    with pytest.raises(NotFittedError):
        NearDuplicates(0.95).leakage(_corpus(2))


# ---------------------------------------------------------- threshold="auto"
def _edited_corpus(n=1500, d=64, topics=30, n_sources=150, seed=0):
    """Topical rows (unrelated neighbours up to ~0.75) plus three edited copies
    of each of ``n_sources`` rows, spread from ~0.73 to 1 like edited paragraphs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, d))
    noise = 1.2 * rng.standard_normal((n, d))
    rows = l2_normalize(centres[rng.integers(topics, size=n)] + noise)
    sources = rng.choice(n, n_sources, replace=False)
    scale = rng.uniform(0.05, 0.8, size=(3 * n_sources, 1)) / np.sqrt(d)
    copies = np.repeat(rows[sources], 3, axis=0)
    copies = l2_normalize(copies + scale * rng.standard_normal(copies.shape))
    origin = np.concatenate([np.arange(n), np.repeat(sources, 3)])
    return np.vstack([rows, copies]), origin


def test_auto_threshold_groups_edited_copies_that_a_fixed_095_misses():
    X, origin = _edited_corpus()
    n = origin.size - 450
    auto = NearDuplicates(random_state=0).fit(X)
    fixed = NearDuplicates(0.95).fit(X)
    copies_grouped = auto.groups_[n:] == auto.groups_[origin[n:]]
    assert copies_grouped.mean() >= 0.99
    assert (fixed.groups_[n:] == fixed.groups_[origin[n:]]).mean() < 0.5
    assert 0.6 < auto.threshold_ < 0.8 and fixed.threshold_ == 0.95
    groups = range(auto.n_groups_)
    pure = [np.unique(origin[auto.groups_ == k]).size == 1 for k in groups]
    assert np.mean(pure) >= 0.99
    _check_star(X, auto)
    # the derived threshold is the one predict, partial_fit and leakage use
    assert auto.leakage(X[n:], threshold=None).summary["threshold"] == pytest.approx(
        auto.threshold_
    )


def test_auto_threshold_is_095_without_a_valley():
    # no near-copies: one mode; dense one-line-like rows: neighbours reach 0.95+
    assert NearDuplicates().fit(_corpus(600, 32)).threshold_ == 0.95
    rng = np.random.default_rng(3)
    dense = l2_normalize(1.0 + 0.08 * rng.standard_normal((800, 16)))
    assert NearDuplicates().fit(dense).threshold_ == 0.95
    # too few rows to see two modes, one distinct row, a fixed value
    assert NearDuplicates().fit(_corpus(30)).threshold_ == 0.95
    assert NearDuplicates().fit(np.ones((50, 4))).threshold_ == 0.95
    assert NearDuplicates(0.9).fit(_corpus(30)).threshold_ == 0.9


def test_auto_threshold_is_deterministic_and_cloneable():
    X, _ = _edited_corpus(seed=1)
    a = NearDuplicates(random_state=0).fit(X)
    b = clone(a).fit(X)
    assert a.threshold_ == b.threshold_
    np.testing.assert_array_equal(a.groups_, b.groups_)
    assert NearDuplicates().get_params()["threshold"] == "auto"
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicates(threshold="high").fit(X)


def test_leakage_auto_holds_on_a_small_training_set():
    # 100 training rows: the held-out slice (50 rows) alone says little; the test
    # rows' own two modes (unseen, copies) place the threshold
    X, origin = _edited_corpus(n=1200, n_sources=100, seed=2)
    sources = np.unique(origin[1200:])
    unseen = np.setdiff1d(np.arange(1200), sources)
    dedupe = NearDuplicates(random_state=0).fit(X[sources])
    result = dedupe.leakage(np.vstack([X[1200:], X[unseen]]))
    flagged = result.frame["leaked"].to_numpy()
    assert flagged[:300].mean() >= 0.99
    assert flagged[300:].mean() <= 0.01
    assert result.summary["threshold_rule"] == "auto"
