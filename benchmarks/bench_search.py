"""Exact top-k search: embedtasks vs scikit-learn, faiss and the hardware bounds.

Measures, side by side in one run on the same data:

* batch search, 100k x 384 unit float32 corpus, 1,000 queries, k=10: ours
  (``DotProductNeighbors.search``) vs ``sklearn.neighbors.NearestNeighbors(
  algorithm="brute", metric="euclidean")`` vs faiss ``IndexFlatIP`` (if installed), and
  our effective GFLOP/s vs this machine's measured sgemm rate;
* single queries on a 1M x 384 corpus: our effective read bandwidth vs numpy's
  ``X @ q`` (a bandwidth-bound matrix-vector product) on the same matrix;
* peak extra memory of our search (tracemalloc), beside the corpus size.

Run: ``python benchmarks/bench_search.py`` (add ``--quick`` for a smaller run).
Bars (issue 2): >= 3x faster than sklearn brute euclidean; >= 50% of the sgemm rate;
single queries >= 70% of memory bandwidth.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from sklearn.neighbors import NearestNeighbors

from embedtasks import DotProductNeighbors
from embedtasks._similarity import l2_normalize


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def unit_matrix(rng, n, d, chunk=100_000):
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        out[s:e] = l2_normalize(rng.standard_normal((e - s, d), dtype=np.float32))
    return out


def sgemm_rate(d, repeat):
    """GFLOP/s of one large float32 matrix product of the search's shape."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1000, d), dtype=np.float32)
    b = rng.standard_normal((8192, d), dtype=np.float32)
    out = np.empty((1000, 8192), dtype=np.float32)
    t, _ = best_of(lambda: np.matmul(a, b.T, out=out), repeat * 3)
    return 2 * a.shape[0] * b.shape[0] * d / t / 1e9


def peak_extra_memory(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--big-n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    args = parser.parse_args()
    if args.quick:
        args.n, args.big_n = args.n // 10, args.big_n // 10

    rng = np.random.default_rng(0)
    X = unit_matrix(rng, args.n, args.d)
    Q = unit_matrix(rng, args.queries, args.d)
    flops = 2 * args.n * args.queries * args.d
    print(f"batch search: corpus {args.n:,} x {args.d}, ", end="")
    print(f"{args.queries:,} queries, k={args.k}")

    nn = DotProductNeighbors(n_neighbors=args.k).fit(X)
    t_ours, med_ours = best_of(lambda: nn.search(Q), args.repeat)
    _, ours_idx = nn.search(Q)

    sk = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric="euclidean")
    sk.fit(X)
    t_sk, med_sk = best_of(lambda: sk.kneighbors(Q), args.repeat)
    sk_idx = sk.kneighbors(Q, return_distance=False)
    agree = np.mean(np.sort(ours_idx, axis=1) == np.sort(sk_idx, axis=1))

    rate = sgemm_rate(args.d, args.repeat)
    bound = flops / rate / 1e9
    rows = [("embedtasks DotProductNeighbors", t_ours, med_ours)]
    rows.append(("sklearn brute euclidean", t_sk, med_sk))
    try:
        import faiss

        index = faiss.IndexFlatIP(args.d)
        index.add(X)
        t_f, med_f = best_of(lambda: index.search(Q, args.k), args.repeat)
        rows.append(("faiss-cpu IndexFlatIP", t_f, med_f))
    except ImportError:
        print("(faiss not installed: pip install faiss-cpu to compare)")
    rows.append((f"sgemm bound at {rate:.0f} GFLOP/s", bound, bound))
    print(f"  {'method':34s} {'best s':>8s} {'median s':>9s} {'ours faster by':>15s}")
    for name, best, med in rows:
        print(f"  {name:34s} {best:8.3f} {med:9.3f} {best / t_ours:14.2f}x")
    ours_rate = flops / t_ours / 1e9
    print(f"  results agree with sklearn on {agree:.2%} of neighbours (ties aside)")
    print(
        f"  RATIO speed-up vs sklearn brute euclidean: {t_sk / t_ours:.2f}x (bar >= 3)"
    )
    print(
        f"  RATIO ours {ours_rate:.0f} GFLOP/s / sgemm {rate:.0f} GFLOP/s = "
        f"{ours_rate / rate:.0%} (bar >= 50%)"
    )
    peak = peak_extra_memory(lambda: nn.search(Q))
    print(
        f"  peak extra memory of one search: {peak / 2**20:.1f} MiB "
        f"(corpus {X.nbytes / 2**20:.0f} MiB)"
    )

    print(f"\nsingle queries: corpus {args.big_n:,} x {args.d}")
    big = unit_matrix(rng, args.big_n, args.d)
    q = Q[:1]
    nn = DotProductNeighbors(n_neighbors=args.k).fit(big)
    nn.search(q)
    t_one, med_one = best_of(lambda: nn.search(q), args.repeat * 3)
    q1 = q[0]
    t_gemv, med_gemv = best_of(lambda: big @ q1, args.repeat * 3)
    gb = big.nbytes / 1e9
    print(f"  {'method':34s} {'best s':>8s} {'median s':>9s} {'GB/s':>8s}")
    for name, best, med in [
        ("embedtasks search (k=10)", t_one, med_one),
        ("numpy X @ q (scores only)", t_gemv, med_gemv),
    ]:
        print(f"  {name:34s} {best:8.4f} {med:9.4f} {gb / best:8.1f}")
    print(
        f"  RATIO ours / memory bandwidth (numpy gemv read rate): "
        f"{t_gemv / t_one:.0%} (bar >= 70%)"
    )
    peak = peak_extra_memory(lambda: nn.search(q))
    print(
        f"  peak extra memory of one query: {peak / 2**20:.1f} MiB "
        f"(corpus {big.nbytes / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
