"""Exact top-k search: embedtasks vs faiss (as shipped and on the right BLAS kernel).

Measures, side by side in one run on the same data (rounds alternate between the
methods, medians reported):

* batch search, 100k x 384 unit float32 corpus, 1,000 queries, k=10: ours
  (``DotProductNeighbors.search``: exact int8 products pick candidates, the
  survivors are rescored canonically; and the kernel's float32 BLAS path, the
  screen off) vs faiss ``IndexFlatIP`` as shipped (its bundled
  OpenBLAS picks its kernel itself, in this process) vs faiss in a separate process
  with ``OPENBLAS_CORETYPE`` set to the kernel numpy's OpenBLAS detects here (the
  variable is set for faiss's process only) vs scikit-learn brute euclidean, and our
  effective GFLOP/s against this machine's sgemm rate;
* single queries on a 1M x 384 corpus: our read rate vs numpy's ``X @ q``.

The same comparison (without scikit-learn) then runs on real all-MiniLM-L6-v2
vectors: 100k rows, each the sum of two Banking77 texts' vectors (read from
``../shared/data/banking77``; skipped where it is absent), 1,000 Banking77 texts
as queries.

Run: ``python benchmarks/bench_search.py`` (``--quick`` for a 10x smaller run).
Bars (issue 11): ours / faiss-right-kernel >= 1.0; float32 path / sgemm >= 80%; single
queries >= 90% of the ``X @ q`` read rate. Our scores are canonical (bit-identical
however queries are batched): the figure includes that guarantee.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_info

from embedtasks import DotProductNeighbors
from embedtasks._kernel import l2_normalize, top_k

_FAISS_WORKER = r"""
import json, sys, time
import numpy as np
import faiss
from threadpoolctl import threadpool_info
X, Q = np.load(sys.argv[1]), np.load(sys.argv[2])
k = int(sys.argv[3])
index = faiss.IndexFlatIP(X.shape[1]); index.add(X); index.search(Q, k)
arch = [i.get("architecture") for i in threadpool_info() if "faiss" in i["filepath"]]
print(json.dumps({"ready": True, "arch": arch}), flush=True)
for line in sys.stdin:
    start = time.perf_counter(); index.search(Q, k)
    print(json.dumps({"t": time.perf_counter() - start}), flush=True)
"""

#: Banking77's all-MiniLM-L6-v2 vectors, for the section on real embeddings.
BANKING77 = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "shared",
    "data",
    "banking77",
)


def unit_matrix(rng, n, d, chunk=100_000):
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        out[s:e] = l2_normalize(rng.standard_normal((e - s, d), dtype=np.float32))
    return out


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def numpy_blas_arch():
    for info in threadpool_info():
        if info.get("internal_api") == "openblas" and "numpy" in info["filepath"]:
            return info.get("architecture")
    return None


class FaissProcess:
    """faiss in its own process, its OpenBLAS kernel forced by the environment."""

    def __init__(self, X, Q, k, coretype, tmp):
        env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
        env.pop("OPENBLAS_L2_SIZE", None)
        paths = [os.path.join(tmp, "X.npy"), os.path.join(tmp, "Q.npy")]
        np.save(paths[0], X)
        np.save(paths[1], Q)
        cmd = [sys.executable, "-c", _FAISS_WORKER, *paths, str(k)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.arch = json.loads(self.proc.stdout.readline())["arch"]

    def search(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["t"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def sgemm_rate(d, repeat):
    """GFLOP/s of one large float32 matrix product of the search's shape."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1000, d), dtype=np.float32)
    b = rng.standard_normal((8192, d), dtype=np.float32)
    out = np.empty((1000, 8192), dtype=np.float32)
    t = min(timed(lambda: np.matmul(a, b.T, out=out)) for _ in range(repeat))
    return 2 * a.shape[0] * b.shape[0] * d / t / 1e9


def side_by_side(X, Q, k, repeat, arch, *, sklearn=True):
    """Median seconds of each method on (X, Q), rounds alternating; prints a table."""
    nn = DotProductNeighbors(n_neighbors=k).fit(X)
    first = timed(lambda: nn.search(Q))
    screen = getattr(nn, "_screen", None)
    print(
        f"  first search {first:.3f} s, including the integer screen built once per "
        f"fitted corpus ({'built' if screen else 'not used here: float32 path'})"
    )
    max_norm = nn._store.max_norm

    def float_path():
        return top_k(Q, X, k, screen=False, corpus_max_norm=max_norm)

    float_path()
    methods = {
        "embedtasks DotProductNeighbors": lambda: timed(lambda: nn.search(Q)),
        "embedtasks, float32 path (no screen)": lambda: timed(float_path),
    }
    faiss_right = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            import faiss

            index = faiss.IndexFlatIP(X.shape[1])
            index.add(X)
            index.search(Q, k)
            methods["faiss IndexFlatIP (as shipped)"] = lambda: timed(
                lambda: index.search(Q, k)
            )
            if arch:
                faiss_right = FaissProcess(X, Q, k, arch, tmp)
                methods[f"faiss IndexFlatIP ({arch} kernel)"] = faiss_right.search
        except ImportError:
            print("(faiss not installed: pip install faiss-cpu to compare)")
        if sklearn:
            from sklearn.neighbors import NearestNeighbors

            sk = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X)
            methods["sklearn brute euclidean"] = lambda: timed(lambda: sk.kneighbors(Q))
        times = {name: [] for name in methods}
        rates = []
        for _ in range(repeat):  # alternate, so noise hits every method alike
            for name, run in methods.items():
                times[name].append(run())
            rates.append(sgemm_rate(X.shape[1], 3))
        if faiss_right is not None:
            faiss_right.close()
    med = {name: float(np.median(t)) for name, t in times.items()}
    ours = med["embedtasks DotProductNeighbors"]
    print(f"  {'method':38s} {'median s':>9s} {'best s':>8s} {'time / ours':>12s}")
    for name, t in times.items():
        print(f"  {name:38s} {med[name]:9.3f} {min(t):8.3f} {med[name] / ours:11.2f}x")
    rate = float(np.median(rates))
    flops = 2 * X.shape[0] * Q.shape[0] * X.shape[1]
    bound = flops / rate / 1e9
    label = f"sgemm bound at {rate:.0f} GFLOP/s"
    print(f"  {label:38s} {bound:9.3f}")
    right = [name for name in med if "kernel)" in name]
    if right:
        print(
            f"  RATIO faiss-right-kernel / ours: {med[right[0]] / ours:.2f} "
            "(bar >= 1.0: ours at least as fast)"
        )
    flt = med["embedtasks, float32 path (no screen)"]
    print(
        f"  RATIO float32 path / sgemm rate: {bound / flt:.0%} (bar >= 80%); "
        f"with the screen: {flops / ours / 1e9:.0f} float32-equivalent GFLOP/s "
        f"({bound / ours:.0%} of the sgemm rate)"
    )


def banking77_corpus(rng, n, n_queries):
    """Real all-MiniLM-L6-v2 vectors: n rows each the sum of two Banking77 texts'."""
    parts = [os.path.join(BANKING77, f"{s}_minilm.npy") for s in ("train", "test")]
    if not all(os.path.exists(p) for p in parts):
        return None
    A = l2_normalize(np.vstack([np.load(p) for p in parts]).astype(np.float32))
    X = l2_normalize(
        A[rng.integers(0, len(A), n)] + 0.6 * A[rng.integers(0, len(A), n)]
    )
    return X, A[rng.integers(0, len(A), n_queries)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--big-n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    args = parser.parse_args()
    if args.quick:
        args.n, args.big_n, args.repeat = args.n // 10, args.big_n // 10, 3

    arch = numpy_blas_arch()
    print(f"numpy's OpenBLAS kernel here: {arch}", end="")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f" (forced by OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']})")
    else:
        print(" (detected)")
    rng = np.random.default_rng(0)
    X = unit_matrix(rng, args.n, args.d)
    Q = unit_matrix(rng, args.queries, args.d)
    print(f"batch search: random unit corpus {args.n:,} x {args.d}, ", end="")
    print(f"{args.queries:,} queries, k={args.k}; median of {args.repeat} rounds")
    side_by_side(X, Q, args.k, args.repeat, arch)

    real = banking77_corpus(rng, args.n, args.queries)
    if real is not None:
        print(
            f"\nbatch search, real vectors: {args.n:,} rows each the sum of two "
            f"Banking77 texts' all-MiniLM-L6-v2 vectors, {args.queries:,} Banking77 "
            f"texts as queries, k={args.k}"
        )
        side_by_side(*real, args.k, args.repeat, arch, sklearn=False)

    print(f"\nsingle queries: corpus {args.big_n:,} x {args.d}")
    big = unit_matrix(rng, args.big_n, args.d)
    nn = DotProductNeighbors(n_neighbors=args.k).fit(big)
    q = Q[:1]
    nn.search(q)
    one, gemv = [], []
    for _ in range(args.repeat * 3):
        one.append(timed(lambda: nn.search(q)))
        gemv.append(timed(lambda: big @ q[0]))
    gb = big.nbytes / 1e9
    t_one, t_gemv = float(np.median(one)), float(np.median(gemv))
    print(f"  embedtasks search (k=10)   {t_one:8.4f} s  {gb / t_one:6.1f} GB/s")
    print(f"  numpy X @ q (scores only)  {t_gemv:8.4f} s  {gb / t_gemv:6.1f} GB/s")
    print(f"  RATIO ours / numpy read rate: {t_gemv / t_one:.0%} (bar >= 90%)")


if __name__ == "__main__":
    main()
