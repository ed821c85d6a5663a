"""Banking77 quality and speed of OutlierScorer on all-MiniLM-L6-v2 embeddings.

Prints, from one run:

1. Novelty: 7 intents are held out of the training set (10 random draws); every test
   item is scored, the held-out intents are the positives. AUROC of each method, with
   sklearn's LocalOutlierFactor(novelty=True) and IsolationForest on the same
   embeddings, beside the figures of ../shared/ANCHORS.md.
2. Transductive: the training items of 70 intents plus 2% items of the 7 others, no
   labels (``fit_predict``); AUROC beside LocalOutlierFactor and IsolationForest.
3. Speed: scoring ``--n`` (default 100,000) x 384 items, against one all-vs-all
   top-k pass of the shared kernel on the same matrix.

Run::

    .venv/bin/python benchmarks/bench_outliers.py [--data DIR] [--n 100000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor

from embedtasks import OutlierScorer
from embedtasks._kernel import l2_normalize, top_k

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"

OURS = {
    "OutlierScorer knn k=10 (default)": dict(),
    "OutlierScorer knn k=5": dict(n_neighbors=5),
    "OutlierScorer knn k=1": dict(n_neighbors=1),
    "OutlierScorer lof k=10": dict(method="lof"),
    "OutlierScorer mahalanobis": dict(method="mahalanobis"),
    "OutlierScorer centroid": dict(method="centroid"),
}
ANCHOR = {
    "OutlierScorer knn k=10 (default)": "94.2",
    "OutlierScorer knn k=1": "95.3",
    "OutlierScorer lof k=10": "86.0 (LOF)",
    "OutlierScorer mahalanobis": "84.4",
    "sklearn IsolationForest": "68.1",
    "sklearn LocalOutlierFactor": "86.0",
}


def novelty(X_tr, y_tr, X_te, y_te, repeats: int) -> None:
    labels = np.unique(y_tr)
    auc: dict[str, list[float]] = {}
    for seed in range(repeats):
        # Draw 0 is the anchor's protocol: default_rng(0).choice(labels, 7).
        held = np.random.default_rng(seed).choice(labels, 7, replace=False)
        keep = ~np.isin(y_tr, held)
        truth = np.isin(y_te, held)  # positives: outliers
        for name, params in OURS.items():
            s = (
                OutlierScorer(novelty=True, **params)
                .fit(X_tr[keep])
                .score_samples(X_te)
            )
            auc.setdefault(name, []).append(roc_auc_score(truth, -s))
        lof = LocalOutlierFactor(novelty=True).fit(X_tr[keep])
        auc.setdefault("sklearn LocalOutlierFactor", []).append(
            roc_auc_score(truth, -lof.score_samples(X_te))
        )
        iso = IsolationForest(random_state=0).fit(X_tr[keep])
        auc.setdefault("sklearn IsolationForest", []).append(
            roc_auc_score(truth, -iso.score_samples(X_te))
        )
    print(
        "\n1. Novelty, 7 of 77 intents held out, AUROC: the anchor's draw "
        f"(default_rng(0)) and the mean over {repeats} draws (seeds 0..{repeats - 1})"
    )
    for name, vals in auc.items():
        print(
            f"   {name:<36} {100 * vals[0]:5.1f}   anchor: "
            f"{ANCHOR.get(name, '-'):<11} mean {100 * np.mean(vals):5.1f} ± "
            f"{100 * np.std(vals):.1f}"
        )


def transductive(X_tr, y_tr, repeats: int) -> None:
    labels = np.unique(y_tr)
    rng = np.random.default_rng(1)
    auc: dict[str, list[float]] = {}
    for _ in range(repeats):
        held = rng.choice(labels, 7, replace=False)
        inliers = np.flatnonzero(~np.isin(y_tr, held))
        n_out = round(0.02 * inliers.size / 0.98)
        outliers = rng.choice(np.flatnonzero(np.isin(y_tr, held)), n_out, replace=False)
        X = X_tr[np.concatenate([inliers, outliers])]
        truth = np.r_[np.zeros(inliers.size), np.ones(n_out)]
        for name, params in OURS.items():
            s = OutlierScorer(contamination=0.02, **params).fit(X).training_scores_
            auc.setdefault(name, []).append(roc_auc_score(truth, -s))
        for k in (10, 20):
            lof = LocalOutlierFactor(n_neighbors=k, contamination=0.02).fit(X)
            auc.setdefault(f"sklearn LocalOutlierFactor k={k}", []).append(
                roc_auc_score(truth, -lof.negative_outlier_factor_)
            )
        iso = IsolationForest(contamination=0.02, random_state=0).fit(X)
        auc.setdefault("sklearn IsolationForest", []).append(
            roc_auc_score(truth, -iso.score_samples(X))
        )
    print(
        f"\n2. Transductive: {inliers.size} items of 70 intents + {n_out} (2%) of 7 "
        f"others, no labels, AUROC over {repeats} draws"
    )
    for name, vals in auc.items():
        print(f"   {name:<36} {100 * np.mean(vals):5.1f} ± {100 * np.std(vals):.1f}")


def speed(X_all, n: int) -> None:
    rng = np.random.default_rng(2)
    rows = rng.integers(0, X_all.shape[0], n)
    X = l2_normalize(X_all[rows] + 0.02 * rng.standard_normal((n, X_all.shape[1])))
    t0 = time.perf_counter()
    top_k(X, X, 10, self_offset=0)
    t_kernel = time.perf_counter() - t0
    t0 = time.perf_counter()
    OutlierScorer().fit(X)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    OutlierScorer(method="lof").fit(X)
    t_lof = time.perf_counter() - t0
    print(f"\n3. Speed, {n} x {X.shape[1]} float32 (fit scores every item)")
    print(f"   one all-vs-all top_k(k=10) pass      {t_kernel:6.1f} s")
    for name, t in [("OutlierScorer().fit", t_fit), ("OutlierScorer(lof).fit", t_lof)]:
        print(f"   {name:<36} {t:6.1f} s  ({t / t_kernel:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--n", type=int, default=100_000, help="rows for speed; 0 skips"
    )
    args = parser.parse_args()
    X_tr = np.load(args.data / "train_minilm.npy")
    X_te = np.load(args.data / "test_minilm.npy")
    y_tr = pd.read_csv(args.data / "train.csv")["category"].to_numpy()
    y_te = pd.read_csv(args.data / "test.csv")["category"].to_numpy()
    print(f"Banking77, all-MiniLM-L6-v2: {len(y_tr)} train, {len(y_te)} test")
    novelty(X_tr, y_tr, X_te, y_te, args.repeats)
    transductive(X_tr, y_tr, args.repeats)
    if args.n:
        speed(np.vstack([X_tr, X_te]), args.n)


if __name__ == "__main__":
    main()
