"""Topics: the fitted clusters merged by Ward's rule, named, per row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from embedtasks import EmbeddingClusterer
from embedtasks.cluster._topics import auto_n_topics, cut_tree, merge_tree


def two_groups(per_cluster=30, n_noise=0, seed=0):
    """Six tight clusters in two groups of three (the groups share a direction),
    ``n_noise`` stray rows last; the true group of each row (-1: stray)."""
    rng = np.random.default_rng(seed)
    dim = 16
    directions = np.eye(dim)[[0, 0, 0, 1, 1, 1]] + 0.7 * np.eye(dim)[2:8]
    X = np.repeat(directions, per_cluster, axis=0)
    X = X + 0.03 * rng.normal(size=X.shape)
    strays = rng.normal(size=(n_noise, dim))
    X = np.vstack([X, strays]).astype(np.float32)
    groups = np.repeat([0, 0, 0, 1, 1, 1], per_cluster)
    return X, np.append(groups, np.full(n_noise, -1))


def texts_of(groups):
    words = {0: "cats purr softly", 1: "tax forms due", -1: "stray thought"}
    return [f"{words[g]} {i}" for i, g in enumerate(groups)]


@pytest.fixture(scope="module")
def fitted():
    X, groups = two_groups(n_noise=12)
    model = EmbeddingClusterer(reduction=None, min_cluster_size=10, random_state=0)
    return model.fit(X), X, groups


def _partition(labels):
    return {frozenset(np.flatnonzero(labels == g).tolist()) for g in set(labels)}


# -- the merges ---------------------------------------------------------------------
def test_merge_tree_is_wards_linkage_when_clusters_weigh_the_same():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(14, 6))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    tree = merge_tree(C.astype(np.float32), np.ones(14, dtype=int))
    Z = linkage(C, method="ward")
    # scipy's height is sqrt(2 x the merge's increase in the sum of squares)
    np.testing.assert_allclose(tree.costs, Z[:, 2] ** 2 / 2, rtol=1e-5)
    for t in range(1, 15):
        ours = cut_tree(tree, t)
        theirs = fcluster(Z, t, criterion="maxclust")
        assert _partition(ours) == _partition(theirs), t
        assert np.unique(ours).tolist() == list(range(t))


def test_merge_tree_weighs_each_centre_by_its_rows():
    # a cluster of w rows merges as w copies of its centre would
    rng = np.random.default_rng(1)
    C = rng.normal(size=(9, 5))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    sizes = np.array([1, 7, 2, 30, 3, 5, 12, 1, 4])
    tree = merge_tree(C.astype(np.float32), sizes)
    copies = np.repeat(np.arange(9), sizes)
    Z = linkage(C[copies], method="ward")
    np.testing.assert_allclose(tree.costs, Z[-8:, 2] ** 2 / 2, rtol=1e-5)
    for t in range(1, 10):
        theirs = fcluster(Z, t, criterion="maxclust")
        first = np.searchsorted(copies, np.arange(9))
        assert _partition(cut_tree(tree, t)) == _partition(theirs[first]), t
    # the largest topic is topic 0
    two = cut_tree(tree, 2)
    assert sizes[two == 0].sum() >= sizes[two == 1].sum()


def test_auto_n_topics_cuts_before_the_costliest_jump_within_its_range():
    # 16 clusters: looked for between 2 and 8 topics
    costs = np.linspace(1, 2, 15)
    costs[16 - 5] = 9.0  # joining the last 5 topics into 4 jumps
    assert auto_n_topics(np.maximum.accumulate(costs), 16) == 5
    costs = np.linspace(1, 2, 15)
    costs[16 - 12] = 30.0  # a jump at 12 topics is outside the range
    picked = auto_n_topics(np.maximum.accumulate(costs), 16)
    assert 2 <= picked <= 8
    for k in (3, 4, 10, 37, 84, 400):
        t = auto_n_topics(np.arange(1, k, dtype=float), k)
        assert max(2, math.ceil(math.sqrt(k) / 2)) <= t <= min(k - 1, 2 * math.sqrt(k))
    assert auto_n_topics([], 1) == 1 and auto_n_topics([1.0], 2) == 2


# -- the estimator's methods --------------------------------------------------------
def test_two_groups_of_three_clusters_make_two_topics(fitted):
    model, X, groups = fitted
    assert model.n_clusters_ == 6
    labels = model.topic_labels()
    assert labels.dtype == np.intp and labels.shape == (X.shape[0],)
    clustered = model.labels_ >= 0
    assert set(labels[clustered]) == {0, 1}
    assert adjusted_rand_score(groups[clustered], labels[clustered]) == 1.0
    frame = model.topics()
    assert frame["topic"].tolist() == [0, 1, -1]
    assert [len(c) for c in frame["clusters"][:2]] == [3, 3]
    assert frame["name"].tolist() == ["topic 0", "topic 1", "noise"]
    assert frame["size"].sum() == X.shape[0]
    assert frame["share"].sum() == pytest.approx(1.0)


def test_noise_rows_stay_noise(fitted):
    model, X, _ = fitted
    noise = model.labels_ == -1
    assert noise.sum() > 0
    assert (model.topic_labels()[noise] == -1).all()
    assert (model.topic_labels(n_topics=6)[noise] == -1).all()
    frame = model.topics()
    assert frame.iloc[-1]["size"] == noise.sum()
    assert frame.iloc[-1]["clusters"] == [-1]


def test_an_explicit_number_of_topics(fitted):
    model, _, groups = fitted
    clustered = model.labels_ >= 0
    three = model.topic_labels(n_topics=3)
    assert sorted(set(three[clustered])) == [0, 1, 2]
    # the third topic splits one group: each topic stays inside a group
    for t in range(3):
        assert len(set(groups[three == t])) == 1
    six = model.topic_labels(n_topics=6)
    assert adjusted_rand_score(model.labels_[clustered], six[clustered]) == 1.0
    one = model.topics(n_topics=1)
    assert one["topic"].tolist() == [0, -1] and one["clusters"][0] == list(range(6))


def test_topics_are_named_by_their_keywords(fitted):
    model, _, groups = fitted
    frame = model.topics(texts_of(groups))
    names = dict(zip(frame["topic"], frame["name"], strict=True))
    by_group = {g: model.topic_labels()[np.flatnonzero(groups == g)[0]] for g in (0, 1)}
    assert names[by_group[0]] == "cats purr"
    assert names[by_group[1]] == "tax forms"
    assert frame["keywords"].iloc[-1] == []
    texts = frame["representative_texts"][0]
    assert len(texts) == 3 and all(t.startswith(names[0]) for t in texts)
    assert names[-1] == "noise" and frame["keywords"][0][0] == names[0]


def test_topics_take_a_namer(fitted):
    model, _, groups = fitted

    class Namer:  # a stand-in for a chat model
        def name(self, clusters):
            self.seen = clusters
            return [c["name"].upper() for c in clusters]

    namer = Namer()
    frame = model.topics(texts_of(groups), namer=namer)
    assert frame["name"].tolist()[:2] == [c["name"].upper() for c in namer.seen]
    assert [c["size"] for c in namer.seen] == frame["size"].tolist()[:2]
    with pytest.raises(ValueError, match="a namer needs the texts"):
        model.topics(namer=namer)


def test_summary_shows_each_clusters_topic(fitted):
    model, _, _ = fitted
    summary = model.summary(n_topics="auto")
    assert list(summary.columns[:3]) == ["cluster", "topic", "name"]
    of_cluster = dict(zip(summary["cluster"], summary["topic"], strict=True))
    assert of_cluster[-1] == -1
    topics = model.topics()
    for topic, clusters in zip(topics["topic"], topics["clusters"], strict=True):
        assert all(of_cluster[c] == topic for c in clusters)
    assert "topic" not in model.summary().columns


def test_topic_labels_of_new_rows_follow_predict(fitted):
    model, X, _ = fitted
    np.testing.assert_array_equal(model.topic_labels(X), model.topic_labels())
    np.testing.assert_array_equal(
        model.topic_labels(X[:5], n_topics=3), model.topic_labels(n_topics=3)[:5]
    )


def test_a_single_cluster_is_a_single_topic():
    rng = np.random.default_rng(0)
    X = (np.eye(8)[0] + 0.02 * rng.normal(size=(40, 8))).astype(np.float32)
    model = EmbeddingClusterer(n_clusters=1, reduction=None, random_state=0).fit(X)
    frame = model.topics()
    assert frame["topic"].tolist() == [0] and frame["clusters"][0] == [0]
    assert (model.topic_labels() == 0).all()
    with pytest.raises(ValueError, match=r"n_topics=2 is out of range.*1 <= n_topics"):
        model.topics(n_topics=2)


def test_kmeans_clusters_merge_too():
    X, groups = two_groups()
    model = EmbeddingClusterer(n_clusters=6, reduction="pca", random_state=0).fit(X)
    assert adjusted_rand_score(groups, model.topic_labels()) == 1.0


@pytest.mark.parametrize(
    ("n_topics", "error", "match"),
    [
        (7, ValueError, r"n_topics=7 is out of range: topics merge the 6 fitted "
         r"clusters, so pass 1 <= n_topics <= 6 \(n_clusters_\), or 'auto'"),
        (0, ValueError, r"n_topics=0 is out of range"),
        (-3, ValueError, r"n_topics=-3 is out of range"),
        (2.5, TypeError, r"n_topics must be 'auto' or an int, got 2.5 \(float\)"),
        ("many", TypeError, r"got 'many' \(str\)\. Pass a whole number"),
        (True, TypeError, r"got True \(bool\)"),
        (None, TypeError, r"got None"),
    ],
)  # fmt: skip
def test_bad_numbers_of_topics_say_what_to_pass(fitted, n_topics, error, match):
    model, _, _ = fitted
    with pytest.raises(error, match=f"EmbeddingClusterer.topics: .*{match}"):
        model.topics(n_topics=n_topics)
    with pytest.raises(error, match="EmbeddingClusterer.topic_labels: "):
        model.topic_labels(n_topics=n_topics)


def test_no_clusters_means_no_topics():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8)).astype(np.float32)
    model = EmbeddingClusterer(
        reduction=None, min_cluster_size=25, max_noise=None, random_state=0
    ).fit(X)
    assert model.n_clusters_ == 0
    assert model.topics()["topic"].tolist() == [-1]
    assert (model.topic_labels() == -1).all()
    with pytest.raises(ValueError, match="found no clusters.*Lower min_cluster_size"):
        model.topics(n_topics=2)


def test_topics_need_a_fitted_clusterer():
    with pytest.raises(NotFittedError):
        EmbeddingClusterer().topics()
    with pytest.raises(NotFittedError):
        EmbeddingClusterer().topic_labels()
