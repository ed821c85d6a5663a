"""DriftTest: valid p-values, power, clusters, examples, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from embedtasks import DriftResult, DriftTest
from embedtasks.exceptions import InvalidTextError


def _topics(rng, n, centres, weights, noise=0.35):
    """``n`` unit-ish rows drawn around ``centres`` with the given weights."""
    which = rng.choice(len(centres), size=n, p=weights)
    X = centres[which] + noise * rng.standard_normal((n, centres.shape[1]))
    return X.astype(np.float32), which


@pytest.fixture
def centres():
    rng = np.random.default_rng(42)
    return rng.standard_normal((6, 16))


def test_drift_null_p_values_are_not_small_on_one_distribution(centres):
    weights = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1]
    p_values = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        A, _ = _topics(rng, 200, centres, weights)
        B, _ = _topics(rng, 150, centres, weights)
        drift = DriftTest(n_permutations=99, random_state=seed).fit(A)
        p_values.append(drift.test(B).p_value)
    p_values = np.array(p_values)
    assert (p_values < 0.05).sum() <= 3  # 1 expected; binomial(20, 0.05) tail
    assert np.median(p_values) > 0.2


def test_drift_null_with_near_copies_stays_valid(centres):
    # a corpus made of near-copies: each source row appears 4 times, jittered
    rng = np.random.default_rng(7)
    base, _ = _topics(rng, 100, centres, [1 / 6] * 6)
    corpus = np.repeat(base, 4, axis=0) + 1e-3 * rng.standard_normal((400, 16))
    flagged = 0
    for seed in range(20):
        order = np.random.default_rng(100 + seed).permutation(400)
        drift = DriftTest(n_permutations=99, random_state=seed)
        result = drift.fit(corpus[order[:200]]).test(corpus[order[200:]])
        flagged += result.p_value < 0.05
    assert flagged <= 3


def test_drift_detects_a_new_topic_and_its_cluster(centres):
    rng = np.random.default_rng(1)
    A, _ = _topics(rng, 400, centres, [0.2, 0.2, 0.2, 0.2, 0.2, 0.0])
    B, topic = _topics(rng, 400, centres, [0.18, 0.18, 0.18, 0.18, 0.18, 0.1])
    drift = DriftTest(n_clusters=8, n_permutations=199, random_state=0)
    result = drift.fit(A).test(B)
    assert isinstance(result, DriftResult)
    assert result.drifted and result.p_value == pytest.approx(1 / 200)
    low, high = result.confidence_interval
    assert 0 < low < result.statistic < high
    top = result.clusters.iloc[0]
    assert top["change"] == "grew" and top["n_reference"] == 0
    assert top["n_new"] == (topic == 5).sum()
    assert set(result.labels_new[topic == 5]) == {top["cluster"]}
    # every listed example belongs to the new topic, with no reference neighbour
    assert (topic[result.examples["index"]] == 5).all()
    assert (result.examples["score"] == 1.0).all()
    assert result.examples["reference_similarity"].is_monotonic_increasing


def test_drift_new_topic_next_to_an_old_one_is_the_most_grown_cluster(centres):
    # a new topic half a unit from topic 0 (rows spread over about 2): k-means
    # (8 clusters for 1,200 rows) often cuts it between two neighbouring
    # clusters, each with half its growth, and one grown by chance outranks both
    step = centres[1] - centres[0]
    with_new = np.vstack([centres, centres[0] + 0.5 * step / np.linalg.norm(step)])
    for seed in range(10):
        rng = np.random.default_rng(seed)
        A, _ = _topics(rng, 600, with_new, [1 / 6] * 6 + [0.0])
        B, topic = _topics(rng, 600, with_new, [0.15] * 6 + [0.1])
        result = DriftTest(n_permutations=20, random_state=seed).fit(A).test(B)
        top = result.clusters.iloc[0]
        held = result.labels_new[topic == 6] == top["cluster"]
        assert top["difference"] > 0.05, seed
        assert held.mean() >= 0.9, (seed, held.mean())


def test_drift_int_n_clusters_gives_that_many_clusters(centres):
    step = centres[1] - centres[0]
    with_new = np.vstack([centres, centres[0] + 0.5 * step / np.linalg.norm(step)])
    rng = np.random.default_rng(9)
    A, _ = _topics(rng, 600, with_new, [1 / 6] * 6 + [0.0])
    B, _ = _topics(rng, 600, with_new, [0.15] * 6 + [0.1])
    drift = DriftTest(n_clusters=8, n_permutations=20, random_state=9).fit(A)
    result = drift.test(B)
    assert len(result.clusters) == 8
    assert set(np.unique(result.labels_new)) <= set(range(8))


def test_drift_detects_a_shift_in_proportions(centres):
    rng = np.random.default_rng(2)
    A, _ = _topics(rng, 600, centres, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    B, _ = _topics(rng, 600, centres, [0.1, 0.1, 0.1, 0.1, 0.3, 0.3])
    result = DriftTest(n_clusters=6, n_permutations=199, random_state=0).fit(A)
    result = result.test(B)
    assert result.drifted
    assert (result.clusters["change"] == "grew").sum() == 2
    assert (result.clusters["change"] == "shrank").sum() == 2


def test_drift_clusters_table_is_consistent(centres):
    rng = np.random.default_rng(3)
    A, _ = _topics(rng, 300, centres, [1 / 6] * 6)
    B, _ = _topics(rng, 200, centres, [1 / 6] * 6)
    result = DriftTest(n_permutations=50, random_state=0).fit(A).test(B)
    frame = result.clusters
    assert list(frame.columns[:10]) == [
        "cluster", "name", "n_reference", "n_new", "share_reference", "share_new",
        "difference", "ci_low", "ci_high", "change",
    ]  # fmt: skip
    assert frame["n_reference"].sum() == 300 and frame["n_new"].sum() == 200
    np.testing.assert_allclose(frame["share_new"].sum(), 1.0)
    np.testing.assert_allclose(
        frame["difference"], frame["share_new"] - frame["share_reference"]
    )
    assert (frame["ci_low"] <= frame["difference"]).all()
    assert (frame["difference"] <= frame["ci_high"]).all()
    assert frame["difference"].is_monotonic_decreasing
    assert result.labels_reference.shape == (300,)
    assert result.labels_new.dtype == np.intp
    for pairs in frame["representatives"]:
        for side, row in pairs:
            assert side in {"reference", "new"} and row >= 0


def test_drift_is_deterministic_with_random_state(centres):
    rng = np.random.default_rng(4)
    A, _ = _topics(rng, 300, centres, [1 / 6] * 6)
    B, _ = _topics(rng, 250, centres, [0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    first = DriftTest(n_permutations=99, random_state=3).fit(A).test(B)
    again = DriftTest(n_permutations=99, random_state=3).fit(A).test(B)
    assert first == again  # figures compare equal
    assert first.clusters.equals(again.clusters)
    assert first.examples.equals(again.examples)
    np.testing.assert_array_equal(first.labels_new, again.labels_new)


def test_drift_float64_and_scale_do_not_change_the_result(centres):
    rng = np.random.default_rng(5)
    A, _ = _topics(rng, 200, centres, [1 / 6] * 6)
    B, _ = _topics(rng, 200, centres, [0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    a = DriftTest(n_permutations=99, random_state=0).fit(A).test(B)
    b = DriftTest(n_permutations=99, random_state=0).fit(A.astype(np.float64) * 3)
    assert b.reference_.dtype == np.float32
    assert a == b.test(B * 2)


def test_drift_max_samples_subsamples_each_set(centres):
    rng = np.random.default_rng(6)
    A, _ = _topics(rng, 300, centres, [1 / 6] * 6)
    B, _ = _topics(rng, 120, centres, [1 / 6] * 6)
    result = DriftTest(max_samples=100, n_permutations=20, random_state=0).fit(A)
    result = result.test(B)
    assert (result.n_reference, result.n_new) == (100, 100)
    assert (result.labels_reference >= 0).sum() == 100
    assert np.isnan(result.scores_new).sum() == 20


def test_drift_texts_name_clusters_and_examples():
    rng = np.random.default_rng(8)
    words = {
        0: "invoice payment refund billing charge",
        1: "delivery parcel courier shipping tracking",
        2: "password login account reset security",
    }
    centres = rng.standard_normal((3, 8))

    def make(n, weights):
        which = rng.choice(3, size=n, p=weights)
        X = centres[which] + 0.2 * rng.standard_normal((n, 8))
        texts = [
            " ".join(rng.permutation(words[w].split())[:3]) + f" {i}"
            for i, w in enumerate(which)
        ]
        return X, texts

    A, texts_a = make(150, [0.5, 0.5, 0.0])
    B, texts_b = make(150, [0.4, 0.3, 0.3])
    drift = DriftTest(n_clusters=3, n_permutations=99, random_state=0)
    result = drift.fit(A, texts=texts_a).test(B, texts=texts_b)
    top = result.clusters.iloc[0]
    assert top["change"] == "grew"
    assert set(top["keywords"][:3]) <= set(words[2].split())
    assert set(top["name"].split()) & set(words[2].split())
    assert result.examples["text"].str.split().str[0].isin(words[2].split()).all()
    assert result.examples["nearest_reference_text"].isin(texts_a).all()


def test_drift_summary_and_json(centres):
    rng = np.random.default_rng(9)
    A, _ = _topics(rng, 100, centres, [0.2, 0.2, 0.2, 0.2, 0.2, 0.0])
    B, _ = _topics(rng, 100, centres, [0.1, 0.1, 0.1, 0.1, 0.1, 0.5])
    result = DriftTest(n_permutations=99, random_state=0).fit(A).test(B)
    text = repr(result)
    assert text.startswith("DriftTest: the new set differs from the reference")
    assert "p = <= 0.01" in text and "grew" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["drifted"] is True and len(data["examples"]) == 10
    assert data["clusters"][0]["change"] == "grew"
    same = DriftTest(n_permutations=99, random_state=0).fit(A).test(A[::-1])
    assert "no evidence" in same.summary()


def test_drift_sizes_may_differ_and_tiny_sets_work():
    rng = np.random.default_rng(10)
    A = rng.standard_normal((2, 4))
    result = DriftTest(n_permutations=10, random_state=0).fit(A).test(A[:1] + 0.1)
    assert result.n_neighbors == 2 and result.n_new == 1
    assert 0 < result.p_value <= 1


def test_drift_test_before_fit_raises():
    with pytest.raises(NotFittedError):
        DriftTest().test(np.ones((3, 4)))


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones((3, 5)), "X has 5 features, but DriftTest is expecting 4"),
        (np.full((3, 4), np.nan), "Input X contains NaN"),
        (np.ones((0, 4)), "0 sample"),
        (None, "Expected 2D array|NoneType"),
    ],
)
def test_drift_bad_new_input_raises(X, match):
    drift = DriftTest().fit(np.random.default_rng(0).standard_normal((5, 4)))
    with pytest.raises((ValueError, TypeError), match=match):
        drift.test(X)


def test_drift_too_few_rows_raises():
    drift = DriftTest().fit(np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 3 rows in all"):
        drift.test(np.ones((1, 4)))


def test_drift_texts_must_match_rows_and_come_in_pairs():
    X = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="got 3 texts for 4 reference rows"):
        DriftTest().fit(X, texts=["a", "b", "c"])
    with pytest.raises(InvalidTextError, match="row 1"):
        DriftTest().fit(X, texts=["a", None, "c", "d"])
    drift = DriftTest().fit(X)
    with pytest.raises(ValueError, match=r"texts in test\(\) only"):
        drift.test(X, texts=list("abcd"))
    drift = DriftTest().fit(X, texts=list("abcd"))
    with pytest.raises(ValueError, match=r"texts in fit\(\) only"):
        drift.test(X)


def test_drift_parameters_are_validated():
    with pytest.raises(ValueError, match="'n_permutations' parameter of DriftTest"):
        DriftTest(n_permutations=0).fit(np.ones((3, 2)))


def test_train_centroids_plus_plus_finds_a_small_separate_group():
    from embedtasks._kernel import top_k, train_centroids

    rng = np.random.default_rng(0)
    centres = np.eye(6, dtype=np.float32)
    sizes = [300, 300, 300, 300, 300, 15]  # a small group far from the rest
    X = np.vstack(
        [
            c + 0.1 * rng.standard_normal((n, 6))
            for c, n in zip(centres, sizes, strict=True)
        ]
    ).astype(np.float32)
    C = train_centroids(X, 6, sample=len(X), random_state=0, init="k-means++")
    labels = top_k(X, C, 1).indices[:, 0]
    assert C.dtype == np.float32 and C.shape == (6, 6)
    assert len(set(labels[-15:])) == 1 and (labels == labels[-1]).sum() == 15
    again = train_centroids(X, 6, sample=len(X), random_state=0, init="k-means++")
    np.testing.assert_array_equal(C, again)
