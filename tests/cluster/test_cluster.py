from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score, v_measure_score

from embedtasks import EmbeddingClusterer
from embedtasks._keywords import topic_names
from embedtasks.exceptions import InvalidTextError

WORDS = ["apple", "river", "engine", "violin", "planet", "garden"]


def _topics(n_topics=4, per_topic=40, dim=32, noise=0.15, seed=0):
    """Unit vectors around ``n_topics`` random directions, plus their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_topics, dim))
    y = np.repeat(np.arange(n_topics), per_topic)
    X = centres[y] + noise * np.sqrt(dim) * rng.normal(size=(y.size, dim)) / 3
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


def _texts(y):
    return [
        f"{WORDS[label]} {WORDS[label]}s story number {i}" for i, label in enumerate(y)
    ]


def test_pca_hdbscan_recovers_topics():
    X, y = _topics()
    model = EmbeddingClusterer(reduction="pca", n_components=5, random_state=0)
    labels = model.fit_predict(X)
    assert labels.dtype == np.intp and labels.shape == (160,)
    assert model.n_clusters_ == 4
    assert v_measure_score(y, labels) > 0.95
    assert model.embedding_.shape == (160, 5) and model.embedding_.dtype == np.float32
    assert model.kmeans_ is None and model.hdbscan_ is not None


def test_auto_min_cluster_size_grows_with_the_corpus():
    small, _ = _topics(per_topic=40)  # 160 rows: 160 // 40, at least 5
    middle, _ = _topics(per_topic=250)  # 1,000 rows: 15
    large, y = _topics(n_topics=4, per_topic=1000, dim=16)  # 4,000 rows: 4000 // 200
    model = EmbeddingClusterer(reduction="pca", n_components=5, random_state=0)
    assert model.fit(small).min_cluster_size_ == 5
    assert model.fit(middle).min_cluster_size_ == 15
    assert model.fit(large).min_cluster_size_ == 20
    assert model.hdbscan_.min_cluster_size == 20
    assert v_measure_score(y, model.labels_) > 0.9
    fixed = EmbeddingClusterer(reduction="pca", min_cluster_size=7, random_state=0)
    assert fixed.fit(small).min_cluster_size_ == 7


def test_labels_numbered_by_decreasing_size():
    X, y = _topics(n_topics=3, per_topic=30)
    keep = np.concatenate([np.arange(0, 10), np.arange(30, 90)])  # sizes 10, 30, 30
    model = EmbeddingClusterer(
        reduction="pca", n_components=4, min_cluster_size=5, random_state=0
    ).fit(X[keep])
    sizes = np.bincount(model.labels_[model.labels_ >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)
    assert model.labels_[0] == 2  # the smallest topic gets the last label


def test_noise_points_marked_and_assign_noise_reassigns_them():
    X, y = _topics()
    rng = np.random.default_rng(1)
    stray = rng.normal(size=(12, X.shape[1])).astype(np.float32)
    Xn = np.vstack([X, stray])
    plain = EmbeddingClusterer(reduction=None, random_state=0).fit(Xn)
    noise = plain.labels_ == -1
    assert noise.sum() >= 6
    np.testing.assert_array_equal(plain.probabilities_[noise], 0.0)
    assigned = EmbeddingClusterer(
        reduction=None, assign_noise=True, random_state=0
    ).fit(Xn)
    assert (assigned.labels_ >= 0).all()
    # the same clusters (numbered by size, which reassignment may reorder)
    same = adjusted_rand_score(assigned.labels_[~noise], plain.labels_[~noise])
    assert same == 1.0
    assert ((assigned.probabilities_ >= 0) & (assigned.probabilities_ <= 1)).all()
    assert (assigned.predict(stray) >= 0).all()
    assert (plain.predict(stray) == -1).sum() >= 6


def test_predict_puts_new_points_in_their_topic():
    X, y = _topics(per_topic=60)
    train = np.arange(y.size) % 3 != 0
    model = EmbeddingClusterer(reduction="pca", n_components=5, random_state=0)
    model.fit(X[train])
    predicted = model.predict(X[~train])
    assert predicted.shape == ((~train).sum(),) and predicted.dtype == np.intp
    # each held-out point lands in the cluster that holds its topic in training
    topic_to_cluster = {
        t: np.bincount(model.labels_[y[train] == t] + 1).argmax() - 1 for t in range(4)
    }
    expected = np.array([topic_to_cluster[t] for t in y[~train]])
    assert (predicted == expected).mean() > 0.9


def test_kmeans_when_n_clusters_given():
    X, y = _topics(n_topics=5)
    model = EmbeddingClusterer(n_clusters=5, reduction="pca", random_state=0).fit(X)
    assert model.hdbscan_ is None and model.kmeans_.n_clusters == 5
    assert set(model.labels_) == set(range(5))
    np.testing.assert_array_equal(model.probabilities_, 1.0)
    assert v_measure_score(y, model.labels_) > 0.95
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_n_clusters_larger_than_samples_is_refused():
    X, _ = _topics(per_topic=2)
    with pytest.raises(ValueError, match=r"n_clusters=20 is larger than.*\(8\)"):
        EmbeddingClusterer(n_clusters=20).fit(X)


def test_deterministic_given_random_state():
    X, _ = _topics(n_topics=3, per_topic=25)
    a = EmbeddingClusterer(n_clusters=3, reduction="pca", random_state=7).fit(X)
    b = EmbeddingClusterer(n_clusters=3, reduction="pca", random_state=7).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)


def test_centres_are_unit_and_representatives_central_and_diverse():
    X, y = _topics(n_topics=3, per_topic=30)
    X = np.vstack([X, np.repeat(X[:1], 5, axis=0)])  # five copies of row 0
    model = EmbeddingClusterer(
        reduction="pca", n_components=4, n_representatives=4, min_cluster_size=15,
        random_state=0,
    ).fit(X)  # fmt: skip
    centres = model.cluster_centers_
    assert centres.shape == (model.n_clusters_, 32) and centres.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1.0, rtol=1e-5)
    for c, rows in enumerate(model.representatives_):
        assert len(rows) == 4 and (model.labels_[rows] == c).all()
        sims = X[model.labels_ == c] @ centres[c]
        assert X[rows[0]] @ centres[c] == pytest.approx(sims.max())
        # no two representatives are near-copies of each other
        gram = X[rows] @ X[rows].T
        assert (gram[np.triu_indices(4, 1)] < 0.999).all()


def test_summary_without_and_with_texts():
    X, y = _topics(n_topics=3, per_topic=30)
    model = EmbeddingClusterer(reduction="pca", n_components=4, random_state=0).fit(X)
    frame = model.summary()
    assert list(frame.columns) == [
        "cluster",
        "name",
        "size",
        "share",
        "mean_probability",
        "representatives",
    ]
    assert frame["size"].sum() == model.labels_.size  # the noise row included
    clusters = frame[frame["cluster"] >= 0]
    assert clusters["name"].tolist() == [f"cluster {c}" for c in clusters["cluster"]]
    texts = _texts(y)
    frame = model.summary(texts, n_keywords=2)
    assert isinstance(frame, pd.DataFrame)
    assert frame["cluster"].tolist()[: model.n_clusters_] == list(
        range(model.n_clusters_)
    )
    for _, row in frame[frame["cluster"] >= 0].iterrows():
        topic = np.bincount(y[model.labels_ == row["cluster"]]).argmax()
        word = WORDS[topic]
        assert row["keywords"][0] in {word, word + "s", f"{word} {word}s"}
        assert len(row["keywords"]) == 2
        assert all(t.startswith(word) for t in row["representative_texts"])
        assert row["name"].split()[0] in {word, word + "s"}


def test_summary_keywords_empty_when_texts_are_only_stop_words():
    X, y = _topics(n_topics=2, per_topic=20)
    model = EmbeddingClusterer(reduction="pca", n_components=3, random_state=0).fit(X)
    frame = model.summary(["the and of"] * 40)
    assert frame["keywords"].map(len).eq(0).all()


def test_summary_rejects_texts_of_wrong_length():
    X, y = _topics(n_topics=2, per_topic=20)
    model = EmbeddingClusterer(reduction="pca", n_components=3).fit(X)
    with pytest.raises(ValueError, match=r"got 3 texts but was fitted on 40 rows"):
        model.summary(["a", "b", "c"])
    with pytest.raises(InvalidTextError, match="row 1"):
        model.summary(["a", None] + ["x"] * 38)


def test_unfitted_and_wrong_width_errors():
    X, _ = _topics(n_topics=2, per_topic=20)
    with pytest.raises(NotFittedError):
        EmbeddingClusterer().predict(X)
    with pytest.raises(NotFittedError):
        EmbeddingClusterer().summary()
    model = EmbeddingClusterer(reduction="pca", n_components=3).fit(X)
    with pytest.raises(ValueError, match="X has 5 features"):
        model.predict(X[:, :5])
    with pytest.raises(ValueError, match="'reduction' parameter"):
        EmbeddingClusterer(reduction="tsne").fit(X)


def test_all_noise_predicts_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 16)).astype(np.float32)
    model = EmbeddingClusterer(reduction=None, min_cluster_size=12, min_samples=1)
    model.fit(X)
    assert model.n_clusters_ == 0 and (model.labels_ == -1).all()
    frame = model.summary()
    assert frame["cluster"].tolist() == [-1] and frame["name"].tolist() == ["noise"]
    assert frame["size"].tolist() == [12]
    np.testing.assert_array_equal(model.predict(X[:3]), -1)


def test_umap_reduction_clusters_and_predicts():
    X, y = _topics(n_topics=4, per_topic=50, dim=48)
    model = EmbeddingClusterer(reduction="umap", random_state=0).fit(X)
    assert model.reduction_ == "umap" and model.reducer_ is None
    assert model.embedding_.shape == (200, 5)
    assert v_measure_score(y, model.labels_) > 0.9
    again = clone(model).fit(X)
    np.testing.assert_array_equal(model.labels_, again.labels_)
    predicted = model.predict(X[::10])
    agree = predicted == model.labels_[::10]
    assert agree.mean() > 0.9


def test_fit_and_predict_leave_the_input_untouched():
    X, _ = _topics(n_topics=2, per_topic=20)
    X = X * 3  # not unit length
    before = X.copy()
    EmbeddingClusterer(reduction="pca", n_components=3).fit(X).predict(X)
    np.testing.assert_array_equal(X, before)


def test_umap_fitted_on_a_sample_still_labels_every_row():
    X, y = _topics(n_topics=4, per_topic=60, dim=48)
    model = EmbeddingClusterer(
        reduction="umap", reduction_max_samples=120, random_state=0
    ).fit(X)
    assert model.embedding_.shape == (240, 5)
    assert v_measure_score(y, model.labels_) > 0.9
    # rows outside the sample sit where predict would put them
    np.testing.assert_array_equal(model.predict(X[::7]), model.labels_[::7])


def test_map_is_a_2d_float32_layout_of_the_training_rows(tmp_path):
    X, y = _topics(n_topics=3, per_topic=40, dim=24)
    model = EmbeddingClusterer(reduction="pca", cache_dir=tmp_path, random_state=0)
    model.fit(X)
    assert model.map_.shape == (120, 2) and model.map_.dtype == np.float32
    # the map keeps the topics apart: each row's nearest map neighbour shares it
    d = ((model.map_[:, None, :] - model.map_[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(axis=1)] == y).mean() > 0.95
    tiny = EmbeddingClusterer(reduction=None, min_cluster_size=2).fit(X[:6])
    assert tiny.map_.shape == (6, 2) and tiny.map_.dtype == np.float32


def _cached_files(folder):
    return sorted((folder / "cluster").glob("*.npz"))


def test_reduction_cache_reused_across_processes_and_damage_recomputed(tmp_path):
    from embedtasks.cluster import _reduce

    X, _ = _topics(n_topics=3, per_topic=40, dim=24)
    first = EmbeddingClusterer(cache_dir=tmp_path, random_state=0).fit(X)
    files = _cached_files(tmp_path)
    assert len(files) == 1  # the clustered space and the map, together
    _reduce._MEMORY.clear()  # as a new process would start
    again = EmbeddingClusterer(
        cache_dir=tmp_path, random_state=0, min_cluster_size=10
    ).fit(X)
    np.testing.assert_array_equal(first.embedding_, again.embedding_)
    np.testing.assert_array_equal(first.map_, again.map_)
    path = files[0]
    intact = path.read_bytes()
    middle = len(intact) // 2
    damaged = [
        intact[:middle] + b"\xff" * 8 + intact[middle + 8 :],  # flipped bytes
        intact[:middle],  # truncated
        b"not a cache file",
    ]
    for blob in damaged:
        path.write_bytes(blob)
        _reduce._MEMORY.clear()
        assert _reduce.ReductionCache(tmp_path).get(path.stem) is None
        repaired = EmbeddingClusterer(cache_dir=tmp_path, random_state=0).fit(X)
        np.testing.assert_array_equal(first.embedding_, repaired.embedding_)
        np.testing.assert_array_equal(first.map_, repaired.map_)
        _reduce._MEMORY.clear()
        assert _reduce.ReductionCache(tmp_path).get(path.stem) is not None


def test_reduction_cache_key_follows_data_and_parameters(tmp_path):
    X, _ = _topics(n_topics=3, per_topic=40, dim=24)
    EmbeddingClusterer(cache_dir=tmp_path, random_state=0).fit(X)
    EmbeddingClusterer(cache_dir=tmp_path, random_state=0).fit(X[::-1])
    EmbeddingClusterer(cache_dir=tmp_path, random_state=0, n_neighbors=10).fit(X)
    EmbeddingClusterer(cache_dir=tmp_path, random_state=1).fit(X)
    assert len(_cached_files(tmp_path)) == 4
    EmbeddingClusterer(cache_dir=tmp_path, random_state=0, min_samples=3).fit(X)
    EmbeddingClusterer(cache_dir=tmp_path, random_state=0, max_noise=0.0).fit(X)
    assert len(_cached_files(tmp_path)) == 4


def test_no_disk_cache_with_cache_dir_none(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDTASKS_CACHE_DIR", str(tmp_path))
    X, _ = _topics(n_topics=3, per_topic=40, dim=24)
    EmbeddingClusterer(cache_dir=None, random_state=0).fit(X)
    assert not (tmp_path / "cluster").exists()
    EmbeddingClusterer(random_state=0).fit(X)  # "default" honours the variable
    assert len(_cached_files(tmp_path)) == 1


def _with_strays(n_strays=40):
    X, y = _topics(n_topics=4, per_topic=50, dim=32)
    rng = np.random.default_rng(3)
    stray = rng.normal(size=(n_strays, X.shape[1])).astype(np.float32)
    stray /= np.linalg.norm(stray, axis=1, keepdims=True)
    return np.vstack([X, stray]), np.concatenate([y, np.full(n_strays, -1)])


@pytest.mark.parametrize("max_noise", [0.0, 0.05])
def test_max_noise_caps_the_noise_share(max_noise):
    X, y = _with_strays()
    plain = EmbeddingClusterer(reduction=None, max_noise=None, random_state=0).fit(X)
    assert (plain.labels_ < 0).mean() > 0.1
    capped = EmbeddingClusterer(
        reduction=None, max_noise=max_noise, random_state=0
    ).fit(X)
    assert (capped.labels_ < 0).mean() <= max_noise
    kept = plain.labels_ >= 0
    assert adjusted_rand_score(plain.labels_[kept], capped.labels_[kept]) == 1.0
    moved = (plain.labels_ < 0) & (capped.labels_ >= 0)
    np.testing.assert_array_equal(capped.probabilities_[moved], 0.0)
    # topic rows HDBSCAN left out go back to their own topic's cluster
    topic = moved & (y >= 0)
    if topic.any():
        home = {
            t: np.bincount(capped.labels_[kept & (y == t)]).argmax() for t in range(4)
        }
        assert (
            np.mean([capped.labels_[i] == home[y[i]] for i in np.flatnonzero(topic)])
            > 0.9
        )


def test_noise_rows_close_to_a_centre_in_the_input_space_join_it():
    # 8 topics squeezed into a 3-D layout: the layout blurs their edges, and
    # HDBSCAN leaves 11% of the rows as noise although each is close to its
    # topic's centre in the input space.
    X, y = _topics(n_topics=8, per_topic=60, dim=32, noise=0.3)
    model = EmbeddingClusterer(reduction="pca", n_components=3, random_state=0)
    model.fit(X)
    layout_noise = model.hdbscan_.labels_ < 0
    assert layout_noise.mean() > 0.1
    assert (model.labels_ < 0).mean() < 0.05
    assert v_measure_score(y, model.labels_) > 0.95
    joined = layout_noise & (model.labels_ >= 0)
    np.testing.assert_array_equal(model.probabilities_[joined], 0.0)
    clustered = model.labels_ >= 0
    home = np.array(
        [np.bincount(model.labels_[clustered & (y == t)]).argmax() for t in range(8)]
    )
    assert (model.labels_[joined] == home[y[joined]]).mean() > 0.9
    # predict applies the same rule: the training rows keep their labels
    assert (model.predict(X)[clustered] == model.labels_[clustered]).all()
    # max_noise=None keeps HDBSCAN's noise as it is
    plain = EmbeddingClusterer(
        reduction="pca", n_components=3, max_noise=None, random_state=0
    ).fit(X)
    np.testing.assert_array_equal(plain.labels_ < 0, layout_noise)


def test_centre_rescue_needs_the_centre_and_the_neighbours_to_agree():
    from embedtasks.cluster._density import CentreRescue

    def unit(rows):
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 3)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    # cluster 0 around x (members down to cos 0.86 from it); cluster 1 in two
    # tight bunches, one near x and one at z, so its centre lies between them
    spread = np.linspace(-0.6, 0.6, 30)
    A = unit(np.stack([np.ones(30), np.zeros(30), spread], axis=1))
    B = unit([[1, 0.3, 0]] * 15 + [[0, 0, 1]] * 15)
    X = np.vstack([A, B])
    labels = np.repeat([0, 1], 30)
    rescue = CentreRescue(X, labels, np.ones(60, dtype=bool), k=5)
    # near x: nearest centre 0, neighbours in 0 -> joins 0; by the bunch:
    # nearest centre 0 but neighbours in 1 -> stays out; y: close to no centre
    join, best = rescue.join(unit([[1, 0, 0.1], [1, 0.29, 0], [0, 1, 0]]))
    assert join.tolist() == [True, False, False] and best[0] == 0


def test_warns_when_the_reduction_leaves_few_clusters():
    X, _ = _topics(n_topics=2, per_topic=120, dim=32)
    with pytest.warns(UserWarning, match=r"2 clusters.*reduction='umap'"):
        EmbeddingClusterer(reduction="pca", n_components=5, random_state=0).fit(X)


def test_keywords_skip_urls_common_terms_and_prefer_phrases():
    X, y = _topics(n_topics=4, per_topic=20)
    topics = ["credit card", "river bank", "jazz violin", "space rocket"]
    texts = [
        f"www.example.org/page{i} http about {topics[t]} report number {i}"
        for i, t in enumerate(y)
    ]
    model = EmbeddingClusterer(reduction="pca", n_components=5, random_state=0).fit(X)
    frame = model.summary(texts, n_keywords=4)
    for _, row in frame[frame["cluster"] >= 0].iterrows():
        topic = topics[np.bincount(y[model.labels_ == row["cluster"]]).argmax()]
        assert topic in row["keywords"][:2]  # the phrase, not its two words
        assert not set(topic.split()) & set(row["keywords"])
        assert not {"www", "http", "org", "example", "report"} & set(row["keywords"])
        words = row["name"].split()
        assert row["name"].startswith(topic)  # named by its phrase first
        assert 2 <= len(words) <= 4 and len(words) == len(set(words))


def test_compare_reports_purity_v_measure_and_table():
    X, y = _with_strays()
    model = EmbeddingClusterer(reduction=None, random_state=0).fit(X)
    names = np.array(["a", "b", "c", "d", "stray"])[y]
    result = model.compare(names)
    assert result.v_measure == pytest.approx(v_measure_score(names, model.labels_))
    clustered = model.labels_ >= 0
    assert result.noise_share == pytest.approx(1 - clustered.mean())
    table = result.table
    top = table.loc[table.index >= 0, "top_share"] * table.loc[table.index >= 0, "size"]
    assert result.purity == pytest.approx(top.sum() / clustered.sum())
    assert result.purity > 0.95
    assert table.index.tolist()[-1] == -1 and table["name"].iloc[-1] == "noise"
    assert table["size"].sum() == len(names)
    assert set(table.columns) >= {"name", "size", "top_label", "top_share", "stray"}
    assert f"purity={result.purity:.3f}" in repr(result)
    with pytest.raises(ValueError, match=r"got y of shape \(3,\).*240 rows"):
        model.compare(names[:3])


def test_plot_map_draws_named_clusters_and_grey_noise():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = _with_strays()
    model = EmbeddingClusterer(reduction=None, random_state=0).fit(X)
    texts = [f"{WORDS[t]} story" if t >= 0 else "stray" for t in y]
    fig, ax = plt.subplots()
    assert model.plot_map(texts, ax=ax) is ax
    labels = {t.get_text() for t in ax.texts}
    assert labels == set(model.summary(texts)["name"][: model.n_clusters_])
    assert "noise" in ax.get_title()
    plt.close(fig)
    ax = model.plot_map()
    assert {t.get_text() for t in ax.texts} == {
        f"cluster {c}" for c in range(model.n_clusters_)
    }
    plt.close(ax.figure)


def test_max_noise_above_the_noise_share_changes_nothing():
    X, y = _with_strays()
    plain = EmbeddingClusterer(reduction=None, max_noise=None, random_state=0).fit(X)
    loose = EmbeddingClusterer(reduction=None, max_noise=1.0, random_state=0).fit(X)
    np.testing.assert_array_equal(plain.labels_, loose.labels_)
    np.testing.assert_array_equal(plain.probabilities_, loose.probabilities_)
    result = loose.compare(pd.Series(y))  # a label column straight from a frame
    assert result.noise_share == pytest.approx((plain.labels_ < 0).mean())


def test_unwritable_cache_dir_warns_and_still_fits(tmp_path):
    from embedtasks.cluster import _reduce

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    X, _ = _topics(n_topics=3, per_topic=40, dim=24)
    _reduce._MEMORY.clear()
    with pytest.warns(RuntimeWarning, match=r"could not write its reduction cache"):
        model = EmbeddingClusterer(cache_dir=blocker, random_state=0).fit(X)
    reference = EmbeddingClusterer(cache_dir=None, random_state=0).fit(X)
    np.testing.assert_array_equal(model.labels_, reference.labels_)


def test_layouts_are_reproducible_when_recomputed():
    from embedtasks.cluster import _reduce

    X, _ = _topics(n_topics=3, per_topic=40, dim=24)
    X[::2] += 0.3 * X[1::2]  # link the topics: one connected graph, spectral start
    runs = []
    for _ in range(2):
        _reduce._MEMORY.clear()
        runs.append(EmbeddingClusterer(cache_dir=None, random_state=3).fit(X))
    np.testing.assert_array_equal(runs[0].embedding_, runs[1].embedding_)
    np.testing.assert_array_equal(runs[0].map_, runs[1].map_)
    assert runs[0].reduction_ == "umap" and runs[0].embedding_.shape == (120, 5)


def _many_topics(n_topics=40, n=300, seed=0):
    """``n`` rows drawn from ``n_topics`` topics of uneven size (a small corpus)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(n_topics, size=n, p=rng.dirichlet(np.full(n_topics, 5.0)))
    centres = rng.normal(size=(n_topics, 48))
    X = centres[y] + 0.35 * rng.normal(size=(n, 48))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), y


def test_small_corpus_of_many_topics_gives_many_clusters():
    X, y = _many_topics()
    model = EmbeddingClusterer(random_state=0, cache_dir=None).fit(X)
    assert model.min_cluster_size_ == 300 // 40
    sizes = np.bincount(model.labels_[model.labels_ >= 0])
    assert model.n_clusters_ >= 10 and sizes.max() <= 0.25 * X.shape[0]
    assert v_measure_score(y, model.labels_) > 0.7
    # evenly sized groups keep "eom": four topics stay four clusters
    X4, y4 = _topics()
    four = EmbeddingClusterer(random_state=0, cache_dir=None).fit(X4)
    assert four.cluster_selection_method_ == "eom" and four.n_clusters_ == 4


def test_low_cluster_warning_gives_advice_that_changes_the_result():
    X, _ = _many_topics(n=600, seed=1)
    settings = {"random_state": 0, "cache_dir": None}
    with pytest.warns(UserWarning, match="cluster_selection_method='leaf'") as caught:
        before = EmbeddingClusterer(min_cluster_size=60, **settings).fit(X)
    message = str(caught[0].message)
    smaller = int(re.search(r"min_cluster_size=(\d+) \(CLI", message).group(1))
    assert f"--cluster-selection-method leaf --min-cluster-size {smaller}" in message
    after = EmbeddingClusterer(
        min_cluster_size=smaller, cluster_selection_method="leaf", **settings
    ).fit(X)
    assert after.n_clusters_ > before.n_clusters_
    largest = np.bincount(after.labels_[after.labels_ >= 0]).max()
    assert largest < np.bincount(before.labels_[before.labels_ >= 0]).max()


@pytest.mark.parametrize(
    "params",
    [
        {},  # UMAP layout, noise capped at 15%
        {"reduction_max_samples": 150},  # most rows placed in the layout
        {"max_noise": None},
        {"assign_noise": True},
        {"reduction": "pca"},
    ],
)
def test_predict_on_training_rows_reproduces_labels(params):
    X, _ = _many_topics(n_topics=12, n=400, seed=2)
    model = EmbeddingClusterer(random_state=0, cache_dir=None, **params).fit(X)
    clustered = model.labels_ >= 0
    assert clustered.sum() > 0.8 * X.shape[0]
    predicted = model.predict(X)
    assert (predicted[clustered] == model.labels_[clustered]).mean() >= 0.99
    # and a new point near a training row lands in its cluster
    row = int(np.flatnonzero(clustered)[0])
    nudged = X[row] + 1e-3 * np.random.default_rng(0).normal(size=X.shape[1])
    assert model.predict(nudged[None, :])[0] == model.labels_[row]


def test_names_are_short_distinct_and_free_of_boilerplate():
    rng = np.random.default_rng(3)
    topics = [
        ("card", "delivery", "arrive"), ("refund", "seller", "item"),
        ("pin", "blocked", "unblock"), ("exchange", "rate", "currency"),
        ("transfer", "failed", "declined"), ("cash", "atm", "withdrawal"),
    ]  # fmt: skip
    X, y = _topics(n_topics=6, per_topic=40)
    texts = []
    for i, t in enumerate(y):
        words = " ".join(rng.permutation(topics[t]))
        # a signature line in every text, and one common word in most
        texts.append(f"{words} please help Sent from my phone - Acme Bank ref {i}")
    model = EmbeddingClusterer(reduction="pca", n_components=5, random_state=0)
    frame = model.fit(X).summary(texts)
    names = frame.loc[frame["cluster"] >= 0, "name"].tolist()
    assert len(set(names)) == len(names) == 6
    for name, keywords in zip(names, frame["keywords"], strict=False):
        words = name.split()
        assert 2 <= len(words) <= 4 and len(set(words)) == len(words)
        assert not {"sent", "phone", "acme", "bank", "help", "ref"} & set(words)
        assert set(words) <= {w for k in keywords for w in k.split()}
    topic_of = [np.bincount(y[model.labels_ == c]).argmax() for c in range(6)]
    for name, t in zip(names, topic_of, strict=True):
        assert set(name.split()) <= set(topics[t])


def test_topic_names_drop_a_word_shared_by_most_names_and_its_forms():
    keywords = [
        ["card", "delivery", "arrive"],
        ["card", "activate", "activation", "activating"],
        ["card", "pin", "blocked"],
        ["card", "cards", "refund", "seller"],
        ["exchange rate", "exchange rates", "wrong"],
    ]
    names = topic_names(5, keywords)
    assert all("card" not in n.split() for n in names)  # in 4 of the 5 names
    assert names[1] == "activate" and names[4] == "exchange rate wrong"
    assert len(set(names)) == 5
    assert topic_names(2, [["tax"], ["tax"]]) == ["tax", "tax (2)"]
