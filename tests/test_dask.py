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
from embedtasks._similarity import l2_normalize

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
