"""Scale past one machine's RAM and across machines (issue 16).

``--section dask``: the sharded Dask path on a 2-process ``LocalCluster`` (one
thread per worker) beside the in-memory estimator on the same 2 cores, from one
run. The corpus (Banking77 MiniLM rows, jittered) is generated *on the workers*,
block by block, so the client never holds it while the sharded side runs.

Prints, for ``--n-search`` x 384 (default 200k) and 1,000 queries:
- each worker's RSS before and after ``DotProductNeighbors.fit`` beside the bytes
  of the shards it holds (the bar: memory per worker ~ its shard);
- seconds of the sharded fit and search beside in-memory fit and search, and
  whether the results are bit-identical;
and for ``--n-join`` x 384 (default 50k):
- ``kneighbors(X=None)`` (self-join, k=10) and ``DiversityReport``'s exact
  nearest-neighbour / near-duplicate scan, sharded beside in memory, and whether
  they are bit-identical.

Usage: python benchmarks/bench_scale.py --section dask [--n-search 200000]
       [--n-join 50000] [--chunk 25000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def _block(block_id, *, rows, n, data, seed, noise):
    """Rows ``[block * rows, ...)`` of the jittered corpus, made on a worker."""
    base = np.vstack(
        [np.load(data / "train_minilm.npy"), np.load(data / "test_minilm.npy")]
    )
    start = block_id[0] * rows
    size = min(rows, n - start)
    rng = np.random.default_rng([seed, block_id[0]])
    X = base[rng.integers(0, base.shape[0], size)]
    X = X + rng.normal(scale=noise, size=X.shape).astype(np.float32)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _corpus(n, chunk, data, seed=0, noise=0.02):
    import dask.array as da

    chunks = ((chunk,) * (n // chunk) + ((n % chunk,) if n % chunk else ()), (384,))
    return da.map_blocks(
        _block,
        rows=chunk,
        n=n,
        data=data,
        seed=seed,
        noise=noise,
        chunks=chunks,
        dtype=np.float32,
    )


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


def _placement(client, corpus):
    """Shards per worker, e.g. '4 + 4 shards per worker'."""
    where = client.who_has(corpus.shards)
    counts = {w: 0 for w in client.scheduler_info(n_workers=-1)["workers"]}
    for workers in where.values():
        for w in workers:
            counts[w] += 1
    return " + ".join(str(c) for c in counts.values()) + " shards per worker"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def dask_section(n_search=200_000, n_join=50_000, chunk=25_000, data=DATA):
    """Sharded Dask search, self-join and near-duplicate scan beside in-memory."""
    import cloudpickle
    import dask
    from distributed import Client, LocalCluster

    from embedtasks import DiversityReport, DotProductNeighbors

    if __name__ != "__main__":  # workers cannot import this script by name
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    mib = 2**20
    print(f"== Sharded on Dask: 2 worker processes x 1 thread, {os.cpu_count()} cores")
    # Assign the block-making root tasks to the workers up front (not queued as
    # threads free up), so the generated corpus is spread evenly over the workers:
    # fit keeps every block where Dask computed it.
    with (
        dask.config.set({"distributed.scheduler.worker-saturation": "inf"}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        # Warm up: imports and one tiny sharded fit, so RSS growth is the shards.
        DotProductNeighbors().fit(_corpus(1000, 500, data, seed=9)).search(np.eye(384))
        before = client.run(_rss)
        X = _corpus(n_search, chunk, data)
        sharded, t_fit = _timed(DotProductNeighbors(n_neighbors=10).fit, X)
        after = client.run(_rss)
        corpus = sharded.embeddings_
        held = {w: 0 for w in after}
        sizes = np.diff(corpus.offsets) * corpus.n_features * 4
        for shard, size in zip(corpus.shards, sizes, strict=True):
            for w in client.who_has([shard])[shard.key]:
                held[w] += int(size)
        print(
            f"{n_search:,} x 384 float32 = {n_search * 384 * 4 / mib:.0f} MiB in "
            f"{corpus.n_shards} shards of <= {chunk:,} rows "
            f"({_placement(client, corpus)})"
        )
        for i, w in enumerate(sorted(after)):
            grew = (after[w] - before[w]) / mib
            print(
                f"  worker {i}: RSS {before[w] / mib:.0f} -> {after[w] / mib:.0f} MiB "
                f"(+{grew:.0f}) holding shards of {held[w] / mib:.0f} MiB "
                f"(growth / shards = {grew * mib / max(held[w], 1):.2f})"
            )
        rng = np.random.default_rng(1)
        Q = np.vstack([np.load(data / "test_minilm.npy")])[
            rng.choice(3080, 1000, replace=False)
        ]
        (s_scores, s_idx), t_search = _timed(sharded.search, Q)
        peak = client.run(_rss)

        X_mem = X.compute()  # only now does the client hold the corpus
        local = DotProductNeighbors(n_neighbors=10)
        _, t_fit_mem = _timed(local.fit, X_mem)
        (m_scores, m_idx), t_search_mem = _timed(local.search, Q)
        same = _same((s_scores, s_idx), (m_scores, m_idx))
        print(
            f"  fit: sharded {t_fit:.2f} s (makes the blocks on the workers), "
            f"in memory {t_fit_mem:.2f} s (from an ndarray)"
        )
        print(
            f"  search 1,000 queries, k=10: sharded {t_search:.2f} s, in memory "
            f"{t_search_mem:.2f} s (ratio {t_search / t_search_mem:.2f}); "
            f"bit-identical: {same}; worker RSS after search "
            + ", ".join(f"{v / mib:.0f}" for v in peak.values())
            + " MiB"
        )
        del sharded, corpus, X_mem, local

        Xj = _corpus(n_join, chunk // 4, data, seed=2, noise=0.005)
        sj = DotProductNeighbors(n_neighbors=10).fit(Xj)
        Xj_mem = Xj.compute()
        mj = DotProductNeighbors(n_neighbors=10).fit(Xj_mem)
        placed = _placement(client, sj.embeddings_)  # before tasks move any shard
        got, t_join = _timed(sj.kneighbors)
        want, t_join_mem = _timed(mj.kneighbors)
        print(
            f"{n_join:,} x 384 in {sj.embeddings_.n_shards} shards "
            f"({placed}): "
            f"kneighbors(X=None), k=10: sharded {t_join:.2f} s, in memory "
            f"{t_join_mem:.2f} s (ratio {t_join / t_join_mem:.2f}); bit-identical: "
            f"{_same(got, want)}"
        )
        scan_kw = dict(duplicate_threshold=0.95, random_state=0)
        rep, t_rep = _timed(DiversityReport(**scan_kw).fit, Xj)
        ref, t_rep_mem = _timed(DiversityReport(**scan_kw).fit, Xj_mem)
        names = ["nn_similarity_", "nn_indices_", "duplicate_pairs_"]
        same = _same([getattr(rep, a) for a in names], [getattr(ref, a) for a in names])
        same = same and rep.n_duplicate_pairs_ == ref.n_duplicate_pairs_
        print(
            f"  DiversityReport (near-duplicates >= 0.95: {ref.n_duplicate_pairs_:,} "
            f"pairs): sharded {t_rep:.2f} s, in memory {t_rep_mem:.2f} s (ratio "
            f"{t_rep / t_rep_mem:.2f}); nn and pairs bit-identical: {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--section", choices=["dask"], default="dask")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-search", type=int, default=200_000)
    parser.add_argument("--n-join", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=25_000)
    args = parser.parse_args()
    if args.section == "dask":
        dask_section(args.n_search, args.n_join, args.chunk, args.data)


if __name__ == "__main__":
    main()
