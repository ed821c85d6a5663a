"""Topics (clusters merged by Ward's rule) against KMeans with as many clusters.

For Banking77 test (3,080 queries, 77 intents) and Brown (11,672 paragraph
chunks, 15 genres), per seed: ``EmbeddingClusterer(random_state=seed)`` is
fitted, its clusters merged into topics, and printed side by side:

- the number of clusters and the automatic number of topics;
- V-measure of the topics against the true labels over all rows (noise is one
  more cluster), beside sklearn KMeans with the same number of clusters on the
  unit vectors (``n_init=3``, the protocol of ``bench_cluster.py``), and the
  size-weighted average linkage of the same centres cut at the same number
  (the other rule considered: it grows one topic of most rows);
- the largest topic's share of the rows (each rule);
- the same at the true number of classes (``n_topics=`` the classes, when there
  are at least as many clusters);
- seconds for ``topics(texts)`` (merging and naming).

Then the topic names of the first seed. Medians over the seeds last.

Usage: python benchmarks/bench_topics.py [--seeds 3] [--corpora banking77 brown]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from embedtasks import EmbeddingClusterer
from embedtasks._kernel import l2_normalize, similarity

#: The first ``shared/data`` above this file (a checkout or a worktree of one).
DATA = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents
     if (p / "shared" / "data").is_dir()),
    Path("shared") / "data",
)  # fmt: skip


def load(name: str, data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings, labels and texts of a corpus."""
    if name == "banking77":
        frame = pd.read_csv(data / "banking77" / "test.csv")
        X = np.load(data / "banking77" / "test_minilm.npy")
        return X, frame["category"].to_numpy(), frame["text"].astype(str).tolist()
    frame = pd.read_csv(data / "brown" / "chunks.csv")
    X = np.load(data / "brown" / "chunks_minilm.npy")
    return X, frame["genre"].to_numpy(), frame["text"].astype(str).tolist()


def average_linkage(
    centres: np.ndarray, sizes: np.ndarray, n_topics: int
) -> np.ndarray:
    """Size-weighted average linkage (UPGMA) of the centres cut at ``n_topics``:
    each cluster's topic (the reference rule, kept here only)."""
    k = centres.shape[0]
    D = 1.0 - similarity(centres, centres).astype(np.float64)
    np.fill_diagonal(D, np.inf)
    w = sizes.astype(np.float64).copy()
    owner = np.arange(k)
    alive = np.ones(k, dtype=bool)
    for _ in range(k - n_topics):
        i, j = divmod(int(np.argmin(D)), k)
        i, j = min(i, j), max(i, j)
        D[i] = (w[i] * D[i] + w[j] * D[j]) / (w[i] + w[j])
        D[:, i] = D[i]
        D[i, i] = np.inf
        D[j], D[:, j] = np.inf, np.inf
        w[i] += w[j]
        alive[j] = False
        owner[owner == j] = i
    return np.unique(owner, return_inverse=True)[1].ravel()


def row_topics(labels: np.ndarray, of_cluster: np.ndarray) -> np.ndarray:
    return np.append(of_cluster, -1)[labels]


def largest_share(labels: np.ndarray) -> float:
    return float(np.bincount(labels[labels >= 0]).max() / labels.size)


def measure(X: np.ndarray, y: np.ndarray, texts: list[str], seed: int) -> dict:
    Xn = l2_normalize(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EmbeddingClusterer(random_state=seed).fit(X)
    start = time.perf_counter()
    frame = model.topics(texts)
    seconds = time.perf_counter() - start
    ours = model.topic_labels()
    t = int((frame["topic"] >= 0).sum())
    sizes = np.bincount(model.labels_[model.labels_ >= 0], minlength=model.n_clusters_)
    average = row_topics(
        model.labels_, average_linkage(model.cluster_centers_, sizes, t)
    )
    km = KMeans(t, n_init=3, random_state=seed).fit_predict(Xn)
    row = {
        "seed": seed,
        "clusters": model.n_clusters_,
        "topics": t,
        "V topics": v_measure_score(y, ours),
        "V KMeans(t)": v_measure_score(y, km),
        "V average": v_measure_score(y, average),
        "largest topic": largest_share(ours),
        "largest average": largest_share(average),
        "topics s": seconds,
    }
    n_classes = len(np.unique(y))
    if n_classes <= model.n_clusters_:
        at_k = model.topic_labels(n_topics=n_classes)
        km_k = KMeans(n_classes, n_init=3, random_state=seed).fit_predict(Xn)
        row[f"V topics(k={n_classes})"] = v_measure_score(y, at_k)
        row[f"V KMeans(k={n_classes})"] = v_measure_score(y, km_k)
    return {"row": row, "frame": frame}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--corpora", nargs="+", default=["banking77", "brown"])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    for name in args.corpora:
        X, y, texts = load(name, args.data)
        print(f"\n== {name}: {X.shape[0]:,} rows, {len(np.unique(y))} classes")
        results = [measure(X, y, texts, seed) for seed in range(args.seeds)]
        table = pd.DataFrame([r["row"] for r in results])
        print(table.round(3).to_string(index=False))
        print("median:")
        print(table.drop(columns="seed").median().round(3).to_string())
        frame = results[0]["frame"]
        print("topics of seed 0:")
        shown = frame[["topic", "name", "size", "clusters"]].copy()
        shown["clusters"] = shown["clusters"].map(len)
        print(shown.rename(columns={"clusters": "n_clusters"}).to_string(index=False))


if __name__ == "__main__":
    main()
