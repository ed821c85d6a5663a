"""EmbeddingClusterer on Banking77 (quality) and on 100k x 384 (time).

Prints, from one run:
- quality on the Banking77 test set (3,080 MiniLM vectors, 77 intents): V-measure
  over all rows (noise counted as one more cluster), the noise share, V-measure of
  the clustered rows, and V-measure with noise reassigned -- for the default
  (``reduction="auto"``: UMAP when installed), the PCA fallback and KMeans(77),
  beside the MTEB protocol (MiniBatchKMeans, k=77, raw vectors);
- predict: fit on the train split, label the test split;
- time on 100k x 384 (Banking77 rows, jittered and renormalised): our fit, then
  ``hdbscan.HDBSCAN`` (what we wrap) against ``sklearn.cluster.HDBSCAN`` on the
  same reduced data.

Usage: python benchmarks/bench_cluster.py [--data DIR] [--n-large 100000]
       [--skip-large] [--skip-quality]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import HDBSCAN as SkHDBSCAN
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import v_measure_score

from embedtasks import EmbeddingClusterer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def _scores(y, labels):
    clustered = labels >= 0
    return {
        "V(all)": 100 * v_measure_score(y, labels),
        "noise%": 100 * (1 - clustered.mean()),
        "V(clustered)": 100 * v_measure_score(y[clustered], labels[clustered]),
        "clusters": int(labels.max()) + 1,
    }


def _fmt(row):
    return "  ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
    )


def quality(data: Path) -> None:
    X = np.load(data / "test_minilm.npy")
    y = pd.read_csv(data / "test.csv")["category"].to_numpy()
    rows = []
    configs = {  # name: (params, seeds); UMAP fits take ~15-30 s each
        "default (auto=UMAP)": ({}, range(3)),
        "default + assign_noise": ({"assign_noise": True}, range(3)),
        "PCA fallback": ({"reduction": "pca"}, range(3)),
        "PCA fallback + assign_noise": (
            {"reduction": "pca", "assign_noise": True},
            range(3),
        ),
        "KMeans n_clusters=77 (UMAP)": ({"n_clusters": 77}, range(1)),
    }
    print("Banking77 test (3,080 x 384); V = V-measure x 100", flush=True)
    for name, (params, seeds) in configs.items():
        for seed in seeds:
            t0 = time.perf_counter()
            model = EmbeddingClusterer(random_state=seed, **params).fit(X)
            seconds = time.perf_counter() - t0
            rows.append(
                {"method": name, "seed": seed, "fit_s": seconds}
                | _scores(y, model.labels_)
            )
            print(_fmt(rows[-1]), flush=True)
    for seed in range(3):
        t0 = time.perf_counter()
        labels = MiniBatchKMeans(
            77, batch_size=500, n_init="auto", random_state=seed
        ).fit_predict(X)
        rows.append(
            {
                "method": "reference: MTEB MiniBatchKMeans(77), raw",
                "seed": seed,
                "fit_s": time.perf_counter() - t0,
            }
            | _scores(y, labels)
        )
        print(_fmt(rows[-1]), flush=True)
    frame = pd.DataFrame(rows).drop(columns="seed")
    summary = frame.groupby("method", sort=False).agg(["mean", "std"])
    print("\nmean and std over seeds")
    print(summary.round(1).to_string())

    Xtr = np.load(data / "train_minilm.npy")
    model = EmbeddingClusterer(random_state=0).fit(Xtr)
    ytr = pd.read_csv(data / "train.csv")["category"].to_numpy()
    predicted = model.predict(X)
    print(f"\nfit on train (10,003): {_fmt(_scores(ytr, model.labels_))}")
    print(f"predict test with the train model: {_fmt(_scores(y, predicted))}")
    model.set_params(assign_noise=True)
    model.fit(Xtr)
    print(f"  same, assign_noise=True: {_fmt(_scores(y, model.predict(X)))}")


def large(data: Path, n: int) -> None:
    base = np.vstack(
        [np.load(data / "train_minilm.npy"), np.load(data / "test_minilm.npy")]
    )
    rng = np.random.default_rng(0)
    X = base[rng.integers(0, base.shape[0], n)]
    X = X + rng.normal(scale=0.02, size=X.shape).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    print(f"\n{n:,} x {X.shape[1]} (Banking77 rows, jittered)")
    t0 = time.perf_counter()
    model = EmbeddingClusterer(random_state=0, min_cluster_size=50).fit(X)
    total = time.perf_counter() - t0
    labels = model.labels_
    print(
        f"EmbeddingClusterer fit (UMAP + hdbscan + summaries): {total:.1f} s, "
        f"{model.n_clusters_} clusters, noise {100 * (labels < 0).mean():.1f}%"
    )
    Z = model.embedding_.astype(np.float64)
    params = {"min_cluster_size": 50, "min_samples": 5}
    t0 = time.perf_counter()
    import hdbscan

    hdbscan.HDBSCAN(**params, core_dist_n_jobs=1).fit(Z)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    SkHDBSCAN(**params, copy=True).fit(Z)
    ref = time.perf_counter() - t0
    print(
        f"on the same {Z.shape[1]}-d data: hdbscan.HDBSCAN {ours:.1f} s, "
        f"sklearn.cluster.HDBSCAN {ref:.1f} s (ratio {ref / ours:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n-large", type=int, default=100_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if not args.skip_quality:
        quality(args.data)
    if not args.skip_large:
        large(args.data, args.n_large)


if __name__ == "__main__":
    main()
