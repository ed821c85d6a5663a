"""EmbeddingClusterer: quality, fresh-process and re-cluster time, 100k rows.

Prints, from one run, ours beside two references:
- "KMeans (true k)": sklearn KMeans with the true number of classes on the raw
  unit vectors (the MTEB clustering protocol; no noise);
- "today": the pipeline of the previous release, umap-learn (pynndescent graph,
  5-d, cosine, min_dist=0, seeded, 500 epochs below 10k rows) + hdbscan with
  the same HDBSCAN settings.

Sections (in the order they run):
1. fresh processes on Banking77 test with an empty cache dir: the first (numba
   compiles, then keeps its code in the cache dir), the second (compile cache
   kept, reduction cache deleted: the cost a new user pays from then on), a
   third that re-clusters from the cached reduction (another min_cluster_size,
   as a second CLI run would), and "today" in a fresh process;
2. re-cluster in the same process (min_cluster_size, max_noise changed);
3. quality on Banking77 test (3,080 x 384, 77 intents), Brown (11,672
   paragraph chunks, 15 genres), Brown by blocks of 10 samples (54 classes) and
   45 Banking77 train intents (6,206 rows), or the held-out stand-ins named by
   --corpora: V-measure over all rows (noise is one more cluster), noise
   share, clusters, fit time in this (warm) process; medians of the seeds;
   ours beside ours without the refinement (the previous release);
4. 100k x 384 (Banking77 rows drawn with replacement, jittered with N(0, 0.02)
   and renormalised): our fit (2 cores), today's, KMeans(77).

5. small corpora: 300 rows drawn from 40 classes (Banking77 intents, Brown
   documents): clusters, the largest's share, V beside KMeans(40);
6. predict(X) on the training rows against labels_.

Usage: python benchmarks/bench_cluster.py [--seeds 3] [--n-large 100000]
       [--skip-large] [--skip-today] [--skip-fresh] [--skip-quality]
       [--skip-small] [--corpora banking77 brown brown-blocks-45 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

from embedtasks import EmbeddingClusterer
from embedtasks._kernel import l2_normalize, place_by_similarity
from embedtasks.cluster import _reduce
from embedtasks.cluster._settle import InputSpaceRules

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEBIAN = Path.home() / ".cache" / "embedtasks-bench" / "debian"


def load(name: str, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """A labelled corpus: its embeddings and labels.

    ``banking77``: the 3,080 test queries, 77 intents. ``brown``: 11,672
    paragraph chunks, 15 genres. ``brown-blocks``: the same chunks labelled by
    genre and block of 10 consecutive samples (54 classes of related documents:
    paragraphs with many overlapping classes). ``banking77-45``: the train
    queries of 45 intents drawn at random (6,206 rows). Two stand-ins for
    held-out corpora of 6k-8k rows and 45 classes: ``brown-blocks-45``, 7,000
    chunks of 45 of the blocks; ``banking77-45-noisy``, ``banking77-45`` with
    N(0, 0.04) added to each coordinate and renormalised (neighbourhoods blur,
    class means stay: KMeans with the true k then matches or beats HDBSCAN).
    ``debian`` and ``debian-natural``: Debian package descriptions by section
    (49 sections; 7,735 rows balanced, 7,000 in natural proportions), built
    once by ``debian_corpus.py --out DIR`` and read from ``--debian DIR``.
    """
    if name in ("debian", "debian-natural"):
        part = "natural" if name == "debian-natural" else "balanced"
        if not (DEBIAN / f"{part}.npy").is_file():
            raise SystemExit(
                f"{DEBIAN / part}.npy not found: build the Debian corpus once with "
                f"python benchmarks/debian_corpus.py --out {DEBIAN} (or pass "
                "--debian DIR where it was built)."
            )
        rows = json.loads((DEBIAN / f"{part}.json").read_text())
        return np.load(DEBIAN / f"{part}.npy"), np.array([r["section"] for r in rows])
    if name == "banking77-45-noisy":
        X, y = load("banking77-45", data)
        rng = np.random.default_rng(1)
        return l2_normalize(X + rng.normal(scale=0.04, size=X.shape)), y
    if name == "brown-blocks-45":
        X, y = load("brown-blocks", data)
        rng = np.random.default_rng(0)
        keep = np.isin(y, rng.choice(np.unique(y), 45, replace=False))
        rows = np.sort(rng.choice(np.flatnonzero(keep), 7_000, replace=False))
        return X[rows], y[rows]
    if name.startswith("banking77"):
        part = "test" if name == "banking77" else "train"
        X = np.load(data / "banking77" / f"{part}_minilm.npy")
        y = pd.read_csv(data / "banking77" / f"{part}.csv")["category"].to_numpy()
        if name == "banking77-45":
            keep = np.random.default_rng(0).choice(np.unique(y), 45, replace=False)
            X, y = X[np.isin(y, keep)], y[np.isin(y, keep)]
        return X, y
    X = np.load(data / "brown" / "chunks_minilm.npy")
    frame = pd.read_csv(data / "brown" / "chunks.csv")
    if name == "brown-blocks":
        number = frame["doc"].str[2:].astype(int)
        return X, (frame["doc"].str[:2] + ((number - 1) // 10).astype(str)).to_numpy()
    return X, frame["genre"].to_numpy()


def small(data: Path, n: int = 300, n_classes: int = 40) -> None:
    """300 rows from 40 classes: clusters found, the largest's share, V."""
    print(f"\n5. Small corpora: {n} rows drawn from {n_classes} classes, 3 draws")
    for name in ("banking77", "brown-docs"):
        if name == "brown-docs":
            X_all = np.load(data / "brown" / "chunks_minilm.npy")
            y_all = pd.read_csv(data / "brown" / "chunks.csv")["doc"].to_numpy()
        else:
            X_all, y_all = load(name, data)
        for seed in range(3):
            rng = np.random.default_rng(seed)
            classes = rng.choice(np.unique(y_all), n_classes, replace=False)
            rows = rng.choice(np.flatnonzero(np.isin(y_all, classes)), n, False)
            X, y = X_all[rows], y_all[rows]
            model = EmbeddingClusterer(random_state=0, cache_dir=None).fit(X)
            km = KMeans(n_classes, n_init=3, random_state=0).fit(X)
            labels = model.labels_
            largest = np.bincount(labels[labels >= 0]).max() / n
            print(
                f"  {name} draw {seed}: {model.n_clusters_} clusters, largest "
                f"{largest:.0%}, noise {(labels < 0).mean():.0%}, "
                f"V={v_measure_score(y, labels):.3f} "
                f"(KMeans k={n_classes}: {v_measure_score(y, km.labels_):.3f}); "
                f"{model.cluster_selection_method_}, "
                f"min_cluster_size={model.min_cluster_size_}"
            )


def agreement(data: Path) -> None:
    """predict(X) on the training rows against labels_ (non-noise rows)."""
    print("\n6. predict(X) on the training rows equals labels_ (non-noise rows)")
    for name in ("banking77", "brown"):
        X, _ = load(name, data)
        for params in ({}, {"assign_noise": True}, {"max_noise": None}):
            model = EmbeddingClusterer(random_state=0, **params).fit(X)
            kept = model.labels_ >= 0
            same = (model.predict(X)[kept] == model.labels_[kept]).mean()
            print(f"  {name} {params or 'default'}: {same:.4f}")


def today(X: np.ndarray, seed: int, max_samples: int = 20_000) -> np.ndarray:
    """The previous release: umap-learn + hdbscan (sample + placement above 20k)."""
    import hdbscan
    import umap

    X = l2_normalize(X)
    ref = np.arange(X.shape[0])
    if X.shape[0] > max_samples:
        ref = np.sort(
            np.random.default_rng(seed).choice(X.shape[0], max_samples, False)
        )
    reducer = umap.UMAP(
        n_neighbors=15, n_components=5, metric="cosine", min_dist=0.0,
        random_state=seed, n_jobs=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z_ref = reducer.fit_transform(X[ref]).astype(np.float32)
    Z = Z_ref
    if ref.size < X.shape[0]:
        Z = place_by_similarity(X, X[ref], Z_ref, 15)
        Z[ref] = Z_ref
    mcs = max(15, X.shape[0] // 200)
    return hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=5).fit_predict(
        Z.astype(np.float64)
    )


def scores(y, labels, seconds):
    return {
        "V": v_measure_score(y, labels),
        "noise": float((labels < 0).mean()),
        "clusters": int(labels.max()) + 1,
        "fit_s": seconds,
    }


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def ours(X, **params):
    return EmbeddingClusterer(**params).fit(X)


class _NoRefinement:
    """Ours as before the refinement: HDBSCAN's clusters, noise capped and rescued."""

    def __enter__(self):
        self.saved = InputSpaceRules._refine
        InputSpaceRules._refine = lambda self, X, labels, p, reference: (
            labels,
            p,
            int(labels.max()) + 1,
        )

    def __exit__(self, *exc):
        InputSpaceRules._refine = self.saved


def ours_without_refinement(X, **params):
    with _NoRefinement():
        return EmbeddingClusterer(**params).fit(X)


def quality(data: Path, seeds: int, skip_today: bool, corpora: list[str]) -> None:
    print("\n3. Quality (V-measure over all rows, noise = one more cluster); the")
    print("   other rows of ours re-cluster the default's cached reduction (fit_s)")
    for name in corpora:
        X, y = load(name, data)
        k = len(np.unique(y))
        rows = []
        configs = {
            "ours (default, max_noise=0.15)": {},
            "ours max_noise=None (HDBSCAN's noise)": {"max_noise": None},
            "ours max_noise=0.1": {"max_noise": 0.1},
        }
        for seed in range(seeds):
            _reduce._MEMORY.clear()  # no layout left from an earlier section
            with tempfile.TemporaryDirectory() as cache:  # shared by the configs:
                for label, params in configs.items():  # the later ones re-cluster
                    model, s = timed(
                        ours, X, random_state=seed, cache_dir=cache, **params
                    )
                    rows.append({"method": label} | scores(y, model.labels_, s))
                model, s = timed(
                    ours_without_refinement, X, random_state=seed, cache_dir=cache
                )
                label = "ours, no refinement (previous release)"
                rows.append({"method": label} | scores(y, model.labels_, s))
            km, s = timed(KMeans(k, n_init=3, random_state=seed).fit, X)
            rows.append({"method": f"KMeans (true k={k})"} | scores(y, km.labels_, s))
            if not skip_today:
                labels, s = timed(today, X, seed)
                rows.append({"method": "today"} | scores(y, labels, s))
        frame = pd.DataFrame(rows).groupby("method", sort=False)
        table = frame.agg(["median", "min", "max"]).round(3)
        print(f"\n{name} ({X.shape[0]:,} x {X.shape[1]}, {k} classes, {seeds} seeds)")
        print(table.to_string())


_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
X = np.load(sys.argv[1])
mode, cache = sys.argv[2], sys.argv[3]
if mode == "today":
    sys.path.insert(0, sys.argv[4])
    from bench_cluster import today  # imports umap-learn when it fits, as it did
else:
    from embedtasks import EmbeddingClusterer  # imports numba when it fits
t1 = time.perf_counter()
if mode == "today":
    labels = today(X, 0)
else:
    params = json.loads(sys.argv[4])
    model = EmbeddingClusterer(random_state=0, cache_dir=cache, **params)
    labels = model.fit(X).labels_
t2 = time.perf_counter()
print(json.dumps({"start_s": t1 - t0, "fit_s": t2 - t1, "labels": labels.tolist()}))
"""


def child(path: Path, mode: str, cache: str, extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode, cache, extra],
        capture_output=True, text=True, check=True, env=os.environ.copy(),
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh(data: Path, skip_today: bool) -> None:
    import shutil

    X, y = load("banking77", data)
    print("1. Fresh processes, Banking77 test (fit_s excludes imports)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "X.npy"
        np.save(path, X)
        cache = Path(tmp) / "cache"
        runs = [
            ("ours, 1st process (compiles, empty cache)", "ours", "{}"),
            ("ours, 2nd process (compile cache kept)", "ours", "{}"),
            ("ours, 3rd process, min_cluster_size=25 (reduction cached)", "ours",
             '{"min_cluster_size": 25}'),
        ]  # fmt: skip
        if not skip_today:
            runs.append(("today, fresh process (umap-learn + hdbscan)", "today", ""))
        for i, (label, mode, extra) in enumerate(runs):
            if i == 1:
                shutil.rmtree(cache / "cluster")  # keep only the compile cache
            arg = str(Path(__file__).resolve().parent) if mode == "today" else extra
            result = child(path, mode, str(cache), arg)
            labels = np.asarray(result["labels"])
            v = v_measure_score(y, labels)
            print(
                f"  {label}: fit {result['fit_s']:.2f} s "
                f"(imports {result['start_s']:.2f} s), V={v:.3f}, "
                f"noise {(labels < 0).mean():.1%}"
            )


def recluster(data: Path) -> None:
    X, y = load("banking77", data)
    print("\n2. Re-cluster in the same process (reduction cached), Banking77 test")
    with tempfile.TemporaryDirectory() as cache:
        model = EmbeddingClusterer(random_state=0, cache_dir=cache)
        _, first = timed(model.fit, X)
        for params in ({"min_cluster_size": 10}, {"min_cluster_size": 25},
                       {"max_noise": 0.02}, {"min_samples": 10}):  # fmt: skip
            model.set_params(min_cluster_size="auto", max_noise=0.15, min_samples=5)
            model.set_params(**params)
            _, s = timed(model.fit, X)
            v = v_measure_score(y, model.labels_)
            print(
                f"  {params}: {s:.2f} s (first fit {first:.2f} s), "
                f"{model.n_clusters_} clusters, V={v:.3f}, "
                f"noise {(model.labels_ < 0).mean():.1%}"
            )


def large(data: Path, n: int, skip_today: bool) -> None:
    base = np.vstack(
        [
            np.load(data / "banking77" / "train_minilm.npy"),
            np.load(data / "banking77" / "test_minilm.npy"),
        ]
    )
    y_base = np.concatenate(
        [
            pd.read_csv(data / "banking77" / "train.csv")["category"].to_numpy(),
            pd.read_csv(data / "banking77" / "test.csv")["category"].to_numpy(),
        ]
    )
    rng = np.random.default_rng(0)
    rows = rng.integers(0, base.shape[0], n)
    X = base[rows] + rng.normal(scale=0.02, size=(n, base.shape[1])).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = y_base[rows]
    print(
        f"\n4. {n:,} x {X.shape[1]} (Banking77 rows, jittered), {os.cpu_count()} cores"
    )
    _reduce._MEMORY.clear()
    with tempfile.TemporaryDirectory() as cache:
        model, s = timed(
            lambda: EmbeddingClusterer(random_state=0, cache_dir=cache).fit(X)
        )
        print(f"  ours: {_fmt(scores(y, model.labels_, s))}")
        model.set_params(min_cluster_size=100)
        _, s2 = timed(lambda: model.fit(X))
        print(f"  ours, re-cluster min_cluster_size=100: {s2:.2f} s")
    km, s = timed(lambda: KMeans(77, n_init=1, random_state=0).fit(X))
    print(f"  KMeans(77): {_fmt(scores(y, km.labels_, s))}")
    if not skip_today:
        labels, s = timed(today, X, 0)
        row = _fmt(scores(y, labels, s))
        print(f"  today (umap-learn on 20k + placement + hdbscan): {row}")


def _fmt(row):
    return ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-large", type=int, default=100_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-today", action="store_true")
    parser.add_argument("--skip-fresh", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument(
        "--corpora",
        nargs="+",
        default=["banking77", "brown", "brown-blocks", "banking77-45"],
        help="section 3's corpora; also brown-blocks-45, banking77-45-noisy, "
        "debian, debian-natural",
    )
    parser.add_argument(
        "--debian", type=Path, default=DEBIAN, help="debian_corpus.py's --out"
    )
    args = parser.parse_args()
    globals()["DEBIAN"] = args.debian
    if not args.skip_fresh:
        fresh(args.data, args.skip_today)
        recluster(args.data)
    if not args.skip_quality:
        quality(args.data, args.seeds, args.skip_today, args.corpora)
    if not args.skip_small:
        small(args.data)
        agreement(args.data)
    if not args.skip_large:
        large(args.data, args.n_large, args.skip_today)


if __name__ == "__main__":
    main()
