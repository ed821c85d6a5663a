"""Exact top-k search: embedtasks vs faiss (as shipped and on the right BLAS kernel).

Measures, in one run on the same data, each method alone in a process of its
own, in turn (one searching while the others wait idle, a pause between runs so
no thread pool still spins; the first method rotates every round; medians of
wall and CPU seconds reported):

* batch search, 100k x 384 unit float32 corpus, 1,000 queries, k=10: ours
  (``DotProductNeighbors.search``: exact int8 products pick candidates, the
  survivors are rescored canonically; and the kernel's float32 BLAS path, the
  screen off) vs faiss ``IndexFlatIP`` as shipped (its bundled
  OpenBLAS picks its kernel itself) vs faiss with ``OPENBLAS_CORETYPE=SkylakeX``
  where the CPU has AVX-512 (else the kernel numpy's OpenBLAS detects here; the
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
from embedtasks._kernel import l2_normalize

#: One method in a process of its own: loads the data, builds its index (and,
#: for ours, the screen: on the first search), then times one search per line on
#: stdin, answering wall and CPU seconds.
_WORKER = r"""
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info
method, k = sys.argv[1], int(sys.argv[4])
X, Q = np.load(sys.argv[2]), np.load(sys.argv[3])
if method in ("ours", "ours-float32"):
    from embedtasks import DotProductNeighbors
    from embedtasks._kernel import top_k
    nn = DotProductNeighbors(n_neighbors=k).fit(X)
    norm = nn._store.max_norm
    if method == "ours":
        run = lambda: nn.search(Q)
    else:
        run = lambda: top_k(Q, X, k, screen=False, corpus_max_norm=norm)
elif method == "faiss":
    import faiss
    index = faiss.IndexFlatIP(X.shape[1]); index.add(X)
    run = lambda: index.search(Q, k)
else:
    from sklearn.neighbors import NearestNeighbors
    sk = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X)
    run = lambda: sk.kneighbors(Q)
start = time.perf_counter(); run(); first = time.perf_counter() - start
screen = method == "ours" and bool(getattr(nn._store, "_screen", None))
arch = [i.get("architecture") for i in threadpool_info() if i.get("architecture")]
print(json.dumps({"first": first, "arch": arch, "screen": screen}), flush=True)
for line in sys.stdin:
    t0, c0 = time.perf_counter(), time.process_time(); run()
    t, c = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"t": t, "cpu": c}), flush=True)
"""

#: Banking77's all-MiniLM-L6-v2 vectors, for the section on real embeddings.
BANKING77 = next(
    (
        os.path.join(p, "shared", "data", "banking77")
        for p in (
            os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * n)
            for n in (2, 3)
        )
        if os.path.isdir(os.path.join(p, "shared"))
    ),
    "",
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


def faiss_coretype():
    """The OpenBLAS kernel faiss should run: SkylakeX where the CPU has AVX-512,
    else the one numpy's OpenBLAS detects here (faiss's bundled copy may fall back
    to a generic kernel on CPUs it does not know)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            if " avx512f" in f.read():
                return "SkylakeX"
    except OSError:
        pass
    return numpy_blas_arch()


class MethodProcess:
    """One search method in its own process (``env`` added to its environment)."""

    def __init__(self, method, paths, k, env=None):
        env = {**os.environ, **(env or {})}
        if "OPENBLAS_CORETYPE" in (env or {}):
            env.pop("OPENBLAS_L2_SIZE", None)
        cmd = [sys.executable, "-c", _WORKER, method, *paths, str(k)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.ready = json.loads(self.proc.stdout.readline())

    def search(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

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


def side_by_side(X, Q, k, repeat, coretype, *, sklearn=True):
    """Median seconds of each method on (X, Q), each alone in its own process, in
    turn (the others idle, a pause between runs); prints a table."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, "X.npy"), os.path.join(tmp, "Q.npy")]
        np.save(paths[0], X)
        np.save(paths[1], Q)
        specs = {
            "embedtasks DotProductNeighbors": ("ours", None),
            "embedtasks, float32 path (no screen)": ("ours-float32", None),
        }
        try:
            import faiss  # noqa: F401

            specs["faiss IndexFlatIP (as shipped)"] = ("faiss", None)
            if coretype:
                specs[f"faiss IndexFlatIP ({coretype} kernel)"] = (
                    "faiss",
                    {"OPENBLAS_CORETYPE": coretype},
                )
        except ImportError:
            print("(faiss not installed: pip install faiss-cpu to compare)")
        if sklearn:
            specs["sklearn brute euclidean"] = ("sklearn", None)
        procs = {
            name: MethodProcess(m, paths, k, env) for name, (m, env) in specs.items()
        }
        try:
            ours = procs["embedtasks DotProductNeighbors"].ready
            print(
                f"  first search {ours['first']:.3f} s, including the integer screen "
                "built once per fitted corpus "
                f"({'built' if ours['screen'] else 'not used here: float32 path'})"
            )
            times = {name: [] for name in procs}
            cpu = {name: [] for name in procs}
            rates = []
            names = list(procs)
            for r in range(repeat):  # in turn, the first rotating every round
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    time.sleep(0.3)  # the last process's threads go to sleep
                    got = procs[name].search()
                    times[name].append(got["t"])
                    cpu[name].append(got["cpu"])
                time.sleep(0.3)
                rates.append(sgemm_rate(X.shape[1], 3))
        finally:
            for proc in procs.values():
                proc.close()
    med = {name: float(np.median(t)) for name, t in times.items()}
    med_cpu = {name: float(np.median(c)) for name, c in cpu.items()}
    ours = med["embedtasks DotProductNeighbors"]
    print(
        f"  {'method':38s} {'median s':>9s} {'best s':>8s} {'CPU-s':>7s} "
        f"{'time / ours':>12s}"
    )
    for name, t in times.items():
        print(
            f"  {name:38s} {med[name]:9.3f} {min(t):8.3f} {med_cpu[name]:7.3f} "
            f"{med[name] / ours:11.2f}x"
        )
    rate = float(np.median(rates))
    flops = 2 * X.shape[0] * Q.shape[0] * X.shape[1]
    bound = flops / rate / 1e9
    label = f"sgemm bound at {rate:.0f} GFLOP/s"
    print(f"  {label:38s} {bound:9.3f}")
    right = [name for name in med if "kernel)" in name]
    if right:
        print(
            f"  RATIO faiss-right-kernel / ours: {med[right[0]] / ours:.2f} wall, "
            f"{med_cpu[right[0]] / med_cpu['embedtasks DotProductNeighbors']:.2f} "
            "CPU (bar >= 1.0: ours at least as fast)"
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
    coretype = faiss_coretype()
    print(f"faiss's fastest kernel here: OPENBLAS_CORETYPE={coretype} (its process)")
    rng = np.random.default_rng(0)
    X = unit_matrix(rng, args.n, args.d)
    Q = unit_matrix(rng, args.queries, args.d)
    print(f"batch search: random unit corpus {args.n:,} x {args.d}, ", end="")
    print(f"{args.queries:,} queries, k={args.k}; median of {args.repeat} rounds")
    side_by_side(X, Q, args.k, args.repeat, coretype)

    real = banking77_corpus(rng, args.n, args.queries)
    if real is not None:
        print(
            f"\nbatch search, real vectors: {args.n:,} rows each the sum of two "
            f"Banking77 texts' all-MiniLM-L6-v2 vectors, {args.queries:,} Banking77 "
            f"texts as queries, k={args.k}"
        )
        side_by_side(*real, args.k, args.repeat, coretype, sklearn=False)

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
