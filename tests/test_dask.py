"""Scale-out on Dask: blockwise results on a LocalCluster equal the in-memory ones.

One ``distributed.LocalCluster`` with two worker *processes* (so estimators really
travel by pickle, and the disk cache is really shared between processes) serves
every test of this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embedtasks import DotProductNeighbors, NearestLabelClassifier
from embedtasks._kernel import l2_normalize

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = l2_normalize(rng.standard_normal((5, 24)))
    y = rng.integers(0, 5, 1200)
    X = l2_normalize(centres[y] + 0.4 * rng.standard_normal((1200, 24)))
    return X, np.array(["abcde"[i] for i in y])


def test_cluster_has_two_worker_processes(client):
    workers = client.scheduler_info(n_workers=-1)["workers"]
    pids = client.run(lambda: __import__("os").getpid())
    assert len(workers) == 2 and len(set(pids.values())) == 2


def test_parallel_post_fit_predict_equals_in_memory(client, data):
    X, y = data
    clf = NearestLabelClassifier().fit(X[:600], y[:600])
    wrapped = wrappers.ParallelPostFit(clf)
    X_dask = da.from_array(X[600:], chunks=100)  # 6 blocks over 2 workers
    labels = wrapped.predict(X_dask)
    proba = wrapped.predict_proba(X_dask)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), clf.predict(X[600:]))
    np.testing.assert_array_equal(proba.compute(), clf.predict_proba(X[600:]))


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_search_blockwise_equals_in_memory(client, data, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")  # the index travels to the workers as bytes
    X, _ = data
    nn = DotProductNeighbors(n_neighbors=7, backend=backend).fit(X)
    queries = X[:400] + 0.01
    blocks = da.from_array(queries, chunks=(100, -1))
    indices = blocks.map_blocks(
        lambda q, nn: nn.search(q)[1], nn=nn, dtype=np.intp, chunks=(100, 7)
    )
    scores = blocks.map_blocks(
        lambda q, nn: nn.search(q)[0], nn=nn, dtype=np.float32, chunks=(100, 7)
    )
    ref_scores, ref_indices = nn.search(queries)
    got_indices, got_scores = da.compute(indices, scores)
    np.testing.assert_array_equal(got_indices, ref_indices)
    np.testing.assert_array_equal(got_scores, ref_scores)
    assert got_scores.dtype == np.float32 and got_indices.shape == (400, 7)


def test_map_partitions_on_a_dataframe_equals_in_memory(client, data):
    X, y = data
    clf = NearestLabelClassifier().fit(X, y)
    frame = pd.DataFrame(X, columns=[f"e{i}" for i in range(X.shape[1])])
    ddf = dd.from_pandas(frame, npartitions=4)
    result = ddf.map_partitions(
        lambda part, clf: pd.Series(clf.predict(part.to_numpy()), index=part.index),
        clf,
        meta=("label", "object"),
    ).compute()
    np.testing.assert_array_equal(result.to_numpy(), clf.predict(X))
    assert result.index.equals(frame.index)


@pytest.mark.local_model
@pytest.mark.slow  # each worker process loads the model
def test_embedding_a_text_column_shares_the_disk_cache(client, tmp_path):
    pytest.importorskip("sentence_transformers")
    from embedtasks import LocalEmbedder

    texts = [f"customer question number {i} about card {i % 7}" for i in range(64)]
    ddf = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=4)
    embedder = LocalEmbedder(cache_dir=tmp_path, progress=False).fit(texts[:1])
    parts = ddf["text"].map_partitions(
        lambda part, emb: pd.DataFrame(emb.transform(part), index=part.index),
        embedder,
        meta={i: np.float32 for i in range(384)},
    )
    on_workers = parts.compute().to_numpy()
    local = LocalEmbedder(cache_dir=None, progress=False).fit_transform(texts)
    np.testing.assert_allclose(on_workers, local, atol=1e-5)
    assert on_workers.dtype == np.float32 and on_workers.shape == (64, 384)
    # The workers filled the shared disk cache: a local run embeds nothing.
    again = LocalEmbedder(cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.fit_transform(texts), on_workers)
    assert again.usage_["cache_hits"] == 64 and again.usage_["embedded"] == 0


# -- sharded estimators: the corpus stays on the workers -----------------------

CHUNKS = (150, 50, 237, 263)  # uneven; boundaries at rows 150, 200 and 437


@pytest.fixture(scope="module")
def dup_data():
    """Raw (not unit) rows with exact copies and near-duplicates across shards."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((700, 16)).astype(np.float32)
    X *= rng.uniform(0.5, 2.0, (700, 1)).astype(np.float32)
    for a, b in [(149, 150), (199, 200), (436, 437), (10, 690), (10, 300)]:
        X[b] = X[a]  # exact copies, straddling a shard boundary
    for a, b in [(148, 151), (5, 600), (201, 436)]:
        X[b] = X[a] + 1e-3 * rng.standard_normal(16).astype(np.float32)
    return X


@pytest.fixture(scope="module")
def sharded(client, dup_data):
    return DotProductNeighbors(n_neighbors=6).fit(
        da.from_array(dup_data, chunks=(CHUNKS, -1))
    )


def test_sharded_fit_keeps_each_block_on_a_worker(client, sharded):
    corpus = sharded.embeddings_
    assert corpus.n_shards == 4 and corpus.shape == (700, 16)
    assert corpus.offsets.tolist() == [0, 150, 200, 437, 700]
    where = client.who_has(corpus.shards)
    assert all(len(workers) >= 1 for workers in where.values())
    assert sharded.n_samples_fit_ == 700 and sharded.n_features_in_ == 16


@pytest.mark.parametrize("as_dask", [False, True])
def test_sharded_search_equals_in_memory(sharded, dup_data, as_dask):
    ref = DotProductNeighbors(n_neighbors=6).fit(dup_data)
    queries = dup_data[[10, 149, 436, 5, 0, 699]] + 0.01
    Q = da.from_array(queries, chunks=4) if as_dask else queries
    for got, want in [
        (sharded.search(Q), ref.search(queries)),
        (sharded.kneighbors(Q, 9), ref.kneighbors(queries, 9)),
    ]:
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
            assert g.dtype == w.dtype and g.shape == w.shape
    g, w = (
        sharded.kneighbors_graph(Q, mode="similarity"),
        ref.kneighbors_graph(queries, mode="similarity"),
    )
    assert (g != w).nnz == 0 and g.shape == (6, 700)
    # Exact copies tie: the lower global row comes first, as in memory.
    assert sharded.search(dup_data[[10]])[1][0, :3].tolist() == [10, 300, 690]


def test_sharded_self_join_equals_in_memory(sharded, dup_data):
    ref = DotProductNeighbors(n_neighbors=6).fit(dup_data)
    for g, w in zip(sharded.kneighbors(), ref.kneighbors(), strict=True):
        np.testing.assert_array_equal(g, w)
    assert (sharded.kneighbors_graph() != ref.kneighbors_graph()).nnz == 0
    assert sharded.kneighbors(n_neighbors=1, return_distance=False)[150, 0] == 149


def test_sharded_radius_and_exclude_equal_in_memory(sharded, dup_data):
    ref = DotProductNeighbors(n_neighbors=6, radius=0.3).fit(dup_data)
    for X in (None, dup_data[:40] + 0.05):
        got = sharded.radius_neighbors(X, radius=0.3)
        want = ref.radius_neighbors(X, radius=0.3)
        for g_arr, w_arr in zip(got, want, strict=True):
            assert len(g_arr) == len(w_arr)
            for g, w in zip(g_arr, w_arr, strict=True):
                np.testing.assert_array_equal(g, w)
    exclude = [[300, 10, -10], [], [151, 148]]
    Q = dup_data[[10, 11, 148]]
    for g, w in zip(
        sharded.search(Q, exclude=exclude), ref.search(Q, exclude=exclude), strict=True
    ):
        np.testing.assert_array_equal(g, w)
    for kwargs in [{}, {"diversity": 0.5, "exclude": [300]}]:
        got, want = (
            sharded.recommend([10, 11], **kwargs),
            ref.recommend([10, 11], **kwargs),
        )
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_sharded_estimator_refuses_to_pickle_until_local(sharded, dup_data):
    import pickle

    with pytest.raises(TypeError, match=r"4 shard\(s\).*to_local\(\)"):
        pickle.dumps(sharded)
    with pytest.raises(TypeError, match="to_local"):
        np.asarray(sharded.embeddings_)
    local = pickle.loads(pickle.dumps(sharded.to_local()))
    ref = DotProductNeighbors(n_neighbors=6).fit(dup_data)
    np.testing.assert_array_equal(local.embeddings_, ref.embeddings_)
    np.testing.assert_array_equal(local.kneighbors()[1], sharded.kneighbors()[1])


@pytest.mark.parametrize("method", ["knn", "lof"])
def test_sharded_outliers_equal_in_memory(client, dup_data, method):
    from embedtasks import OutlierScorer

    Xd = da.from_array(dup_data, chunks=(CHUNKS, -1))
    got = OutlierScorer(method=method, n_neighbors=5).fit(Xd)
    want = OutlierScorer(method=method, n_neighbors=5).fit(dup_data)
    np.testing.assert_array_equal(got.training_scores_, want.training_scores_)
    assert got.offset_ == want.offset_
    for g, w in zip(
        got.explain(n_neighbors=7), want.explain(n_neighbors=7), strict=True
    ):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got.fit_predict(Xd), want.fit_predict(dup_data))
    novel = OutlierScorer(method=method, n_neighbors=5, novelty=True)
    got, want = novel.fit(Xd), OutlierScorer(**novel.get_params()).fit(dup_data)
    new = dup_data[:50] + 0.2
    np.testing.assert_array_equal(got.score_samples(new), want.score_samples(new))


@pytest.mark.parametrize("max_pairs", [1_000_000, 5_000])
def test_sharded_diversity_report_equals_in_memory(client, dup_data, max_pairs):
    from embedtasks import DiversityReport

    params = dict(duplicate_threshold=0.9, max_duplicate_pairs=4, max_pairs=max_pairs)
    Xd = da.from_array(dup_data, chunks=(CHUNKS, -1))
    got = DiversityReport(random_state=0, **params).fit(Xd)
    want = DiversityReport(random_state=0, **params).fit(dup_data)
    for name in [
        "nn_similarity_",
        "nn_indices_",
        "nn_quantiles_",
        "nn_histogram_",
        "duplicate_pairs_",
        "duplicate_similarities_",
        "similarity_quantiles_",
        "similarity_histogram_",
    ]:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert got.n_duplicate_pairs_ == want.n_duplicate_pairs_ >= 8
    assert got.pairs_exact_ == want.pairs_exact_ == (max_pairs > 244_650)
    copies = {(149, 150), (199, 200), (436, 437), (10, 690), (10, 300), (300, 690)}
    assert {tuple(p) for p in got.duplicate_pairs_.tolist()} <= copies
    for name in ["mean_similarity_", "std_similarity_", "vendi_score_"]:
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-6)


def test_sharded_scan_with_many_shards_equals_in_memory(client, dup_data):
    from embedtasks._kernel import l2_normalize, neighbour_scan

    Xd = da.from_array(dup_data, chunks=(97, -1))  # 8 shards, 36 block pairs
    scan = (
        DotProductNeighbors()
        .fit(Xd)
        .embeddings_.scan(0.9, 100, memory_budget=2**14, n_jobs=1)
    )
    ref = neighbour_scan(l2_normalize(dup_data), 0.9, 100)
    for g, w in zip(scan[:4], ref[:4], strict=True):
        np.testing.assert_array_equal(g, w)
    assert scan.n_pairs == ref.n_pairs


def test_sharded_fit_rejects_column_chunks(client, dup_data):
    Xd = da.from_array(dup_data, chunks=(200, 8))
    with pytest.raises(ValueError, match=r"split into 2 chunks.*rechunk\(\{1: -1\}\)"):
        DotProductNeighbors().fit(Xd)


def test_sharded_fit_names_the_row_with_nan(client, dup_data):
    X = dup_data.copy()
    X[437, 3] = np.nan  # first row of the last block
    with pytest.raises(ValueError, match="NaN or infinity in row 437"):
        DotProductNeighbors().fit(da.from_array(X, chunks=(CHUNKS, -1)))


def test_sharded_k_larger_than_the_corpus_is_refused(sharded, dup_data):
    with pytest.raises(ValueError, match=r"n_neighbors <= 700 .*n_neighbors = 701"):
        sharded.search(dup_data[:2], n_neighbors=701)
    with pytest.raises(ValueError, match=r"n_neighbors <= 699"):
        sharded.kneighbors(n_neighbors=700)
    with pytest.raises(ValueError, match=r"exclude=\.\.\.\) is not supported"):
        sharded.search(exclude=[[]] * 700)


def test_sharded_fit_rejects_what_it_cannot_shard(client, dup_data):
    from embedtasks import DiversityReport, OutlierScorer

    Xd = da.from_array(dup_data, chunks=(CHUNKS, -1))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        DotProductNeighbors().fit(Xd[Xd[:, 0] > 0])
    with pytest.raises(ValueError, match="2-D dask array"):
        DotProductNeighbors().fit(Xd[:, 0])
    with pytest.raises(ValueError, match="backend='exact' and storage='float32'"):
        DotProductNeighbors(backend="faiss").fit(Xd)
    with pytest.raises(ValueError, match="got backend='exact', storage='int8'"):
        DotProductNeighbors(storage="int8").fit(Xd)
    with pytest.raises(ValueError, match="method='centroid'.*does not shard"):
        OutlierScorer(method="centroid").fit(Xd)
    with pytest.raises(ValueError, match="does not take groups"):
        DiversityReport().fit(Xd, groups=np.zeros(700))
    with pytest.raises(TypeError, match="dtype <U1.*astype"):
        DotProductNeighbors().fit(da.from_array(np.full((4, 2), "a"), chunks=2))


def test_sharded_fit_leaves_a_persisted_input_untouched(client, dup_data):
    Xd = da.from_array(dup_data, chunks=(CHUNKS, -1)).persist()
    before = Xd.compute()
    nn = DotProductNeighbors().fit(Xd)
    np.testing.assert_array_equal(Xd.compute(), before)  # not normalised in place
    np.testing.assert_array_equal(nn.to_local().embeddings_, l2_normalize(before))


def test_sharded_fit_without_a_client_says_how_to_start_one():
    import subprocess
    import sys

    code = (
        "import dask.array as da\n"
        "from embedtasks import DotProductNeighbors\n"
        "try:\n"
        "    DotProductNeighbors().fit(da.ones((4, 2), chunks=(2, 2)))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert "no distributed Client is running" in run.stdout, run.stderr
    assert "X.compute()" in run.stdout
