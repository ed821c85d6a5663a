"""DiversityReport and the Vendi score on Banking77 (MiniLM) vectors.

Prints, from one run:
- Vendi score via the d x d covariance (ours) beside the exact n x n kernel
  eigen-decomposition (the reference definition) at n=3,000: values, relative
  difference, seconds;
- Vendi on 100k x 384 (Banking77 rows, jittered): seconds (the bar is <= 5 s);
- Vendi and mean pairwise cosine for n=200 rows drawn from 1, 2, 5, 10, 20, 40, 77
  intents, and what adding duplicates does;
- a full DiversityReport (exact nearest-neighbour / near-duplicate pass) on the
  train split, with groups, and its seconds;
- the symmetric all-pairs scan and a full DiversityReport on the 100k x 384 rows,
  beside the symmetric bound (each pair computed once: n^2 * d flops at this
  machine's sgemm rate, measured in the same run) and beside a self-join through
  ``top_k`` (every pair computed twice). Bars (issue 11): the scan at >= 70% of
  the sgemm rate; the full report within 2x of the bound.

Usage: python benchmarks/bench_diversity.py [--data DIR] [--n-large 100000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from embedtasks import DiversityReport
from embedtasks._kernel import neighbour_scan, pairwise_mean_std, top_k, vendi_score

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def _cpu_timed(fn, *args, **kwargs):
    """(value, wall seconds, CPU seconds of this process: all threads)."""
    c0, t0 = time.process_time(), time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-large", type=int, default=100_000)
    args = parser.parse_args()
    Xtr = np.load(args.data / "train_minilm.npy")
    ytr = pd.read_csv(args.data / "train.csv")["category"].to_numpy()
    Xte = np.load(args.data / "test_minilm.npy")
    rng = np.random.default_rng(0)

    X3k = Xtr[rng.choice(Xtr.shape[0], 3000, replace=False)]
    fast, t_fast = _timed(vendi_score, X3k, method="covariance")
    exact, t_exact = _timed(vendi_score, X3k, method="kernel")
    print("Vendi, n=3,000 x 384")
    print(f"  ours (d x d covariance): {fast:.4f} in {t_fast:.3f} s")
    print(f"  reference (n x n kernel): {exact:.4f} in {t_exact:.3f} s")
    print(
        f"  relative difference {abs(fast - exact) / exact:.1e}, "
        f"speed-up {t_exact / t_fast:.0f}x"
    )

    base = np.vstack([Xtr, Xte])
    big = base[rng.integers(0, base.shape[0], args.n_large)]
    big = big + rng.normal(scale=0.02, size=big.shape).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    value, seconds, cpu = _cpu_timed(vendi_score, big)
    (mean, std), t_mean, _ = _cpu_timed(pairwise_mean_std, big)
    print(
        f"\nVendi, {args.n_large:,} x 384: {value:.2f} in {seconds:.2f} s wall, "
        f"{cpu:.2f} s CPU (bar: <= 5 s); exact mean/std pairwise cosine "
        f"{mean:.4f}/{std:.4f} in {t_mean:.2f} s"
    )

    symmetric_section(big)

    print("\nn=200 rows from k intents (mean over 5 draws)")
    intents = np.unique(ytr)
    for k in (1, 2, 5, 10, 20, 40, 77):
        vendis, means = [], []
        for seed in range(5):
            r = np.random.default_rng(seed)
            chosen = r.choice(intents, k, replace=False)
            pool = np.flatnonzero(np.isin(ytr, chosen))
            rows = r.choice(pool, 200, replace=pool.size < 200)
            vendis.append(vendi_score(Xtr[rows]))
            means.append(pairwise_mean_std(Xtr[rows])[0])
        print(
            f"  k={k:2d}: Vendi {np.mean(vendis):5.1f}   "
            f"mean pairwise cosine {np.mean(means):.3f}"
        )
    rows = rng.choice(Xtr.shape[0], 200, replace=False)
    clean = vendi_score(Xtr[rows])
    dup = vendi_score(np.vstack([Xtr[rows], np.repeat(Xtr[rows[:10]], 20, axis=0)]))
    print(
        f"  200 random rows: Vendi {clean:.1f}; plus 200 copies of 10 of them: "
        f"{dup:.1f}"
    )

    report, seconds = _timed(DiversityReport(random_state=0).fit, Xtr, groups=ytr)
    frame = report.to_frame()
    print(
        f"\nDiversityReport on train ({Xtr.shape[0]:,} rows, 77 groups): "
        f"{seconds:.1f} s"
    )
    cols = [
        "n_samples",
        "mean_similarity",
        "similarity_p50",
        "nn_similarity_p50",
        "n_duplicate_pairs",
        "duplicate_share",
        "vendi_score",
    ]
    print(frame[cols].head(6).round(3).to_string())
    print(
        f"near-duplicate pairs (>= 0.95): {report.n_duplicate_pairs_}, e.g. "
        f"{report.duplicate_pairs_[:3].tolist()}"
    )


def sgemm_rate(repeat: int = 5) -> float:
    """GFLOP/s of a large float32 product on every core (the machine's rate)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2048, 384), dtype=np.float32)
    b = rng.standard_normal((8192, 384), dtype=np.float32)
    out = np.empty((2048, 8192), dtype=np.float32)
    best = min(_timed(np.matmul, a, b.T, out=out)[1] for _ in range(repeat))
    return 2 * 2048 * 8192 * 384 / best / 1e9


def symmetric_section(X: np.ndarray) -> None:
    n, d = X.shape
    rates = [sgemm_rate()]
    scan, t_scan = _timed(neighbour_scan, X, 0.95, 1000)
    rates.append(sgemm_rate())
    self_join, t_join = _timed(top_k, X, X, 1, self_offset=0)
    rates.append(sgemm_rate())
    report, t_report = _timed(DiversityReport(random_state=0).fit, X)
    rates.append(sgemm_rate())
    rate = float(np.median(rates))
    bound = n * n * d / rate / 1e9
    same = np.array_equal(scan.nn_idx, self_join.indices[:, 0])
    print(f"\nAll pairs of {n:,} x {d} (sgemm {rate:.0f} GFLOP/s, median of 4)")
    print(f"  symmetric bound (each pair once)      {bound:7.2f} s")
    print(
        f"  neighbour_scan (symmetric)            {t_scan:7.2f} s  "
        f"RATIO of sgemm rate: {bound / t_scan:.0%} (bar >= 70%)"
    )
    print(
        f"  top_k self-join, k=1 (pairs twice)    {t_join:7.2f} s  "
        f"({t_join / t_scan:.2f}x the scan; same neighbours: {same})"
    )
    print(
        f"  DiversityReport().fit (full report)   {t_report:7.2f} s  "
        f"RATIO to the bound: {t_report / bound:.2f}x (bar <= 2x)"
    )
    print(f"  near-duplicate pairs >= 0.95: {report.n_duplicate_pairs_:,}")


if __name__ == "__main__":
    main()
