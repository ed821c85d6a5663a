"""Scale: a corpus past RAM on one machine, int8 storage, a million rows, Dask.

Sections (``--section`` picks one; default: all of them):

* ``mmap``: a float32 ``.npy`` file of ``--mmap-rows`` x 384 unit rows is fitted
  and searched in place by ``DotProductNeighbors`` in a fresh process; its peak
  resident memory (ru_maxrss) beside the file's size, and the search time beside
  the same search on the corpus in memory.
* ``int8``: ``storage="int8"`` on Banking77 (10k train rows, 3,080 real queries):
  memory of the codes beside float32, the share of queries whose top-10 (indices
  and scores) is identical to float32 search, and times; then the same at 1M rows.
* ``approx``: a million Banking77-like rows (mixtures of two real MiniLM vectors
  plus noise, 1% of them near-copies of others): the approximate near-duplicate /
  nearest-neighbour scan, ``DiversityReport`` and ``OutlierScorer`` on the
  approximate path, with the recall of the exact pairs >= 0.95 and of the exact
  nearest neighbour on a sample of rows (their exact answers computed by brute
  force against the whole million).

* ``dask``: the sharded Dask path on a 2-process ``LocalCluster`` (one thread per
  worker) beside the in-memory estimator on the same 2 cores. The corpus
  (Banking77 MiniLM rows, jittered) is generated on the workers, block by block.
  For ``--n-search`` x 384 and 1,000 queries: each worker's RSS before and after
  ``fit`` beside the bytes of its shards, fit and search seconds sharded and in
  memory, and whether results are bit-identical; for ``--n-join`` x 384: the
  self-join (``kneighbors()``, k=10) and ``DiversityReport``'s exact scan, sharded
  beside in memory.

Run: ``python benchmarks/bench_scale.py`` (``--quick`` for 10x smaller sizes).
Bars (issue 16): mapped peak RSS well under the corpus size; int8 memory 0.25x,
top-10 identical on >= 99.9% of queries; 1M near-duplicate recall >= 0.99 in
<= 2 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embedtasks import DiversityReport, DotProductNeighbors, OutlierScorer
from embedtasks._kernel import (
    above_threshold,
    approximate_scan,
    l2_normalize,
    top_k,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def banking77_like(n, rng, data=DATA, dup_share=0.01):
    """Mixtures of two real MiniLM rows plus noise; ``dup_share`` near-copies."""
    base = np.vstack(
        [np.load(data / "train_minilm.npy"), np.load(data / "test_minilm.npy")]
    )
    X = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        a = base[rng.integers(0, len(base), e - s)]
        b = base[rng.integers(0, len(base), e - s)]
        w = rng.uniform(0.5, 1.0, (e - s, 1)).astype(np.float32)
        noise = rng.standard_normal((e - s, base.shape[1]), dtype=np.float32)
        X[s:e] = l2_normalize(w * a + (1 - w) * b + 0.05 * noise)
    m = int(n * dup_share)
    copies, sources = rng.choice(n, m, replace=False), rng.choice(n, m, replace=False)
    jitter = rng.standard_normal((m, base.shape[1]), dtype=np.float32)
    X[copies] = l2_normalize(X[sources] + 0.01 * jitter)
    return X


# --------------------------------------------------------------------- dask
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


# --------------------------------------------------------------------- mmap
_MAPPED_RUN = """
import sys, time
import numpy as np
from embedtasks import DotProductNeighbors
def peak():  # VmHWM: this process's own peak (ru_maxrss inherits the parent's)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
X = np.load(sys.argv[1], mmap_mode="r")
Q = np.load(sys.argv[2])
rss0 = peak()
t0 = time.perf_counter()
nn = DotProductNeighbors(n_neighbors=10).fit(X)
t_fit = time.perf_counter() - t0
t0 = time.perf_counter()
idx = nn.search(Q)[1]
t_batch = time.perf_counter() - t0
t0 = time.perf_counter()
for q in Q[:5]:
    nn.search(q[None, :])
t_one = (time.perf_counter() - t0) / 5
rss1 = peak()
np.save(sys.argv[3], idx)
print(rss0 * 1024, rss1 * 1024, t_fit, t_batch, t_one)
"""


def mmap_section(args, rng):
    n, d = args.mmap_rows, 384
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path, qpath, out = (os.path.join(tmp, f) for f in ("c.npy", "q.npy", "i.npy"))
        corpus = np.lib.format.open_memmap(path, "w+", np.float32, (n, d))
        for s in range(0, n, 250_000):
            e = min(n, s + 250_000)
            corpus[s:e] = l2_normalize(rng.standard_normal((e - s, d), np.float32))
        corpus.flush()
        del corpus
        Q = l2_normalize(rng.standard_normal((100, d), np.float32))
        np.save(qpath, Q)
        size = os.path.getsize(path)
        cmd = [sys.executable, "-c", _MAPPED_RUN, path, qpath, out]
        rss0, rss1, t_fit, t_batch, t_one = map(
            float, subprocess.run(cmd, capture_output=True, text=True, check=True)
            .stdout.split()
        )  # fmt: skip
        print(f"\nmmap: {n:,} x {d} float32 file ({size / 2**30:.2f} GiB)")
        print(
            f"  peak RSS of the process {rss1 / 2**20:,.0f} MiB, of which "
            f"{(rss1 - rss0) / 2**20:,.0f} MiB for fit and searches (the rest: "
            f"Python and imports): RATIO peak RSS / corpus {rss1 / size:.3f} "
            "(bar: well under 1)"
        )
        print(
            f"  fit (one streaming pass) {t_fit:.2f} s; 100 queries {t_batch:.2f} s; "
            f"one query {t_one:.3f} s"
        )
        if n * d * 4 < 0.5 * _free_memory():
            X = np.load(path)
            nn = DotProductNeighbors(n_neighbors=10, normalize=False).fit(X)
            nn.search(Q)
            idx, t_mem = timed(lambda: nn.search(Q)[1])
            same = np.array_equal(idx, np.load(out))
            print(
                f"  the same 100 queries in memory {t_mem:.2f} s: RATIO mapped / "
                f"in memory {t_batch / t_mem:.2f}; identical results: {same}"
            )


def _free_memory():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------- int8
def int8_section(args, rng):
    Xtr = np.load(args.data / "train_minilm.npy")
    Xte = np.load(args.data / "test_minilm.npy")
    print(f"\nint8 storage, Banking77: {len(Xtr):,} rows, {len(Xte):,} real queries")
    _int8_case(Xtr, Xte)
    n = args.int8_rows
    X = banking77_like(n, rng)
    print(f"int8 storage, {n:,} Banking77-like rows, 1,000 queries")
    _int8_case(X, Xte[:1000])


def _int8_case(X, Q):
    f32 = DotProductNeighbors(n_neighbors=10).fit(X)
    i8 = DotProductNeighbors(n_neighbors=10, storage="int8").fit(X)
    (s_ref, i_ref), t_ref = timed(f32.search, Q)
    (s_i8, i_i8), t_i8 = timed(i8.search, Q)
    same = (i_ref == i_i8).all(axis=1) & (s_ref == s_i8).all(axis=1)
    print(
        f"  memory: codes {i8.codes_.nbytes / 2**20:,.1f} MiB vs float32 "
        f"{f32.embeddings_.nbytes / 2**20:,.1f} MiB: RATIO "
        f"{i8.codes_.nbytes / f32.embeddings_.nbytes:.2f} (bar 0.25)"
    )
    print(
        f"  top-10 identical (indices and scores) on {same.mean():.2%} of queries "
        f"(bar >= 99.9%); search {t_i8:.2f} s vs float32 {t_ref:.2f} s "
        f"(RATIO {t_i8 / t_ref:.2f})"
    )


# ------------------------------------------------------------------- approx
def approx_section(args, rng):
    n = args.approx_rows
    X, t_data = timed(banking77_like, n, rng)
    print(f"\napproximate all-pairs, {n:,} x 384 Banking77-like rows ({t_data:.0f} s)")
    cpu0 = time.process_time()
    scan, t_scan = timed(approximate_scan, X, 0.95, 50_000_000)
    cpu = time.process_time() - cpu0
    sample = np.sort(rng.choice(n, args.sample, replace=False))
    exact_nn, t_exact = timed(top_k, X[sample], X, 1, exclude=[[s] for s in sample])
    nn_recall = float(np.mean(exact_nn.indices[:, 0] == scan.nn_idx[sample]))
    found = above_threshold(X[sample], X, 0.95)
    truth = {
        (min(int(a), int(b)), max(int(a), int(b)))
        for a, (idx, _) in zip(sample, found, strict=True)
        for b in idx
        if b != a
    }
    in_sample = np.isin(scan.pairs, sample).any(axis=1)
    got = set(map(tuple, scan.pairs[in_sample].tolist()))
    recall = len(truth & got) / max(1, len(truth))
    per_row = t_exact / len(sample)
    print(
        f"  near-duplicates >= 0.95 and nearest neighbours: {t_scan:.1f} s wall "
        f"({cpu:.0f} s CPU), {scan.n_pairs:,} pairs (bar <= 120 s)"
    )
    print(
        f"  on {len(sample):,} sampled rows checked by brute force: RATIO recall of "
        f"the exact pairs {recall:.4f} ({len(truth & got)}/{len(truth)}; bar >= "
        f"0.99); nearest neighbour exact for {nn_recall:.1%} of rows"
    )
    print(
        f"  the exact path would take about {per_row * n / 2:.0f} s (symmetric "
        f"scan: half of {per_row * 1e3:.1f} ms per row x {n:,} rows)"
    )
    report, t_report = timed(
        DiversityReport(neighbors="approximate", random_state=0).fit, X
    )
    print(
        f"  DiversityReport(neighbors='approximate').fit, full report: "
        f"{t_report:.1f} s; nn similarity p50 "
        f"{report.nn_quantiles_[2]:.3f}, {report.n_duplicate_pairs_:,} pairs kept"
    )
    _, t_out = timed(OutlierScorer(neighbors="approximate").fit, X)
    print(f"  OutlierScorer(neighbors='approximate').fit (k=10): {t_out:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--section", choices=["all", "mmap", "int8", "approx", "dask"], default="all"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--mmap-rows", type=int, default=4_000_000)
    parser.add_argument("--int8-rows", type=int, default=1_000_000)
    parser.add_argument("--approx-rows", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--n-search", type=int, default=200_000)
    parser.add_argument("--n-join", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=25_000)
    parser.add_argument("--tmp", default=None, help="folder for the mapped file")
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    args = parser.parse_args()
    if args.quick:
        args.mmap_rows //= 10
        args.int8_rows //= 10
        args.approx_rows //= 10
        args.sample //= 4
        args.n_search //= 10
        args.n_join //= 10
        args.chunk //= 10
    rng = np.random.default_rng(0)
    if args.section in ("all", "mmap"):
        mmap_section(args, rng)
    if args.section in ("all", "int8"):
        int8_section(args, rng)
    if args.section in ("all", "approx"):
        approx_section(args, rng)
    if args.section in ("all", "dask"):
        dask_section(args.n_search, args.n_join, args.chunk, args.data)


if __name__ == "__main__":
    main()
